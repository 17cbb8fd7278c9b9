"""Errors raised while finding, fetching, converting or checking models."""

from __future__ import annotations


class ModelError(Exception):
    """Base class; ``code`` is the machine-readable reason."""

    code = "model_error"


class UnknownModelError(ModelError):
    code = "unknown_model"


class ModelUnavailableError(ModelError):
    code = "model_unavailable"


class ChecksumError(ModelError):
    code = "model_checksum_mismatch"


class UnsupportedOpError(ModelError):
    code = "unsupported_op"

    def __init__(self, op: str, node: str = "") -> None:
        self.op = op
        where = f" (node {node!r})" if node else ""
        super().__init__(f"unsupported operator {op!r}{where}: the converter cannot run this model")


class InvalidModelError(ModelError):
    code = "invalid_model"


class ModelTooLargeError(ModelError):
    """An uploaded model file over the size limit."""

    code = "model_too_large"


class ExternalDataError(InvalidModelError):
    code = "external_data"


class NotAClassifierError(InvalidModelError):
    code = "not_a_classifier"


class InputSpecError(InvalidModelError):
    code = "invalid_input_spec"
