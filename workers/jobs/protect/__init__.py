"""The protect job and its face-only parts: cloak objective and geometry, makeup, warps.

``protect_photo``, ``build_cloaker``, ``face_inputs`` and ``check_models`` come from
:mod:`workers.jobs.protect.job`; they load on first access, so that
:mod:`workers.jobs.conditions` may import :mod:`workers.jobs.protect.makeup` without a cycle.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.jobs.protect.job import build_cloaker, check_models, face_inputs, protect_photo

__all__ = ["build_cloaker", "check_models", "face_inputs", "protect_photo"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("workers.jobs.protect.job"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
