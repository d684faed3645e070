"""The one error type of fleetserve and its codes; transports map codes once (gateway/errors.py)."""

from __future__ import annotations

import enum


class ErrorCode(enum.Enum):
    """What went wrong, independent of the transport that reports it."""

    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNAVAILABLE = "unavailable"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    UNIMPLEMENTED = "unimplemented"
    INTERNAL = "internal"


class FleetError(Exception):
    """An error with a code and a message meant for the client."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s

    def __repr__(self) -> str:
        return f"FleetError({self.code.name}, {self.message!r})"


def invalid(message: str) -> FleetError:
    """Shorthand for the most common client mistake."""
    return FleetError(ErrorCode.INVALID_ARGUMENT, message)
