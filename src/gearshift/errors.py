"""One error hierarchy. Each error carries its message and the HTTP status it maps to.

The server turns any `GearshiftError` into the protocol's `{"error": message}` body with
`status`; the CLI prints the message and exits non-zero. Messages say what was wrong and how
to fix it.
"""

from __future__ import annotations


class GearshiftError(Exception):
    """Base of every error gearshift raises on purpose."""

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(GearshiftError):
    """A pool spec, profile or policy file is invalid (names the field and the fix)."""

    status = 400


class BadRequest(GearshiftError):
    """A request is malformed: wrong shape, dtype, missing input, unreadable body."""

    status = 400


class Unauthorized(GearshiftError):
    """The request carries no valid bearer token (`Authorization: Bearer <token>`)."""

    status = 401


class Forbidden(GearshiftError):
    """The endpoint is closed on this server (management endpoints beyond loopback)."""

    status = 403


class ModelNotFound(GearshiftError):
    """The request names neither the application nor one of its variants."""

    status = 404


class PayloadTooLarge(GearshiftError):
    """The request body exceeds the server's limit."""

    status = 413


class RequestTimeout(GearshiftError):
    """The request body did not arrive within the server's body-read timeout."""

    status = 408


class ClientClosed(GearshiftError):
    """The client disconnected before its answer was ready; nothing is sent (499 in the logs)."""

    status = 499


class Overloaded(GearshiftError):
    """The bounded queue is full; the client should retry after `retry_after_s` seconds."""

    status = 503

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(GearshiftError):
    """The request's deadline passed (or can no longer be met) before it reached a replica."""

    status = 504


class WorkerFailed(GearshiftError):
    """The replica serving the request died or its runtime raised; the request was not served."""

    status = 500


class ShuttingDown(GearshiftError):
    """The server is stopping and takes no new work."""

    status = 503
