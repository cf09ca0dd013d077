"""The audit writer: one hash chain per process and controller, with group commit.

Callers :meth:`AuditWriter.submit` an event and wait on the returned ticket. A
background thread takes every pending event, chains them (sequence number and the hash
of the previous line), and appends them as ONE block to the chain's current append-blob
segment with an append-position condition, so one request serves many concurrent
operations and a foreign or repeated append cannot fork the chain. A ticket resolves
only once its event is durable in storage; if the append fails, it raises
:class:`~mizaic_processor.errors.AuditError` and the operation must not proceed.

Layout in the controller's container::

    audit/<chain>/<segment 8 digits>          append blobs of event lines
    audit-checkpoints/<chain>/<seq 12 digits> HMAC-sealed chain heads
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mizaic_processor._azure.blob import Container
from mizaic_processor._core import audit_chain, ids
from mizaic_processor.errors import (
    AuditError,
    ConflictError,
    KeyManagementError,
    MizaicError,
    NotFoundError,
)

logger = logging.getLogger("mizaic_processor.audit")

AUDIT_PREFIX = "audit/"
CHECKPOINT_PREFIX = "audit-checkpoints/"
SEGMENT_BLOCK_LIMIT = 40_000
MAX_BATCH_BYTES = 2 * 1024 * 1024
MAX_BATCH_EVENTS = 2_000


def segment_name(chain: str, segment: int) -> str:
    return f"{AUDIT_PREFIX}{chain}/{segment:08d}"


@dataclass
class Ticket:
    """Resolves when the event is durable (or its append failed)."""

    event: dict[str, Any]
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    seq: int = 0

    def wait(self, timeout: float | None = 120.0) -> int:
        """Block until durable; return the event's sequence number.

        :raises AuditError: if the event could not be recorded.
        """
        if not self.done.wait(timeout):
            raise AuditError("the audit event was not recorded in time; operation refused")
        if isinstance(self.error, KeyManagementError):
            # the controller's keys cannot be unwrapped (a wrong or unreachable keyring):
            # say so, rather than hide it behind the audit failure it causes
            raise KeyManagementError(
                "the controller's keys could not be unwrapped, so the audit event could "
                "not be sealed; operation refused"
            ) from self.error
        if self.error is not None:
            raise AuditError("the audit event could not be recorded; operation refused")
        return self.seq


class AuditWriter:
    """Writes one chain for one controller. Thread-safe; start it lazily."""

    def __init__(
        self,
        container: Container,
        *,
        audit_key: Callable[[], tuple[int, bytes]],
        clock: Callable[[], dt.datetime],
        checkpoint_every: int = 1000,
        checkpoint_seconds: float = 60.0,
        on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.chain = ids.new_opaque_id("w")
        self.pid = os.getpid()
        self._container = container
        self._audit_key = audit_key
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self._checkpoint_seconds = checkpoint_seconds
        self._sealed_at = time.monotonic()
        self._on_checkpoint = on_checkpoint
        self._cond = threading.Condition()
        self._pending: list[Ticket] = []
        self._closed = False
        self._thread: threading.Thread | None = None
        # chain state, touched only by the writer thread (and close, after join)
        self._seq = 0
        self._prev = audit_chain.GENESIS
        self._segment = 0
        self._position = 0
        self._blocks = 0
        self._sealed_seq = 0
        self._genesis_sealed = False

    def __repr__(self) -> str:
        return f"AuditWriter(chain={self.chain!r})"

    def submit(self, event: dict[str, Any]) -> Ticket:
        """Queue an event for the next group commit.

        :raises AuditError: if the writer is closed.
        """
        ticket = Ticket(event)
        with self._cond:
            if self._closed:
                raise AuditError("the audit writer is closed; operation refused")
            self._pending.append(ticket)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"mizaic-audit-{self.chain[:8]}", daemon=True
                )
                self._thread.start()
            self._cond.notify()
        return ticket

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending and self._closed:
                    return
                batch = self._take()
            try:
                if batch[0].event is _SEAL or batch[0].event is _FINAL_SEAL:
                    if not self._checkpoint(final=batch[0].event is _FINAL_SEAL):
                        batch[0].error = AuditError("the audit chain head could not be sealed")
                    batch[0].done.set()
                    continue
                self._commit(batch)
            except Exception as exc:  # never let the writer thread die silently
                logger.exception("audit writer failed; %d operations refused", len(batch))
                for ticket in batch:
                    if not ticket.done.is_set():
                        ticket.error = exc
                        ticket.done.set()

    def _take(self) -> list[Ticket]:
        batch: list[Ticket] = []
        size = 0
        if self._pending[0].event is _SEAL or self._pending[0].event is _FINAL_SEAL:
            return [self._pending.pop(0)]
        while self._pending and len(batch) < MAX_BATCH_EVENTS and size < MAX_BATCH_BYTES:
            if self._pending[0].event is _SEAL or self._pending[0].event is _FINAL_SEAL:
                break
            ticket = self._pending.pop(0)
            batch.append(ticket)
            size += 64 + sum(len(str(k)) + len(str(v)) for k, v in ticket.event.items())
        return batch

    def _ensure_segment(self) -> None:
        if not self._genesis_sealed:
            # a signed genesis seal first: a chain without one was not written by a
            # holder of the controller's audit key
            self._write_seal(0, audit_chain.GENESIS, final=False)
            self._genesis_sealed = True
        if self._segment == 0 or self._blocks >= SEGMENT_BLOCK_LIMIT:
            following = self._segment + 1
            try:
                self._container.create_append(segment_name(self.chain, following))
            except ConflictError:
                # a retried create whose first attempt landed: the segment is ours and
                # empty unless we appended to it, which we cannot have without knowing
                if self._container.get(segment_name(self.chain, following)).data:
                    raise
            # numbered only once it exists, so an outage never leaves a gap that would
            # read as a removed segment
            self._segment = following
            self._position = 0
            self._blocks = 0

    def _commit(self, batch: list[Ticket]) -> None:
        seq, prev = self._seq, self._prev
        lines = []
        for ticket in batch:
            seq += 1
            event = dict(ticket.event)
            event.update(chain=self.chain, seq=seq, prev=prev)
            line = audit_chain.encode_event(event)
            prev = audit_chain.line_hash(line)
            ticket.seq = seq
            lines.append(line)
        data = b"\n".join(lines) + b"\n"
        try:
            self._ensure_segment()
            self._blocks = self._container.append(
                segment_name(self.chain, self._segment), data, position=self._position
            )
        except MizaicError as exc:
            landed = self._landed(data)
            if landed is not True:
                logger.error("audit append failed; %d operations refused", len(batch))
                if landed is None:
                    # The block may or may not be in storage: continuing this chain
                    # could fork it. Start a new chain; the old one ends at whatever
                    # landed (an event of a refused operation over-reports, never
                    # under-reports).
                    self._new_chain()
                else:
                    # Not in storage: continue the chain from its last durable event in
                    # a fresh segment (the current one may be leased or broken).
                    self._blocks = SEGMENT_BLOCK_LIMIT
                for ticket in batch:
                    ticket.error = exc
                    ticket.done.set()
                return
        self._position += len(data)
        self._seq, self._prev = seq, prev
        for ticket in batch:
            ticket.done.set()
        if (
            self._seq - self._sealed_seq >= self._checkpoint_every
            or time.monotonic() - self._sealed_at >= self._checkpoint_seconds
        ):
            self._checkpoint()

    def _new_chain(self) -> None:
        self.chain = ids.new_opaque_id("w")
        self._genesis_sealed = False
        self._seq = 0
        self._prev = audit_chain.GENESIS
        self._segment = 0
        self._position = 0
        self._blocks = 0
        self._sealed_seq = 0

    def _landed(self, data: bytes) -> bool | None:
        """After an append error: did the block land anyway (a retried append)?
        ``None`` when that cannot be known (the read-back failed too)."""
        if self._segment == 0:
            return False
        try:
            stored = self._container.get(segment_name(self.chain, self._segment))
        except NotFoundError:
            return False
        except MizaicError:
            return None
        expected = self._position + len(data)
        return len(stored.data) == expected and stored.data[self._position :] == data

    def _write_seal(self, seq: int, head: str, *, final: bool) -> dict[str, Any]:
        version, key = self._audit_key()
        body = audit_chain.checkpoint_body(
            self.chain, seq, head, self._clock().isoformat(), final=final
        )
        doc = {"body": body, "sig": audit_chain.sign_checkpoint(key, body),
               "key_version": version}
        suffix = ".final" if final else ""
        self._container.put(
            f"{CHECKPOINT_PREFIX}{self.chain}/{seq:012d}{suffix}",
            json.dumps(doc).encode(),
            what="audit checkpoint",
        )
        if self._on_checkpoint is not None:
            try:
                self._on_checkpoint(doc)
            except Exception:  # the controller's copy is retried at the next seal
                logger.exception("audit checkpoint delivery to the controller failed")
        return doc

    def _checkpoint(self, *, final: bool = False) -> bool:
        """Seal the chain head; return whether the head is sealed."""
        if self._seq == self._sealed_seq and not (final and self._seq > 0):
            return True
        try:
            self._write_seal(self._seq, self._prev, final=final)
        except MizaicError:
            logger.error("audit checkpoint could not be written; the head is not sealed")
            return False
        self._sealed_seq = self._seq
        self._sealed_at = time.monotonic()
        return True

    def flush(self, timeout: float = 120.0) -> None:
        """Wait until every queued event is committed, then seal the head (checkpoint).

        :raises AuditError: if the writer is closed, does not finish in time, or cannot
            seal the head.
        """
        with self._cond:
            if self._thread is None and not self._pending:
                return
        self.submit(_SEAL).wait(timeout)

    def close(self) -> None:
        """Commit what is queued, seal the head, and stop the thread."""
        with self._cond:
            if self._closed:
                return
            if self._thread is not None:
                self._pending.append(Ticket(_FINAL_SEAL))
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=120)


_SEAL: dict[str, Any] = {"__seal__": True}
_FINAL_SEAL: dict[str, Any] = {"__seal__": "final"}
