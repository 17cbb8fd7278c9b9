"""HTTPS webhook delivery: pinned to the checked address, with the URL's host for Host, SNI
and certificate verification (issue 11, "connect to the address that was checked").

A test CA signs server certificates; real TLS servers on loopback record the SNI and the
Host header they receive. ``hooks.example.test`` reaches them through the operator allow
list (``webhook_allowed_hosts``, the real knob that admits a receiver on a private address)
and a stand-in for the system resolver. The project has no resolver or trust-store seam of
its own: the resolver is ``socket.getaddrinfo`` and, with ``trust_env=False``, httpx trusts
``certifi.where()``, so those two are what the tests replace.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from facecloak.contract.context import Context
from facecloak.contract.records import ItemRecord, JobRecord
from facecloak.contract.webhooks import send_job_webhook, verify_signature
from tests.service_fixtures import settings

HOST = "hooks.example.test"
SECRET = "tls-secret"


# certificates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CA(key, cert)


def server_cert(ca: CA, name: str, folder: Path) -> tuple[Path, Path]:
    """A leaf certificate for ``name`` (a DNS name or an IP address) signed by ``ca``:
    (certificate file, key file)."""
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        san = x509.DNSName(name)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    chain, key_file = folder / f"{name}.crt", folder / f"{name}.key"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return chain, key_file


# a TLS receiver that records what it was sent -----------------------------------------------


@dataclass
class Seen:
    sni: list[str | None] = field(default_factory=list)  # one per TLS handshake
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    server: _TLSServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.requests.append((self.path, dict(self.headers.items()), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext) -> None:
        super().__init__(address, _Handler)
        self.context, self.seen = context, Seen()
        context.sni_callback = self._sni

    def _sni(self, _sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: Any) -> None:
        self.seen.sni.append(name)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = self.socket.accept()
        # the handshake runs in the handler's thread, on its first read
        return self.context.wrap_socket(
            sock, server_side=True, do_handshake_on_connect=False
        ), address

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.seen.errors.append(repr(sys.exc_info()[1]))


Serve = Callable[..., tuple[_TLSServer, int]]


@pytest.fixture()
def serve() -> Iterator[Serve]:
    """Start a TLS receiver: ``serve(chain, key, ip="127.0.0.1", port=0) -> (server, port)``."""
    started: list[_TLSServer] = []

    def start(
        chain: Path, key: Path, ip: str = "127.0.0.1", port: int = 0
    ) -> tuple[_TLSServer, int]:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain, key)
        server = _TLSServer((ip, port), context)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        started.append(server)
        return server, server.server_address[1]

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CA:
    """The test CA, and the only one the webhook client trusts."""
    import certifi

    authority = make_ca("FaceCloak test CA")
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(authority.pem())
    monkeypatch.setattr(certifi, "where", lambda: str(bundle))
    return authority


@dataclass
class Resolver:
    """Stands in for DNS: the first lookup of ``HOST`` answers ``answers[0]``, the next one
    ``answers[1]``, ... (the last one again once they run out), as a rebinding attacker's DNS
    would; every other name goes to the real resolver."""

    answers: list[tuple[str, ...]]
    lookups: list[tuple[str, ...]] = field(default_factory=list)

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real = socket.getaddrinfo

        def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(host, bytes):
                host = host.decode()
            if host != HOST:
                return real(host, port, *args, **kwargs)
            answer = self.answers[min(len(self.lookups), len(self.answers) - 1)]
            self.lookups.append(answer)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port))) for a in answer]

        monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _ctx(tmp: Path) -> Context:
    return Context.from_settings(
        settings(
            tmp,
            webhook_allowed_hosts=HOST,  # the operator admits this host on a private address
            webhook_secrets=f"tenant-a:{SECRET}",
            webhook_max_attempts=1,
            webhook_timeout_seconds=10.0,
        )
    )


def _job(ctx: Context, url: str) -> str:
    job = JobRecord(id="job_tls", tenant="tenant-a", callback_url=url, status="succeeded")
    job.items = [ItemRecord(index=0, filename="a.png", status="protected")]
    ctx.store.create(job)
    return job.id


# tests --------------------------------------------------------------------------------------


def test_https_delivery_pins_the_checked_address_and_verifies_the_host(
    tmp_path: Path, ca: CA, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    chain, key = server_cert(ca, HOST, tmp_path / "certs")
    checked, port = serve(chain, key, "127.0.0.1")
    # the address a second lookup would give: same port, a valid certificate for HOST, so a
    # client that looked the name up again would be served here without any error
    rebound, _ = serve(chain, key, "127.0.0.2", port)
    resolver = Resolver(answers=[("127.0.0.1",), ("127.0.0.2",)])
    resolver.install(monkeypatch)
    ctx = _ctx(tmp_path)

    assert send_job_webhook(ctx, _job(ctx, f"https://{HOST}:{port}/hooks/facecloak?x=1"))

    assert rebound.seen.sni == [] and rebound.seen.requests == []
    assert resolver.lookups == [("127.0.0.1",)]  # resolved once, when checked
    assert checked.seen.sni == [HOST]  # not the address, not empty
    assert checked.seen.errors == []
    [(path, headers, body)] = checked.seen.requests
    assert path == "/hooks/facecloak?x=1"
    assert headers["Host"] == f"{HOST}:{port}"  # port is not 443, so Host names it
    assert verify_signature(SECRET, headers, body)
    job = ctx.store.get("job_tls")
    assert job is not None and job.webhook is not None
    assert job.webhook.status == "delivered" and job.webhook.error is None


def test_the_first_checked_address_is_used_when_a_name_has_several(
    tmp_path: Path, ca: CA, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One lookup answering two addresses: delivery goes to the first, checked one."""
    chain, key = server_cert(ca, HOST, tmp_path / "certs")
    first, port = serve(chain, key, "127.0.0.1")
    second, _ = serve(chain, key, "127.0.0.2", port)
    resolver = Resolver(answers=[("127.0.0.1", "127.0.0.2")])
    resolver.install(monkeypatch)
    ctx = _ctx(tmp_path)
    assert send_job_webhook(ctx, _job(ctx, f"https://{HOST}:{port}/h"))
    assert len(resolver.lookups) == 1
    assert len(first.seen.requests) == 1 and second.seen.requests == []


@pytest.mark.parametrize("problem", ["certificate_for_another_name", "unknown_ca"])
def test_a_certificate_that_does_not_verify_is_a_failed_attempt(
    tmp_path: Path,
    ca: CA,
    serve: Serve,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    problem: str,
) -> None:
    if problem == "certificate_for_another_name":
        chain, key = server_cert(ca, "other.example.test", tmp_path / "certs")
    else:  # the right name, signed by a CA the client does not trust
        chain, key = server_cert(make_ca("Some other CA"), HOST, tmp_path / "certs")
    server, port = serve(chain, key)
    Resolver(answers=[("127.0.0.1",)]).install(monkeypatch)
    ctx = _ctx(tmp_path)

    with caplog.at_level(logging.WARNING, logger="facecloak.contract.webhooks"):
        assert not send_job_webhook(ctx, _job(ctx, f"https://{HOST}:{port}/h"))

    assert server.seen.sni == [HOST]  # the handshake was tried, for the right name...
    assert server.seen.requests == []  # ...but no request (no body, no signature) was sent
    job = ctx.store.get("job_tls")
    assert job is not None and job.webhook is not None
    assert job.webhook.attempts == 1
    assert job.webhook.status == "failed" and job.webhook.error == "delivery_failed"
    assert any("ConnectError" in r.getMessage() for r in caplog.records), caplog.text


def test_the_certificate_must_match_the_name_not_the_address(
    tmp_path: Path, ca: CA, serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A certificate valid for 127.0.0.1, the pinned address, does not pass for HOST."""
    chain, key = server_cert(ca, "127.0.0.1", tmp_path / "certs")
    server, port = serve(chain, key)
    Resolver(answers=[("127.0.0.1",)]).install(monkeypatch)
    ctx = _ctx(tmp_path)
    assert not send_job_webhook(ctx, _job(ctx, f"https://{HOST}:{port}/h"))
    assert server.seen.sni == [HOST] and server.seen.requests == []
