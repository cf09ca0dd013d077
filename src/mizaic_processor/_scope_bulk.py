"""Bulk reads and writes of a controller scope: many records, concurrently.

Each item is still one audited operation with the same guarantees as its single form
(a write runs only once its event is durable; a read is handed out only once its event
is durable). Running many at once lets the audit writer's group commit put many events
in one append, so an item costs about one storage request. Mixed into
:class:`~mizaic_processor.ControllerScope`.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar, cast

from mizaic_processor._core import ids
from mizaic_processor._progress import Progress, check_progress, no_progress
from mizaic_processor._validation import whole_number
from mizaic_processor.errors import (
    InvalidInputError,
    PartialFailureError,
    StorageError,
)
from mizaic_processor.models import NewRecord, Record, RecordRef, Role

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope, _NewRecord

__all__ = ["MAX_CONCURRENCY", "BulkOperations"]

MAX_CONCURRENCY = 64
_CARE_ROLES = frozenset({Role.SERVICE, Role.CONTROLLER_ADMIN})
_R = TypeVar("_R")


def _check_concurrency(value: object) -> int:
    return whole_number(value, 1, MAX_CONCURRENCY,
                        f"max_concurrency must be an integer from 1 to {MAX_CONCURRENCY}")


def _items(values: object, what: str) -> list[object]:
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(f"{what} must be an iterable")
    return list(values)


class BulkOperations:
    """Bulk forms of create and read. Mixed into ControllerScope."""

    def create_records(
        self,
        records: Iterable[NewRecord],
        *,
        max_concurrency: int = 8,
        progress: Progress = no_progress,
    ) -> list[RecordRef]:
        """Store many new records, up to ``max_concurrency`` at a time.

        Every item is validated before any I/O: one bad item means nothing is written.
        Each record is then created exactly as :meth:`create_record` would create it
        (audited first, encrypted under its subject's key); a subject's first record
        creates the subject's key before its other records start, so they never race.

        :param records: :class:`~mizaic_processor.NewRecord` items.
        :param max_concurrency: operations in flight, 1 to 64.
        :param progress: called as ``progress(done, total)`` in the calling thread. If it
            raises, no further item starts, the items in flight finish, and its exception
            propagates (re-submit the items not stored).
        :returns: one :class:`RecordRef` per item, in the order given.
        :raises InvalidInputError: if any item (named by its position) is invalid, before
            any I/O; nothing is written.
        :raises AccessDeniedError: if the actor may not write records.
        :raises PartialFailureError: if some items failed; the others were stored, and
            ``results`` holds their refs (``None`` where an item failed). ``errors`` holds
            each failed item's error: the library's, or what the item's own content
            stream raised (an ``OSError`` from a file, say), as it was raised. As with
            :meth:`create_record`, an item that failed with :class:`StorageError` may
            have been stored all the same (its outcome is unknown): look before
            re-submitting it.
        """
        progress = check_progress(progress)
        scope = self._scope()
        scope._require(_CARE_ROLES, "write records")
        workers = _check_concurrency(max_concurrency)
        prepared: list[_NewRecord] = []
        streams: set[int] = set()
        for position, item in enumerate(_items(records, "records")):
            if not isinstance(item, NewRecord):
                raise InvalidInputError(f"records[{position}]: not a NewRecord")
            if item.content is not None and not isinstance(item.content, bytes):
                # two items reading one stream from two threads would interleave its bytes
                if id(item.content) in streams:
                    raise InvalidInputError(
                        f"records[{position}]: the same content stream is given twice"
                    )
                streams.add(id(item.content))
            try:
                prepared.append(scope._prepare_create(
                    item.subject, item.category, item.fields, item.events, item.content,
                    item.content_type,
                ))
            except InvalidInputError as exc:
                raise InvalidInputError(f"records[{position}]: {exc}") from None
        by_subject: dict[tuple[str, str], list[int]] = {}
        for position, new in enumerate(prepared):
            by_subject.setdefault((new.subject.kind, new.subject.value), []).append(position)
        # A subject's first record goes first (it may create the subject's key); its
        # other records follow it, concurrently with each other.
        return _run_grouped(
            list(by_subject.values()), len(prepared),
            lambda position: scope._create(prepared[position]), workers, progress,
        )

    def get_records(
        self,
        record_ids: Iterable[str],
        *,
        fields: Sequence[str] | None = None,
        max_concurrency: int = 8,
        progress: Progress = no_progress,
    ) -> list[Record]:
        """Read many records, up to ``max_concurrency`` at a time.

        Each read is exactly :meth:`get_record` (``fields`` applies to every record):
        decrypted and verified, handed out only once its audit event is durable.

        :param max_concurrency: reads in flight, 1 to 64.
        :param progress: called as ``progress(done, total)`` in the calling thread; if it
            raises, no further read starts and its exception propagates.
        :returns: one :class:`Record` per id, in the order given.
        :raises InvalidInputError: if an id (named by its position) or a field name is
            malformed, before any I/O.
        :raises AccessDeniedError: if the actor may not read records.
        :raises PartialFailureError: if some reads failed (not found, restricted,
            integrity); ``results`` holds the records read (``None`` where one failed).
        """
        progress = check_progress(progress)
        scope = self._scope()
        scope._require(_CARE_ROLES, "read records")
        workers = _check_concurrency(max_concurrency)
        checked: list[str] = []
        for position, value in enumerate(_items(record_ids, "record_ids")):
            try:
                checked.append(ids.record_id(value))
            except InvalidInputError:
                raise InvalidInputError(f"record_ids[{position}]: invalid record id") from None
        wanted: list[str] | None = None
        if fields is not None:
            if isinstance(fields, str) or not isinstance(fields, Sequence):
                raise InvalidInputError("fields must be a sequence of field names")
            wanted = [ids.field_name(name) for name in fields]

        def read(position: int) -> Record:
            record_id = checked[position]
            return scope._audited(
                "record.read", "R", record_id, lambda: scope._get(record_id, wanted),
                write=False,
            )

        return _run_grouped(
            [[position] for position in range(len(checked))], len(checked), read, workers,
            progress,
        )

    def _scope(self) -> ControllerScope:
        return cast("ControllerScope", self)


def _run_grouped(
    groups: list[list[int]],
    total: int,
    run: Callable[[int], _R],
    workers: int,
    progress: Progress,
) -> list[_R]:
    """Run ``run(position)`` for every position on a pool of ``workers`` threads.

    Each group's first position runs before the group's others, which then run
    concurrently. An item's error (the library's, or an ``Exception`` from the caller's
    own content stream) is collected per position, and all are raised together as
    :class:`PartialFailureError` with the other items' results, so that what was stored is
    never lost to one item's failure. A ``BaseException`` that is not an ``Exception``
    (``KeyboardInterrupt``, ``SystemExit``) is re-raised as it is.
    """
    results: list[_R | None] = [None] * total
    errors: dict[int, Exception] = {}
    crashes: list[BaseException] = []
    finished: queue.SimpleQueue[int] = queue.SimpleQueue()
    stopping = threading.Event()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mizaic-bulk") as pool:

        def one(position: int) -> None:
            if stopping.is_set():  # the caller gave up: queued items do not start
                finished.put(position)
                return
            try:
                results[position] = run(position)
            except Exception as exc:  # this item failed; the others' results are kept
                errors[position] = exc
            except BaseException as exc:  # an interrupt: stop as the caller asked
                crashes.append(exc)
            finally:
                finished.put(position)

        def group(positions: list[int]) -> None:
            if stopping.is_set():
                return
            one(positions[0])
            for position in positions[1:]:
                if stopping.is_set():
                    continue
                try:
                    pool.submit(one, position)
                except RuntimeError:  # the interpreter is shutting down: never started
                    errors[position] = StorageError("the item could not be started")
                    finished.put(position)  # else the caller would wait for it forever

        for positions in groups:
            pool.submit(group, positions)
        try:
            for done in range(1, total + 1):
                finished.get()
                progress(done, total)
        except BaseException:
            # the caller's progress callback gave up: start nothing more, let the items
            # in flight finish (leaving the pool waits for them), and pass it on
            stopping.set()
            raise
    if crashes:
        raise crashes[0]
    if errors:
        raise PartialFailureError(results, errors)
    return [result for result in results if result is not None]
