"""Root of every adapter's exception tree: transient errors are retried, permanent ones are not."""

from __future__ import annotations


class DraasError(Exception):
    """Base of all errors the product raises on purpose."""


class TransientError(DraasError):
    """Worth retrying: timeouts, HTTP 503, dropped connections, a busy device."""


class PermanentError(DraasError):
    """Not worth retrying: bad input, rejected command, missing object, auth refused."""


def is_transient(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from) is a TransientError."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, TransientError):
            return True
        if isinstance(exc, PermanentError):
            return False
        exc = exc.__cause__
        seen += 1
    return False
