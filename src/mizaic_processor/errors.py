"""The whole exception tree of :mod:`mizaic_processor`.

Callers catch :class:`MizaicError` (or one of its subclasses); nothing from
``azure.core.exceptions`` or ``cryptography`` leaks out of the library. Errors of the
layer below are translated at the one adapter that talks to it, with ``raise ... from``.

::

    MizaicError
     ├── InvalidInputError          bad input; raised before any I/O, nothing written
     │    └── ClockError            an impossible request-clock history or step (an
     │                              extension after the first deadline, ...)
     ├── ConfigurationError         the processor or a keyring is configured wrongly
     │    └── ResidencyError        a region outside the UK (uksouth / ukwest)
     ├── AccessDeniedError          the actor's role may not do this, or the data is
     │    │                         outside the scope's controller
     │    └── RestrictedError       the subject's processing is restricted
     ├── NotFoundError              no such controller, record, instruction, ...
     ├── ConflictError              optimistic concurrency: stale etag, or it exists
     ├── IntegrityError             a ciphertext, envelope or stored document failed
     │    │                         authentication or parsing (one opaque error)
     │    └── AuditTamperedError    the audit trail does not verify; names the first
     │                              broken event (chain, sequence number, kind)
     ├── HoldError                  a hold forbids destroying or altering the data
     ├── KeyManagementError         a keyring could not create, wrap or unwrap a key
     ├── AuditError                 the audit event could not be recorded, so the
     │                              operation was not carried out
     ├── PartialFailureError        some items of a bulk operation failed, the others
     │                              were carried out (which, and why, is attached)
     └── StorageError               Azure Storage failed (after the SDK's retries)

Messages never contain a patient identifier, a field value or key material: they name
opaque ids (controller id, record id) and what went wrong, nothing more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

__all__ = [
    "AccessDeniedError",
    "AuditError",
    "AuditTamperedError",
    "ClockError",
    "ConfigurationError",
    "ConflictError",
    "HoldError",
    "IntegrityError",
    "InvalidInputError",
    "KeyManagementError",
    "MizaicError",
    "NotFoundError",
    "PartialFailureError",
    "ResidencyError",
    "RestrictedError",
    "StorageError",
]


class MizaicError(Exception):
    """Base class of every error raised by :mod:`mizaic_processor`."""


class InvalidInputError(MizaicError, ValueError):
    """Input failed validation. Raised before any I/O; nothing was written."""


class ClockError(InvalidInputError):
    """A request clock history is impossible, or an operation on it is not allowed.

    For example: an extension decided on or after the first deadline, beyond two months in
    total or without a reason; information received that was never asked for; events out of
    order. Messages name dates and rules only, never the requester. The request's clock
    is unchanged (the refused attempt itself may be recorded in the audit trail).
    """


class ConfigurationError(MizaicError):
    """The processor, a controller or a keyring is configured wrongly."""


class ResidencyError(ConfigurationError):
    """A region other than ``uksouth`` or ``ukwest`` was named. Nothing was written."""


class AccessDeniedError(MizaicError):
    """The acting role may not perform the operation, or the data is not the scope's."""


class RestrictedError(AccessDeniedError):
    """Processing of the subject is restricted on the controller's instruction."""


class NotFoundError(MizaicError):
    """The named controller, record, instruction or other object does not exist."""


class ConflictError(MizaicError):
    """An optimistic-concurrency check failed: the etag is stale, or the object exists."""


class IntegrityError(MizaicError):
    """Stored data failed authentication or could not be parsed.

    Deliberately opaque: a wrong key, a ciphertext moved to another controller, record or
    field, a flipped bit, a truncated or extended envelope and an unknown format version
    all raise this same error with the same kind of message.
    """


class AuditTamperedError(IntegrityError):
    """The audit trail failed verification.

    :ivar chain: the writer chain where the first break is.
    :ivar seq: the sequence number of the first broken event in that chain.
    :ivar kind: ``altered``, ``removed``, ``reordered``, ``inserted``, ``malformed``,
        ``truncated``, ``chain missing``, ``forged checkpoint`` or ``unsealed chain``.
    """

    def __init__(self, chain: str, seq: int, kind: str) -> None:
        super().__init__(f"audit trail broken: chain {chain}, event #{seq}: {kind}")
        self.chain = chain
        self.seq = seq
        self.kind = kind


class HoldError(MizaicError):
    """A hold (legal, inquiry, open access request) forbids the operation."""


class KeyManagementError(MizaicError):
    """A keyring failed to create, wrap or unwrap a key."""


class AuditError(MizaicError):
    """The audit event could not be recorded; the operation was not carried out."""


class PartialFailureError(MizaicError):
    """Some items of a bulk operation failed; every other item was carried out.

    ``results[i]`` is item ``i``'s result, or ``None`` if it failed; ``errors`` maps the
    position of each failed item to its error: a :class:`MizaicError`, or whatever the
    caller's own code raised for that item (a content stream's ``OSError``). Each item is its
    own audited operation with the guarantees of its single form: a failed item's record
    was not stored, except that one failing with :class:`StorageError` may have been
    (its outcome is unknown, as for any single write; a new subject's key may also exist
    already). Re-submit the failed positions, after checking those. The message gives
    counts and error kinds only.
    """

    def __init__(self, results: Sequence[object], errors: Mapping[int, Exception]) -> None:
        kinds = Counter(type(exc).__name__ for exc in errors.values())
        summary = ", ".join(f"{name} x{count}" for name, count in sorted(kinds.items()))
        super().__init__(f"{len(errors)} of {len(results)} items failed ({summary})")
        self.results: tuple[object, ...] = tuple(results)
        self.errors: dict[int, Exception] = dict(sorted(errors.items()))

    def __reduce__(self) -> tuple[type[PartialFailureError], tuple[object, ...]]:
        # picklable (multiprocessing, task queues): rebuilt from its parts, not its message
        return (type(self), (self.results, self.errors))


class StorageError(MizaicError):
    """Azure Storage failed after the SDK's retry policy gave up."""
