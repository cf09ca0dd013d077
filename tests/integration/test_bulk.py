"""The bulk API (create_records / get_records) against a real Azurite: same guarantees
as the single forms (validated before I/O, audited per item, tenant-scoped), results in
order, partial failures reported per position, one key per subject however many of its
records run at once."""

from __future__ import annotations

import datetime as dt
import io
import pickle
import uuid

import pytest
from azure.storage.blob import ContainerClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    ControllerScope,
    HospitalNumber,
    InvalidInputError,
    NewRecord,
    NHSNumber,
    NotFoundError,
    PartialFailureError,
    Processor,
    RestrictedError,
)

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
EVENTS = {"last_treatment": dt.date(2024, 5, 1)}


def nhs(n: int) -> NHSNumber:
    """A valid NHS number derived from ``n`` (mod 11 check digit)."""
    k = n
    while True:
        digits = f"{400_000_000 + k:09d}"
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(digits)) % 11
        check = 0 if check == 11 else check
        if check != 10:
            return NHSNumber(digits + str(check))
        k += 1_000_000


def data_state(container: ContainerClient) -> list[tuple[str, str]]:
    return sorted((b.name, b.etag) for b in container.list_blobs())


def batch(subjects: int, per_subject: int) -> list[NewRecord]:
    return [
        NewRecord(nhs(s), category="adult", fields={"n": s * 100 + k, "note": f"s{s}k{k}"},
                  events=EVENTS)
        for s in range(subjects) for k in range(per_subject)
    ]


def test_create_records_stores_every_item_in_order_and_reads_back(
    svc: ControllerScope,
) -> None:
    items = batch(subjects=6, per_subject=5)
    seen: list[tuple[int, int | None]] = []
    refs = svc.create_records(items, max_concurrency=8,
                              progress=lambda done, total: seen.append((done, total)))
    assert len(refs) == len(items)
    assert len({r.record_id for r in refs}) == len(items)
    assert seen[-1] == (len(items), len(items))
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    records = svc.get_records([r.record_id for r in refs], max_concurrency=8)
    for item, ref, record in zip(items, refs, records, strict=True):
        assert record.record_id == ref.record_id
        assert record.fields == dict(item.fields or {})
        assert record.subject == item.subject
    # each subject's records are found through its own key, none through another's
    for s in range(6):
        assert sorted(svc.list_records(nhs(s))) == sorted(
            r.record_id for r, i in zip(refs, items, strict=True) if i.subject == nhs(s)
        )


def test_records_of_one_new_subject_share_one_key_however_many_run_at_once(
    svc: ControllerScope, raw: ContainerClient,
) -> None:
    refs = svc.create_records(batch(subjects=1, per_subject=24), max_concurrency=16)
    subject_keys = [n for n in raw.list_blob_names() if n.startswith("subjects/")]
    assert len(subject_keys) == 1, subject_keys
    skids = {r.record_id[1:27] for r in refs}
    assert len(skids) == 1


def test_get_records_reads_only_the_fields_asked_for(svc: ControllerScope) -> None:
    refs = svc.create_records(batch(subjects=2, per_subject=3))
    records = svc.get_records([r.record_id for r in refs], fields=["note"])
    assert all(set(r.fields) == {"note"} for r in records)


def test_each_bulk_item_is_its_own_audited_operation(
    svc: ControllerScope, admin: ControllerScope,
) -> None:
    refs = svc.create_records(batch(subjects=3, per_subject=4), max_concurrency=8)
    svc.get_records([r.record_id for r in refs], max_concurrency=8)
    for ref in refs:
        ops = sorted(e.operation for e in admin.audit.query(record_id=ref.record_id))
        assert ops == ["record.create", "record.read"], ops
    assert admin.audit.verify().events >= 2 * len(refs)  # raises if tampered


@pytest.mark.parametrize(
    ("position", "bad"),
    [
        (0, NewRecord(NHSNumber("9434765919"), category="", fields={"a": 1})),
        (7, NewRecord(NHSNumber("9434765919"), category="adult", fields={"bad name!": 1})),
        (11, NewRecord(NHSNumber("9434765919"), category="adult", content="text")),  # type: ignore[arg-type]
        (3, "not a NewRecord"),
    ],
)
def test_one_invalid_item_fails_the_whole_call_before_any_io(
    processor: Processor, svc: ControllerScope, raw: ContainerClient, position: int,
    bad: object,
) -> None:
    svc.create_records(batch(subjects=1, per_subject=1))  # the container and keys exist
    items: list[object] = list(batch(subjects=4, per_subject=3))
    items[position] = bad
    before, requests = data_state(raw), processor.request_count
    with pytest.raises(InvalidInputError) as caught:
        svc.create_records(items)  # type: ignore[arg-type]
    assert f"records[{position}]" in str(caught.value)
    assert "9434765919" not in str(caught.value)
    assert processor.request_count == requests
    assert data_state(raw) == before


@pytest.mark.parametrize("value", [0, 65, -1, True, 2.5, "8"])
def test_max_concurrency_out_of_range_is_refused_before_any_io(
    processor: Processor, svc: ControllerScope, value: object,
) -> None:
    requests = processor.request_count
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        svc.create_records(batch(1, 1), max_concurrency=value)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_concurrency"):
        svc.get_records([], max_concurrency=value)  # type: ignore[arg-type]
    assert processor.request_count == requests


def test_a_malformed_id_in_get_records_is_named_by_position_before_any_io(
    processor: Processor, svc: ControllerScope,
) -> None:
    refs = svc.create_records(batch(1, 2))
    requests = processor.request_count
    with pytest.raises(InvalidInputError, match=r"record_ids\[1\]"):
        svc.get_records([refs[0].record_id, "r-not-an-id", refs[1].record_id])
    with pytest.raises(InvalidInputError):
        svc.get_records("r" * 60)
    assert processor.request_count == requests


def test_partial_failure_names_positions_and_keeps_the_successes(
    svc: ControllerScope, admin: ControllerScope,
) -> None:
    refs = svc.create_records(batch(subjects=3, per_subject=2))
    held = admin.create_instruction("restriction", subject=nhs(1))
    admin.set_restriction(nhs(1), True, instruction_id=held.instruction_id)
    missing = refs[0].record_id[:-4] + ("aaaa" if not refs[0].record_id.endswith("aaaa")
                                        else "bbbb")
    wanted = [r.record_id for r in refs] + [missing]
    with pytest.raises(PartialFailureError) as caught:
        svc.get_records(wanted, max_concurrency=4)
    error = caught.value
    assert set(error.errors) == {2, 3, 6}
    assert isinstance(error.errors[2], RestrictedError)
    assert isinstance(error.errors[3], RestrictedError)
    assert isinstance(error.errors[6], NotFoundError)
    assert [r is None for r in error.results] == [False, False, True, True, False, False, True]
    kept = [r for r in error.results if r is not None]
    assert [r.record_id for r in kept] == [refs[i].record_id for i in (0, 1, 4, 5)]  # type: ignore[attr-defined]
    assert "3 of 7 items failed" in str(error)
    assert str(nhs(1).value) not in str(error)


def test_bulk_calls_check_the_actors_role(processor: Processor, cid: str) -> None:
    operator = processor.tenant(cid, actor=OPERATOR)
    with pytest.raises(AccessDeniedError):
        operator.create_records(batch(1, 1))
    with pytest.raises(AccessDeniedError):
        operator.get_records([])


def test_bulk_reads_cannot_reach_another_controllers_records(
    processor: Processor, svc: ControllerScope,
) -> None:
    refs = svc.create_records(batch(2, 2))
    other = "t" + uuid.uuid4().hex[:10]
    processor.register_controller(other, name="Other Trust", actor=OPERATOR)
    with pytest.raises(PartialFailureError) as caught:
        processor.tenant(other, actor=SERVICE).get_records([r.record_id for r in refs])
    assert all(isinstance(e, NotFoundError) for e in caught.value.errors.values())
    assert len(caught.value.errors) == 4


def test_new_record_hides_its_contents_from_repr() -> None:
    item = NewRecord(HospitalNumber("RX1-000123"), category="adult",
                     fields={"diagnosis": "asthma"}, content=b"scan", content_type="image/png")
    for text in (repr(item), str(item), repr([item])):
        assert "RX1-000123" not in text
        assert "asthma" not in text
        assert "scan" not in text


def test_create_records_with_content_streams_each_document(svc: ControllerScope) -> None:
    docs = [bytes([i]) * (70_000 + i) for i in range(5)]
    items = [NewRecord(nhs(i % 2), category="adult", fields={"i": i}, content=d,
                       content_type="application/pdf") for i, d in enumerate(docs)]
    refs = svc.create_records(items, max_concurrency=4)
    for ref, doc in zip(refs, docs, strict=True):
        with svc.open_content(ref.record_id) as reader:
            assert reader.read() == doc


def test_the_same_stream_in_two_items_is_refused_before_any_io(
    processor: Processor, svc: ControllerScope,
) -> None:
    stream = io.BytesIO(b"%PDF one scan")
    items = [NewRecord(nhs(1), category="adult", content=stream, content_type="application/pdf"),
             NewRecord(nhs(2), category="adult", content=stream, content_type="application/pdf")]
    requests = processor.request_count
    with pytest.raises(InvalidInputError, match=r"records\[1\]: the same content stream"):
        svc.create_records(items)
    assert processor.request_count == requests
    assert stream.tell() == 0


class _ScanThatFails(io.RawIOBase):
    """A file whose read fails part-way, as a scan on a failing disk or share would."""

    def __init__(self, good: int) -> None:
        self._left = good

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._left <= 0:
            raise OSError(5, "Input/output error", "/scans/SYN-CN-001.pdf")
        n = min(len(buffer), self._left)
        buffer[:n] = b"%" * n
        self._left -= n
        return n


def test_a_stream_that_fails_in_one_item_keeps_the_other_items_refs(
    svc: ControllerScope, raw: ContainerClient,
) -> None:
    # Creates are not idempotent: losing the refs of the items that were stored would make
    # a caller re-submit them and store every one of them twice.
    docs = [bytes([i]) * 70_000 for i in range(4)]
    items = [NewRecord(nhs(i), category="adult", fields={"i": i}, content=d,
                       content_type="application/pdf") for i, d in enumerate(docs)]
    items[2] = NewRecord(nhs(2), category="adult", fields={"i": 2},
                         content=io.BufferedReader(_ScanThatFails(50_000)),
                         content_type="application/pdf")
    with pytest.raises(PartialFailureError) as caught:
        svc.create_records(items, max_concurrency=4)
    error = caught.value
    assert set(error.errors) == {2}
    assert type(error.errors[2]) is OSError
    assert error.errors[2].filename == "/scans/SYN-CN-001.pdf"  # the caller's own, as raised
    assert "SYN-CN-001" not in str(error)  # the message names kinds only
    assert "1 of 4 items failed (OSError x1)" in str(error)
    assert error.results[2] is None
    stored = [r for r in error.results if r is not None]
    assert len(stored) == 3
    for ref, doc in zip(stored, [docs[0], docs[1], docs[3]], strict=True):
        with svc.open_content(ref.record_id) as reader:  # type: ignore[attr-defined]
            assert reader.read() == doc
    # the failed item left no record: only the three stored ones exist
    names = [b.name for b in raw.list_blobs(name_starts_with="records/")]
    assert len(names) == 3


def test_partial_failure_error_survives_pickling() -> None:
    error = PartialFailureError(["ref", None], {1: NotFoundError("record not found")})
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert isinstance(copy, PartialFailureError)
    assert copy.results == ("ref", None)
    assert isinstance(copy.errors[1], NotFoundError)
    assert str(copy) == str(error)


def test_a_progress_callback_that_raises_stops_items_not_yet_started(
    svc: ControllerScope, raw: ContainerClient,
) -> None:
    class StopError(Exception):
        pass

    def stop_after_two(done: int, total: int | None) -> None:
        if done >= 2:
            raise StopError

    items = batch(subjects=1, per_subject=40)  # one subject: the rest queue behind its first
    with pytest.raises(StopError):
        svc.create_records(items, max_concurrency=2, progress=stop_after_two)
    stored = [n for n in raw.list_blob_names() if n.startswith("records/")]
    assert 2 <= len(stored) < 10, len(stored)
