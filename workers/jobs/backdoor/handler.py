"""The ``backdoor_scan`` job handler (torch is imported when an item runs, not before)."""

from __future__ import annotations

from pydantic import BaseModel

from facecloak.contract.backdoor import BackdoorScanOptions
from facecloak.contract.kinds import Handler, ProgressFn
from facecloak.contract.options import ItemOutcome


def backdoor_scan_handler() -> Handler:
    """A bundle of ONNX models (and samples) in, the scan report and its figures out."""

    def scan(data: bytes, filename: str, options: BaseModel, progress: ProgressFn) -> ItemOutcome:
        from workers.jobs.backdoor.job import scan_bundle

        if not isinstance(options, BackdoorScanOptions):
            raise TypeError(f"backdoor_scan takes BackdoorScanOptions, not {type(options)}")
        return scan_bundle(data, filename, options, progress)

    return scan
