"""``POST /v1/augmentations``: adversarial data augmentation of a labelled set (an ``augment`` job).

The uploaded ``model`` (ONNX) and ``data`` (a zip of one folder per class, or an npz)
become the job's one item, a zip bundle; status, result (a zip of the augmented set, its
manifest, the vulnerability table, ``report.json`` and, for ``amend``, ``model.onnx``),
cancel and webhooks are those of every job (``/v1/jobs/...``).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from facecloak.contract.augment import AugmentOptions, make_bundle
from facecloak.contract.kinds import AUGMENT
from service.errors import ApiError
from service.submission import FilePart, SubmitForm, Submitter, submit_route
from service.uploads import Photo, is_archive, is_zip

router = APIRouter()

FORM = SubmitForm(
    AugmentOptions,
    (
        FilePart("model", "The classifier (ONNX)."),
        FilePart(
            "data",
            "Labelled images: a zip of one folder per class, or an npz with 'x' and 'y'.",
        ),
    ),
)


@submit_route(
    router,
    "/v1/augmentations",
    FORM.body(),
    "Augment a labelled image set with adversarial examples (or amend the model)",
)
async def augmentation(by: Submitter) -> JSONResponse:
    """Accept a model and a data set and answer 202 with the job."""
    sub = await FORM.read(by)
    model, data = sub.file("model"), sub.file("data")
    if is_archive(model[1]):
        raise ApiError(415, "unsupported_format", "the 'model' file must be ONNX, not an archive")
    if not is_zip(data[1]):  # an npz is a zip too
        raise ApiError(415, "unsupported_format", "'data' must be a zip of class folders or an npz")
    item = Photo("augment.zip", make_bundle(model[1], data), "application/zip")
    return await sub.submit(AUGMENT.name, [item])
