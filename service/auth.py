"""API keys: ``X-API-Key`` names a tenant (``FACECLOAK_API_KEYS="key-a:tenant-a,..."``)."""

from __future__ import annotations

import hmac

from service.errors import ApiError

API_KEY_HEADER = "X-API-Key"


def parse_keys(spec: str) -> dict[str, str]:
    """``"k1:t1,k2:t2"`` -> ``{"k1": "t1", "k2": "t2"}`` (blank entries ignored)."""
    keys: dict[str, str] = {}
    for entry in spec.split(","):
        entry = entry.strip()
        if not entry:
            continue
        key, sep, tenant = entry.partition(":")
        if not sep or not key.strip() or not tenant.strip():
            raise ValueError(f"FACECLOAK_API_KEYS entry {entry!r} is not 'key:tenant'")
        keys[key.strip()] = tenant.strip()
    return keys


class KeyRing:
    """Maps an API key to its tenant in constant time per key."""

    def __init__(self, spec: str) -> None:
        self.keys = parse_keys(spec)

    def tenant(self, key: str | None) -> str:
        """The tenant of ``key``; :class:`ApiError` 401 when it is missing or unknown."""
        if not key:
            raise ApiError(
                401,
                "missing_api_key",
                f"send your API key in the {API_KEY_HEADER} header",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        found = None
        for known, tenant in self.keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                found = tenant
        if found is None:
            raise ApiError(
                401,
                "invalid_api_key",
                "the API key is not valid",
                headers={"WWW-Authenticate": API_KEY_HEADER},
            )
        return found


def check_bearer(expected: str, authorization: str | None) -> None:
    """Accept ``Authorization: Bearer <expected>``: 404 ``metrics_disabled`` when no token is
    configured, 401 ``missing_metrics_token`` / ``invalid_metrics_token`` otherwise."""
    if not expected:
        raise ApiError(
            404, "metrics_disabled", "metrics are off; set FACECLOAK_METRICS_TOKEN to scrape them"
        )
    scheme, _, token = (authorization or "").partition(" ")
    challenge = {"WWW-Authenticate": "Bearer"}
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401, "missing_metrics_token", "send Authorization: Bearer <token>", headers=challenge
        )
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise ApiError(
            401, "invalid_metrics_token", "the metrics token is not valid", headers=challenge
        )
