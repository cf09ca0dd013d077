"""The core record store against a real Azurite: round trips, selective decryption,
optimistic concurrency, deletion, roles, subject lookup and streamed content."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    ConflictError,
    ControllerScope,
    HospitalNumber,
    IntegrityError,
    InvalidInputError,
    LocalKeyring,
    NHSNumber,
    NotFoundError,
    Processor,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
NHS = "9434765919"
PDF = "application/pdf"


def new_controller_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


def register(processor: Processor) -> str:
    cid = new_controller_id()
    processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
    return cid


def blob_names(container: ContainerClient, prefix: str = "") -> list[str]:
    return sorted(container.list_blob_names(name_starts_with=prefix or None))


def delete(admin: ControllerScope, record_id: str) -> object:
    """Delete a record on a documented deletion instruction covering just that record."""
    instruction = admin.create_instruction("deletion", record_ids=[record_id])
    return admin.delete_record(record_id, instruction_id=instruction.instruction_id)


def data_state(container: ContainerClient) -> list[tuple[str, str]]:
    """Every blob but the audit trail (which records reads too), with its etag."""
    return sorted(
        (b.name, b.etag) for b in container.list_blobs() if not b.name.startswith("audit/")
    )


def record_blob(container: ContainerClient, record_id: str) -> str:
    """The one blob holding the record document (found by listing, not by assumption)."""
    suffix = record_id[27:]
    found = [n for n in blob_names(container, "records/") if n.endswith(suffix)]
    assert len(found) == 1, found
    return found[0]


def content_blobs(container: ContainerClient, record_id: str) -> list[str]:
    suffix = record_id[27:]
    return [n for n in blob_names(container, "content/") if suffix in n]


def field_tags(container: ContainerClient, record_id: str) -> set[str]:
    doc = json.loads(container.download_blob(record_blob(container, record_id)).readall())
    return set(doc["f"])


# -- round trips ---------------------------------------------------------------------------


def test_create_then_get_returns_fields_events_subject_and_category(
    svc: ControllerScope,
) -> None:
    fields = {
        "diagnosis": "asthma",
        "obs": {"bp": [120, 80], "spo2": 0.97, "ok": True, "note": None},
        "allergies": ["penicillin"],
        "count": 3,
    }
    events = {"last_treatment": dt.date(2024, 5, 1), "date_of_birth": dt.date(1980, 2, 29)}

    ref = svc.create_record(NHSNumber(NHS), category="adult", fields=fields, events=events)
    record = svc.get_record(ref.record_id)

    assert ref.version == 1
    assert record.record_id == ref.record_id
    assert record.category == "adult"
    assert record.version == 1
    assert record.etag == ref.etag
    assert record.subject == NHSNumber(NHS)
    assert record.fields == fields
    assert record.events == events
    assert record.content is None


def test_create_stamps_created_and_updated_at_from_the_injected_clock(
    azurite: AzuriteServer,
) -> None:
    now = [dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)]
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
        retry_total=1, clock=lambda: now[0],
    ) as proc:
        scope = proc.tenant(register(proc), actor=SERVICE)
        ref = scope.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
        now[0] = dt.datetime(2025, 6, 7, 8, 9, 10, tzinfo=dt.UTC)
        scope.update_record(ref.record_id, etag=ref.etag, fields={"a": 2})
        record = scope.get_record(ref.record_id)
    assert record.created_at == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert record.updated_at == dt.datetime(2025, 6, 7, 8, 9, 10, tzinfo=dt.UTC)


def test_each_create_issues_a_new_record_id(svc: ControllerScope) -> None:
    refs = [svc.create_record(NHSNumber(NHS), category="adult") for _ in range(3)]
    assert len({r.record_id for r in refs}) == 3


def test_record_with_no_fields_round_trips(svc: ControllerScope) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="maternity")
    record = svc.get_record(ref.record_id)
    assert record.fields == {}
    assert record.events == {}
    assert record.category == "maternity"


# -- selective decryption ------------------------------------------------------------------


def test_get_with_fields_returns_only_the_named_fields(svc: ControllerScope) -> None:
    ref = svc.create_record(
        NHSNumber(NHS), category="adult", fields={"a": 1, "b": "two", "c": [3]}
    )
    record = svc.get_record(ref.record_id, fields=["a", "c"])
    assert record.fields == {"a": 1, "c": [3]}
    assert svc.get_record(ref.record_id, fields=[]).fields == {}


def test_get_with_fields_the_record_lacks_leaves_them_out(svc: ControllerScope) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    assert svc.get_record(ref.record_id, fields=["a", "zzz"]).fields == {"a": 1}


def test_selective_get_decrypts_only_the_named_field_envelopes(
    svc: ControllerScope, monkeypatch: pytest.MonkeyPatch
) -> None:
    fields = {f"f{i}": f"value {i}" for i in range(12)}
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields=fields)
    from mizaic_processor._core import envelope as envelope_module

    decrypted: list[str] = []
    real = envelope_module.decrypt_field

    def spy(keys: Any, env: bytes, *, controller_id: str, record_id: str,
            field_path: str) -> bytes:
        decrypted.append(field_path)
        return real(keys, env, controller_id=controller_id, record_id=record_id,
                    field_path=field_path)

    monkeypatch.setattr(envelope_module, "decrypt_field", spy)
    assert svc.get_record(ref.record_id, fields=["f3"]).fields == {"f3": "value 3"}
    # the sealed meta document, and the one field asked for: nothing else
    assert sorted(decrypted) == ["$meta", "f3"]
    decrypted.clear()
    assert svc.get_record(ref.record_id).fields == fields
    assert len(decrypted) == 13


def test_a_corrupted_envelope_of_another_field_fails_even_a_selective_read(
    svc: ControllerScope, raw: ContainerClient
) -> None:
    # The sealed meta document carries a digest of every envelope, so storage cannot
    # swap in, drop or corrupt one field's envelope behind a selective read.
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields={"a": "keep"})
    tags_before = field_tags(raw, ref.record_id)
    ref = svc.update_record(ref.record_id, etag=ref.etag, fields={"b": "secret"})
    (tag_b,) = field_tags(raw, ref.record_id) - tags_before
    name = record_blob(raw, ref.record_id)
    doc = json.loads(raw.download_blob(name).readall())
    env = bytearray(base64.b64decode(doc["f"][tag_b]))
    env[-20] ^= 0x01
    doc["f"][tag_b] = base64.b64encode(bytes(env)).decode()
    raw.upload_blob(name, json.dumps(doc).encode(), overwrite=True)
    for wanted in (["a"], ["b"], None):
        with pytest.raises(IntegrityError):
            svc.get_record(ref.record_id, fields=wanted)


# -- updates and optimistic concurrency ----------------------------------------------------


def test_update_sets_keeps_and_removes_fields_and_bumps_version(svc: ControllerScope) -> None:
    ref = svc.create_record(
        NHSNumber(NHS), category="adult", fields={"keep": 1, "change": "old", "drop": True}
    )
    ref2 = svc.update_record(
        ref.record_id, etag=ref.etag, fields={"change": "new", "add": [1, 2]},
        remove_fields=["drop", "never_existed"],
    )
    record = svc.get_record(ref.record_id)
    assert ref2.version == 2
    assert ref2.record_id == ref.record_id
    assert ref2.etag != ref.etag
    assert record.version == 2
    assert record.etag == ref2.etag
    assert record.fields == {"keep": 1, "change": "new", "add": [1, 2]}
    assert record.category == "adult"
    assert record.subject == NHSNumber(NHS)


def test_update_merges_events(svc: ControllerScope) -> None:
    ref = svc.create_record(
        NHSNumber(NHS), category="adult",
        events={"last_treatment": dt.date(2020, 1, 1), "diagnosis": dt.date(2019, 1, 1)},
    )
    svc.update_record(ref.record_id, etag=ref.etag, events={"last_treatment": dt.date(2024, 1, 1)})
    assert svc.get_record(ref.record_id).events == {
        "last_treatment": dt.date(2024, 1, 1),
        "diagnosis": dt.date(2019, 1, 1),
    }


def test_successive_updates_chain_etags_and_versions(svc: ControllerScope) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields={"n": 0})
    for n in range(1, 4):
        ref = svc.update_record(ref.record_id, etag=ref.etag, fields={"n": n})
        assert ref.version == n + 1
    record = svc.get_record(ref.record_id)
    assert (record.version, record.fields) == (4, {"n": 3})


def test_update_with_a_stale_etag_raises_conflict_and_changes_nothing(
    svc: ControllerScope, raw: ContainerClient
) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    ref2 = svc.update_record(ref.record_id, etag=ref.etag, fields={"a": 2})
    before = raw.download_blob(record_blob(raw, ref.record_id)).readall()

    with pytest.raises(ConflictError):
        svc.update_record(ref.record_id, etag=ref.etag, fields={"a": 3})

    assert raw.download_blob(record_blob(raw, ref.record_id)).readall() == before
    record = svc.get_record(ref.record_id)
    assert (record.version, record.etag, record.fields) == (2, ref2.etag, {"a": 2})


def test_two_scopes_updating_from_the_same_etag_exactly_one_wins(
    processor: Processor, cid: str
) -> None:
    first = processor.tenant(cid, actor=Actor.service("svc-one"))
    second = processor.tenant(cid, actor=Actor.service("svc-two"))
    ref = first.create_record(NHSNumber(NHS), category="adult", fields={"who": "nobody"})
    etag = second.get_record(ref.record_id).etag
    assert etag == ref.etag

    won = first.update_record(ref.record_id, etag=etag, fields={"who": "first"})
    with pytest.raises(ConflictError):
        second.update_record(ref.record_id, etag=etag, fields={"who": "second"})

    record = second.get_record(ref.record_id)
    assert record.fields == {"who": "first"}
    assert (record.version, record.etag) == (2, won.etag)


def test_concurrent_updates_from_one_etag_have_exactly_one_winner(
    processor: Processor, cid: str
) -> None:
    writers = 6
    scopes = [processor.tenant(cid, actor=Actor.service(f"svc-{i}")) for i in range(writers)]
    ref = scopes[0].create_record(NHSNumber(NHS), category="adult", fields={"who": -1})
    barrier = threading.Barrier(writers)
    outcomes: dict[int, object] = {}

    def write(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = scopes[i].update_record(ref.record_id, etag=ref.etag, fields={"who": i})
        except ConflictError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)

    winners = [i for i, out in outcomes.items() if not isinstance(out, ConflictError)]
    assert len(outcomes) == writers
    assert len(winners) == 1, outcomes
    record = scopes[0].get_record(ref.record_id)
    assert record.fields == {"who": winners[0]}
    assert record.version == 2


class _RacingStream(io.RawIOBase):
    """Content whose first read lets another writer update the record (a deterministic race
    between the etag pre-check and the conditional write of the record document)."""

    def __init__(self, race: Callable[[], object], data: bytes) -> None:
        super().__init__()
        self._race: Callable[[], object] | None = race
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._race is not None:
            race, self._race = self._race, None
            race()
        return self._data.readinto(buffer)


def test_update_losing_a_race_during_content_upload_is_a_conflict_and_record_unchanged(
    processor: Processor, cid: str
) -> None:
    scope = processor.tenant(cid, actor=SERVICE)
    other = processor.tenant(cid, actor=Actor.service("svc-other"))
    ref = scope.create_record(
        NHSNumber(NHS), category="adult", fields={"v": 0}, content=b"original", content_type=PDF
    )
    stream = _RacingStream(
        lambda: other.update_record(ref.record_id, etag=ref.etag, fields={"v": "other"}),
        b"loser's document",
    )
    with pytest.raises(ConflictError):
        scope.update_record(
            ref.record_id, etag=ref.etag, fields={"v": "loser"}, content=stream,
            content_type="text/plain",
        )
    record = scope.get_record(ref.record_id)
    assert (record.version, record.fields) == (2, {"v": "other"})
    with scope.open_content(ref.record_id) as reader:
        assert reader.read() == b"original"


def test_update_losing_a_race_during_content_upload_leaves_no_orphan_content(
    processor: Processor, cid: str, raw: ContainerClient
) -> None:
    scope = processor.tenant(cid, actor=SERVICE)
    admin = processor.tenant(cid, actor=ADMIN)
    other = processor.tenant(cid, actor=Actor.service("svc-other"))
    ref = scope.create_record(
        NHSNumber(NHS), category="adult", content=b"original", content_type=PDF
    )
    original = content_blobs(raw, ref.record_id)
    stream = _RacingStream(
        lambda: other.update_record(ref.record_id, etag=ref.etag, fields={"v": 1}),
        b"loser's document",
    )
    with pytest.raises(ConflictError):
        scope.update_record(ref.record_id, etag=ref.etag, content=stream, content_type=PDF)
    assert content_blobs(raw, ref.record_id) == original  # the loser's upload is gone
    delete(admin, ref.record_id)
    assert content_blobs(raw, ref.record_id) == []


# -- deletion --------------------------------------------------------------------------------


def test_delete_removes_the_record_and_its_content_and_is_idempotent(
    svc: ControllerScope, admin: ControllerScope, raw: ContainerClient
) -> None:
    ref = svc.create_record(
        NHSNumber(NHS), category="adult", fields={"a": 1}, content=b"doc", content_type=PDF
    )
    keep = svc.create_record(NHSNumber(NHS), category="adult", fields={"b": 2})
    assert content_blobs(raw, ref.record_id)
    instruction = admin.create_instruction("deletion", record_ids=[ref.record_id])

    first = admin.delete_record(ref.record_id, instruction_id=instruction.instruction_id)
    again = admin.delete_record(ref.record_id, instruction_id=instruction.instruction_id)
    assert again == first  # idempotent: the same evidence, no error

    with pytest.raises(NotFoundError):
        svc.get_record(ref.record_id)
    with pytest.raises(NotFoundError):
        svc.open_content(ref.record_id)
    assert content_blobs(raw, ref.record_id) == []
    assert not [n for n in blob_names(raw, "records/") if n.endswith(ref.record_id[27:])]
    assert list(svc.list_records(NHSNumber(NHS))) == [keep.record_id]
    assert svc.get_record(keep.record_id).fields == {"b": 2}


def test_delete_is_for_controller_admin_only(
    svc: ControllerScope, admin: ControllerScope, processor: Processor, cid: str,
    raw: ContainerClient,
) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    instruction = admin.create_instruction("deletion", record_ids=[ref.record_id])
    operator = processor.tenant(cid, actor=OPERATOR)
    before = data_state(raw)
    for scope in (svc, operator):
        with pytest.raises(AccessDeniedError):
            scope.delete_record(ref.record_id, instruction_id=instruction.instruction_id)
        with pytest.raises(AccessDeniedError):
            scope.create_instruction("deletion", record_ids=[ref.record_id])
    assert data_state(raw) == before
    assert svc.get_record(ref.record_id).fields == {"a": 1}


def test_delete_needs_an_instruction_covering_that_record(
    svc: ControllerScope, admin: ControllerScope, raw: ContainerClient
) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    other = svc.create_record(NHSNumber(NHS), category="adult", fields={"b": 2})
    for_other = admin.create_instruction("deletion", record_ids=[other.record_id])
    wrong_kind = admin.create_instruction("export", record_ids=[ref.record_id])
    before = data_state(raw)
    for instruction in (for_other, wrong_kind):
        with pytest.raises(NotFoundError):
            admin.delete_record(ref.record_id, instruction_id=instruction.instruction_id)
    with pytest.raises(NotFoundError):
        admin.delete_record(ref.record_id, instruction_id="i" + "a" * 26)
    with pytest.raises(InvalidInputError):
        admin.delete_record(ref.record_id, instruction_id="../x")
    assert data_state(raw) == before
    assert svc.get_record(ref.record_id).fields == {"a": 1}


# -- roles and unknown names -----------------------------------------------------------------


@pytest.mark.parametrize(
    "operation",
    ["create", "get", "get_fields", "update", "list", "open_content", "subject_exists"],
)
def test_processor_operator_cannot_touch_patient_data(
    processor: Processor, cid: str, svc: ControllerScope, raw: ContainerClient, operation: str
) -> None:
    ref = svc.create_record(
        NHSNumber(NHS), category="adult", fields={"a": 1}, content=b"doc", content_type=PDF
    )
    operator = processor.tenant(cid, actor=OPERATOR)
    calls: dict[str, Callable[[], object]] = {
        "create": lambda: operator.create_record(NHSNumber(NHS), category="adult"),
        "get": lambda: operator.get_record(ref.record_id),
        "get_fields": lambda: operator.get_record(ref.record_id, fields=["a"]),
        "update": lambda: operator.update_record(ref.record_id, etag=ref.etag, fields={"a": 9}),
        "list": lambda: list(operator.list_records(NHSNumber(NHS))),
        "open_content": lambda: operator.open_content(ref.record_id).read(),
        "subject_exists": lambda: operator.subject_exists(NHSNumber(NHS)),
    }
    before = data_state(raw)
    with pytest.raises(AccessDeniedError):
        calls[operation]()
    assert data_state(raw) == before
    assert svc.get_record(ref.record_id).fields == {"a": 1}


def test_unknown_controller_is_not_found(processor: Processor) -> None:
    with pytest.raises(NotFoundError):
        processor.tenant(new_controller_id(), actor=SERVICE)
    with pytest.raises(NotFoundError):
        processor.get_controller(new_controller_id())


def test_unknown_record_is_not_found(svc: ControllerScope, admin: ControllerScope) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="adult")
    missing_same_subject = ref.record_id[:27] + "a" * 26
    missing_other_subject = "r" + "b" * 52
    for rid in (missing_same_subject, missing_other_subject):
        with pytest.raises(NotFoundError):
            svc.get_record(rid)
        with pytest.raises(NotFoundError):
            svc.update_record(rid, etag=ref.etag, fields={"a": 1})
        with pytest.raises(NotFoundError):
            svc.open_content(rid)
        with pytest.raises(NotFoundError):
            delete(admin, rid)


def test_register_controller_is_idempotent_and_listed(processor: Processor) -> None:
    cid = new_controller_id()
    first = processor.register_controller(cid, name="Trust A", actor=OPERATOR)
    again = processor.register_controller(cid, name="Other name", actor=OPERATOR)
    assert again == first
    assert first.region == "uksouth"
    assert cid in {c.controller_id for c in processor.list_controllers()}


def test_a_second_processor_with_the_same_keyring_reads_the_data(
    azurite: AzuriteServer,
) -> None:
    keyring = LocalKeyring.generate()
    kwargs = {"region": "uksouth", "keyring": keyring, "retry_total": 1}
    with Processor.from_connection_string(azurite.connection_string, **kwargs) as one:
        cid = register(one)
        ref = one.tenant(cid, actor=SERVICE).create_record(
            NHSNumber(NHS), category="adult", fields={"a": 1}
        )
    with Processor.from_connection_string(azurite.connection_string, **kwargs) as two:
        scope = two.tenant(cid, actor=SERVICE)
        assert scope.get_record(ref.record_id).fields == {"a": 1}
        assert list(scope.list_records(NHSNumber(NHS))) == [ref.record_id]


# -- subjects: NHS numbers and hospital numbers ----------------------------------------------


def test_list_records_returns_every_record_of_the_subject_and_no_other(
    svc: ControllerScope,
) -> None:
    mine = {svc.create_record(NHSNumber(NHS), category="adult").record_id for _ in range(3)}
    svc.create_record(NHSNumber("4010232137"), category="adult")
    svc.create_record(HospitalNumber("RJ1-000123"), category="adult")
    assert set(svc.list_records(NHSNumber(NHS))) == mine
    assert len(list(svc.list_records(NHSNumber(NHS)))) == 3


def test_looking_up_an_unknown_subject_finds_nothing_and_creates_no_key_or_index(
    svc: ControllerScope, raw: ContainerClient
) -> None:
    svc.create_record(NHSNumber(NHS), category="adult")
    before = data_state(raw)
    assert list(svc.list_records(NHSNumber("4010232137"))) == []
    assert svc.subject_exists(NHSNumber("4010232137")) is False
    assert data_state(raw) == before


@pytest.mark.parametrize(
    ("written", "looked_up"),
    [
        ("943 476 5919", "943-476-5919"),
        ("943-476-5919", "9434765919"),
        ("9434765919", " 943 476 5919 "),
        (9434765919, "943 476 5919"),
    ],
)
def test_nhs_number_formats_find_the_same_records(
    svc: ControllerScope, written: str | int, looked_up: str
) -> None:
    ref = svc.create_record(NHSNumber(written), category="adult", fields={"a": 1})
    again = svc.create_record(NHSNumber(looked_up), category="adult")
    assert set(svc.list_records(NHSNumber(looked_up))) == {ref.record_id, again.record_id}
    assert svc.subject_exists(NHSNumber(looked_up))
    assert svc.get_record(ref.record_id).subject == NHSNumber("9434765919")
    # One subject, one subject key: both records sit under the same subject key id.
    assert ref.record_id[:27] == again.record_id[:27]


def test_hospital_numbers_are_normalised_and_distinct_from_nhs_numbers(
    svc: ControllerScope,
) -> None:
    local = svc.create_record(HospitalNumber(" rj1/0042 "), category="adult")
    as_digits = svc.create_record(HospitalNumber(NHS), category="adult")
    nhs = svc.create_record(NHSNumber(NHS), category="adult")

    assert list(svc.list_records(HospitalNumber("RJ1/0042"))) == [local.record_id]
    assert svc.get_record(local.record_id).subject == HospitalNumber("RJ1/0042")
    # The same characters as an NHS number and as a hospital number are two subjects.
    assert list(svc.list_records(HospitalNumber(NHS))) == [as_digits.record_id]
    assert list(svc.list_records(NHSNumber(NHS))) == [nhs.record_id]
    assert svc.get_record(as_digits.record_id).subject == HospitalNumber(NHS)


# -- content ---------------------------------------------------------------------------------

CHUNK = 1024


@pytest.fixture(scope="module")
def small_chunks(azurite: AzuriteServer) -> Iterator[ControllerScope]:
    """A scope on a processor that encrypts content in 1 KiB chunks."""
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
        chunk_size=CHUNK, retry_total=1,
    ) as proc:
        yield proc.tenant(register(proc), actor=SERVICE)


def pattern(size: int, seed: int = 0) -> bytes:
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


class _NonSeekable(io.RawIOBase):
    """A binary stream of unknown length that returns short reads."""

    def __init__(self, data: bytes, piece: int = 300) -> None:
        super().__init__()
        self._data = data
        self._pos = 0
        self._piece = piece

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(len(buffer), self._piece, len(self._data) - self._pos)
        buffer[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


SIZES = [0, 1, 15, 16, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK - 1, 2 * CHUNK, 2 * CHUNK + 1,
         5 * CHUNK + 7]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("form", ["bytes", "seekable", "non_seekable"])
def test_content_round_trips_at_chunk_boundaries(
    small_chunks: ControllerScope, size: int, form: str
) -> None:
    data = pattern(size, seed=size)
    content: bytes | io.IOBase = {
        "bytes": lambda: data,
        "seekable": lambda: io.BytesIO(data),
        "non_seekable": lambda: _NonSeekable(data),
    }[form]()
    ref = small_chunks.create_record(
        NHSNumber(NHS), category="adult", content=content, content_type="Application/PDF"
    )
    record = small_chunks.get_record(ref.record_id)
    assert record.content is not None
    assert record.content.length == size
    assert record.content.sha256 == hashlib.sha256(data).hexdigest()
    assert record.content.content_type == "application/pdf"

    with small_chunks.open_content(ref.record_id) as reader:
        assert reader.read() == data
        assert reader.verified
    with small_chunks.open_content(ref.record_id) as reader:
        pieces = list(reader)
        assert b"".join(pieces) == data
        assert reader.verified
    with small_chunks.open_content(ref.record_id) as reader:
        got = bytearray()
        while piece := reader.read(700):
            got += piece
        assert bytes(got) == data


def test_content_blob_is_exactly_header_data_and_one_tag_per_chunk(
    azurite: AzuriteServer, small_chunks: ControllerScope
) -> None:
    sizes = {0: 1, CHUNK: 1, CHUNK + 1: 2, 3 * CHUNK: 3}
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        raw = service.get_container_client(f"mzc-{small_chunks.controller_id}")
        lengths = {}
        for size in sizes:
            ref = small_chunks.create_record(
                NHSNumber(NHS), category="adult", content=pattern(size), content_type=PDF
            )
            (name,) = content_blobs(raw, ref.record_id)
            lengths[size] = raw.get_blob_client(name).get_blob_properties().size
    overhead = {size: lengths[size] - size for size in sizes}
    header = overhead[0] - 16
    assert header > 0
    assert overhead == {size: header + 16 * chunks for size, chunks in sizes.items()}


def test_record_without_content_has_none_to_open(svc: ControllerScope) -> None:
    ref = svc.create_record(NHSNumber(NHS), category="adult")
    with pytest.raises(NotFoundError):
        svc.open_content(ref.record_id)


def test_update_replacing_content_serves_the_new_document_and_deletes_the_old(
    small_chunks: ControllerScope, azurite: AzuriteServer
) -> None:
    old, new = pattern(3 * CHUNK + 5, seed=1), pattern(CHUNK, seed=2)
    ref = small_chunks.create_record(
        NHSNumber(NHS), category="adult", fields={"a": 1}, content=old, content_type=PDF
    )
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        raw = service.get_container_client(f"mzc-{small_chunks.controller_id}")
        (old_blob,) = content_blobs(raw, ref.record_id)

        ref2 = small_chunks.update_record(
            ref.record_id, etag=ref.etag, content=io.BytesIO(new), content_type="image/tiff"
        )
        (new_blob,) = content_blobs(raw, ref.record_id)

    assert new_blob != old_blob
    record = small_chunks.get_record(ref.record_id)
    assert record.version == ref2.version == 2
    assert record.fields == {"a": 1}
    assert record.content is not None
    assert (record.content.content_type, record.content.length) == ("image/tiff", len(new))
    assert record.content.sha256 == hashlib.sha256(new).hexdigest()
    with small_chunks.open_content(ref.record_id) as reader:
        assert reader.read() == new


def test_update_without_content_keeps_the_document(small_chunks: ControllerScope) -> None:
    data = pattern(2 * CHUNK + 3, seed=3)
    ref = small_chunks.create_record(
        NHSNumber(NHS), category="adult", content=data, content_type=PDF
    )
    small_chunks.update_record(ref.record_id, etag=ref.etag, fields={"note": "x"})
    record = small_chunks.get_record(ref.record_id)
    assert record.content is not None and record.content.length == len(data)
    with small_chunks.open_content(ref.record_id) as reader:
        assert reader.read() == data


def test_update_adding_content_to_a_record_without_any(small_chunks: ControllerScope) -> None:
    ref = small_chunks.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    small_chunks.update_record(ref.record_id, etag=ref.etag, content=b"later", content_type=PDF)
    with small_chunks.open_content(ref.record_id) as reader:
        assert reader.read() == b"later"


def test_a_document_planted_at_the_first_content_name_is_never_served(
    small_chunks: ControllerScope, azurite: AzuriteServer
) -> None:
    """open_content fetches a record's first document while it reads the record; what it
    fetched is used only if the verified record points at it."""
    first, replacement = pattern(2 * CHUNK, seed=4), pattern(CHUNK + 9, seed=5)
    ref = small_chunks.create_record(
        NHSNumber(NHS), category="adult", content=first, content_type=PDF
    )
    bare = small_chunks.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        raw = service.get_container_client(f"mzc-{small_chunks.controller_id}")
        (first_blob,) = content_blobs(raw, ref.record_id)
        planted = raw.download_blob(first_blob).readall()  # a genuine first document
        small_chunks.update_record(
            ref.record_id, etag=ref.etag, content=replacement, content_type=PDF
        )
        assert first_blob not in content_blobs(raw, ref.record_id)
        # put the old first document back, and plant it for a record that has none
        raw.upload_blob(first_blob, planted)
        bare_first = first_blob.replace(ref.record_id[27:], bare.record_id[27:])
        raw.upload_blob(bare_first, planted)

    with small_chunks.open_content(ref.record_id) as reader:
        assert reader.read() == replacement
    with pytest.raises(NotFoundError):
        small_chunks.open_content(bare.record_id)
