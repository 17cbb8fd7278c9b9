"""The ``augment`` job handler (torch is imported when an item runs, not before)."""

from __future__ import annotations

from pydantic import BaseModel

from facecloak.contract.augment import AugmentOptions
from facecloak.contract.kinds import Handler, ProgressFn
from facecloak.contract.options import ItemOutcome


def augment_handler() -> Handler:
    """A bundle of an ONNX classifier and a labelled data set in, the augmented set out."""

    def run(data: bytes, filename: str, options: BaseModel, progress: ProgressFn) -> ItemOutcome:
        from workers.jobs.augment.job import augment_bundle

        if not isinstance(options, AugmentOptions):
            raise TypeError(f"augment takes AugmentOptions, not {type(options)}")
        return augment_bundle(data, filename, options, progress)

    return run
