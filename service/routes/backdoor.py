"""``POST /v1/backdoor-scans``: scan an ONNX classifier for backdoors (a ``backdoor_scan`` job).

The uploaded files (``model``, optional ``reference`` and ``samples``) become the job's one
item, a zip bundle; status, result (a zip of ``report.json`` and figures), cancel and
webhooks are those of every job (``/v1/jobs/...``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from facecloak.contract.backdoor import BackdoorScanOptions, make_bundle
from facecloak.contract.kinds import BACKDOOR_SCAN
from service.errors import ApiError
from service.submission import File, FilePart, SubmitForm, Submitter, submit_route
from service.uploads import Photo, is_archive, is_zip

router = APIRouter()

FORM = SubmitForm(
    BackdoorScanOptions,
    (
        FilePart("model", "The classifier to scan (ONNX)."),
        FilePart("reference", "A clean model of the same task.", required=False),
        FilePart("samples", "Unlabelled images: npz or zip.", required=False),
    ),
)


def _check_files(model: File, reference: File | None, samples: File | None) -> None:
    for name, part in (("model", model), ("reference", reference)):
        if part is not None and is_archive(part[1]):
            raise ApiError(
                415, "unsupported_format", f"the {name!r} file must be ONNX, not an archive"
            )
    if samples is not None and not is_zip(samples[1]):
        raise ApiError(415, "unsupported_format", "'samples' must be an npz or a zip of images")


@submit_route(
    router, "/v1/backdoor-scans", FORM.body(), "Scan an ONNX image classifier for backdoors"
)
async def backdoor_scan(by: Submitter) -> JSONResponse:
    """Accept a model (+ reference, samples) and answer 202 with the job."""
    sub = await FORM.read(by)
    model, reference = sub.file("model"), sub.optional_file("reference")
    samples = sub.optional_file("samples")
    _check_files(model, reference, samples)
    bundle = make_bundle(model[1], reference[1] if reference else None, samples)
    item = Photo("scan.zip", bundle, "application/zip")
    return await sub.submit(BACKDOOR_SCAN.name, [item])
