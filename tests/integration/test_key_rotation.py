"""Key rotation without downtime against a real Azurite (``scope.keys``).

While writer threads keep creating records (for known and brand-new patients) and reading
existing ones, the controller admin rotates the KEK, the controller key and the blind-index
key; after the key cache lifetime (an injected clock moved past 3600 s) the old controller
key and index key versions are retired. Then, for a ``LocalKeyring`` and for the Key Vault
code path (``KeyVaultKeyring.offline()``):

(a) no ``records/`` or ``content/`` blob written before the rotation changed by a byte or
    an etag: nothing was re-encrypted (record keys derive from the unchanged subject keys);
(b) every record, old and new, reads back (fields and document) through a fresh Processor
    with empty key caches;
(c) ``list_records`` finds every patient's records through the new index key alone;
(d) ``keys/controller.json`` holds only the new controller key version and the new index
    key, every sub-key and subject key wrapped under the new version, the KEK the new one;
(e) the audit trail verifies and holds every rotation step;
(f) retiring before the cache lifetime has passed is refused with ConflictError.

Also: an interrupted re-wrap (and re-index) pass resumes where it stopped, re-wrapping
each subject key exactly once and making no further key version.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    Actor,
    ConflictError,
    ControllerScope,
    HospitalNumber,
    KeyVaultKeyring,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    Processor,
)
from mizaic_processor._core import envelope
from mizaic_processor.keyring import Keyring
from mizaic_processor.keys import MAX_KEY_CACHE_TTL
from mizaic_processor.models import SubjectId
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
ADMIN = Actor.controller_admin("dpo@trust.example")
SERVICE = Actor.service("svc-epr")
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)
PDF = "application/pdf"
SUBJECTS = 6
RECORDS_PER_SUBJECT = 2
WRITERS = 4


def nhs_numbers(count: int, start: int = 943476500) -> list[str]:
    """Valid NHS numbers (Modulus 11 check digit), in order from ``start``."""
    found: list[str] = []
    stem = start
    while len(found) < count:
        digits = [int(c) for c in f"{stem:09d}"]
        check = 11 - sum(d * (10 - i) for i, d in enumerate(digits)) % 11
        if check == 11:
            check = 0
        if check != 10:
            found.append(f"{stem:09d}{check}")
        stem += 1
    return found


def subjects(count: int) -> list[SubjectId]:
    """Patients of both kinds of identifier."""
    half = count // 2
    return [
        *(NHSNumber(n) for n in nhs_numbers(half)),
        *(HospitalNumber(f"RJ1-{i:07d}") for i in range(count - half)),
    ]


@dataclass(frozen=True)
class Expected:
    subject: SubjectId
    fields: dict[str, Any]
    content: bytes


@dataclass
class Trust:
    proc: Processor
    keyring: Keyring
    cid: str
    now: list[dt.datetime]
    admin: ControllerScope
    service: ControllerScope
    raw: ContainerClient
    conn: str
    records: dict[str, Expected] = field(default_factory=dict)

    def fresh(self) -> Processor:
        """Another processor: same storage and keyring, empty key caches."""
        return Processor.from_connection_string(
            self.conn, region="uksouth", keyring=self.keyring, retry_total=2,
            clock=lambda: self.now[0],
        )


def create(scope: ControllerScope, subject: SubjectId, tag: str) -> tuple[str, Expected]:
    fields = {"tag": tag, "bp": [120, 80], "note": f"seen {tag}"}
    content = f"%PDF-1.7 letter {tag}\n".encode() * 3
    ref = scope.create_record(subject, category="adult", fields=fields, content=content,
                              content_type=PDF)
    return ref.record_id, Expected(subject, fields, content)


def read_back(scope: ControllerScope, record_id: str, expected: Expected) -> None:
    record = scope.get_record(record_id)
    assert record.fields == expected.fields
    assert record.subject is not None
    assert record.subject.kind == expected.subject.kind
    assert record.subject.value == expected.subject.value
    with scope.open_content(record_id) as reader:
        assert reader.read() == expected.content


def blobs(raw: ContainerClient, *prefixes: str) -> dict[str, tuple[str, bytes]]:
    """name -> (etag, bytes) of every blob under the prefixes."""
    found = {}
    for prefix in prefixes:
        for blob in raw.list_blobs(name_starts_with=prefix):
            found[blob.name] = (str(blob.etag), raw.download_blob(blob.name).readall())
    return found


def controller_doc(raw: ContainerClient) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(raw.download_blob("keys/controller.json").readall())
    return doc


def subject_key_versions(raw: ContainerClient) -> dict[str, tuple[int, str]]:
    """skid -> (controller-key version in the wrapped key's header, etag)."""
    found = {}
    for blob in raw.list_blobs(name_starts_with="subjects/"):
        doc = json.loads(raw.download_blob(blob.name).readall())
        wrapped = base64.b64decode(doc["wrapped"])
        found[blob.name.removeprefix("subjects/")] = (
            envelope.wrapped_key_version(wrapped), str(blob.etag)
        )
    return found


def index_versions(raw: ContainerClient) -> Counter[int]:
    return Counter(
        json.loads(raw.download_blob(name).readall())["iv"]
        for name in raw.list_blob_names(name_starts_with="index/")
    )


@pytest.fixture
def blob_service(azurite: AzuriteServer) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


def make_trust(azurite: AzuriteServer, service: BlobServiceClient, keyring: Keyring) -> Trust:
    now = [T0]
    proc = Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=keyring, retry_total=2,
        clock=lambda: now[0],
    )
    cid = "kr" + uuid.uuid4().hex[:10]
    proc.register_controller(cid, name="Rotation Trust", actor=OPERATOR)
    return Trust(
        proc=proc, keyring=keyring, cid=cid, now=now, admin=proc.tenant(cid, actor=ADMIN),
        service=proc.tenant(cid, actor=SERVICE), raw=service.get_container_client(f"mzc-{cid}"),
        conn=azurite.connection_string,
    )


KEYRINGS: dict[str, Callable[[], Keyring]] = {
    "local": LocalKeyring.generate,
    "keyvault-offline": KeyVaultKeyring.offline,
}


@pytest.fixture(params=sorted(KEYRINGS))
def trust(
    request: pytest.FixtureRequest, azurite: AzuriteServer, blob_service: BlobServiceClient
) -> Iterator[Trust]:
    made = make_trust(azurite, blob_service, KEYRINGS[request.param]())
    try:
        yield made
    finally:
        made.proc.close()


# -- rotation under concurrent writes ----------------------------------------------------


@dataclass
class Writers:
    """Threads creating records (known and new patients) and reading existing ones."""

    scope: ControllerScope
    existing: dict[str, Expected]
    patients: list[SubjectId]
    stop: threading.Event = field(default_factory=threading.Event)
    created: dict[str, Expected] = field(default_factory=dict)
    ops: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    started: threading.Barrier = field(default_factory=lambda: threading.Barrier(WRITERS + 1))
    threads: list[threading.Thread] = field(default_factory=list)

    def work(self, index: int) -> None:
        old = sorted(self.existing)
        round_ = 0
        try:
            while True:
                # a known patient, then a brand-new one, in turn
                if round_ % 2 == 0:
                    subject = self.patients[(index + round_) % len(self.patients)]
                else:
                    subject = HospitalNumber(f"NEW-{index}-{round_}")
                rid, expected = create(self.scope, subject, f"w{index}-{round_}")
                with self.lock:
                    self.created[rid] = expected
                    self.ops["create"] += 1
                target = old[(index * 7 + round_) % len(old)]
                read_back(self.scope, target, self.existing[target])
                read_back(self.scope, rid, expected)
                with self.lock:
                    self.ops["read"] += 2
                if round_ == 0:
                    self.started.wait(60)
                round_ += 1
                if self.stop.is_set():
                    return
        except BaseException as exc:  # reported to the test, never swallowed
            with self.lock:
                self.errors.append(f"writer {index}: {type(exc).__name__}: {exc}")
            if round_ == 0:
                self.started.abort()

    def __enter__(self) -> Writers:
        self.threads = [threading.Thread(target=self.work, args=(i,), name=f"writer-{i}")
                        for i in range(WRITERS)]
        for thread in self.threads:
            thread.start()
        self.started.wait(60)  # every writer has done one round before rotating
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(120)
        assert not any(t.is_alive() for t in self.threads)


def test_rotation_under_concurrent_writes_keeps_everything_readable_and_reencrypts_nothing(
    trust: Trust,
) -> None:
    patients = subjects(SUBJECTS)
    for n, subject in enumerate(patients):
        for i in range(RECORDS_PER_SUBJECT):
            rid, expected = create(trust.service, subject, f"old-{n}-{i}")
            trust.records[rid] = expected
    before = blobs(trust.raw, "records/", "content/")
    assert len([n for n in before if n.startswith("content/")]) == len(trust.records)
    assert {v for v, _ in subject_key_versions(trust.raw).values()} == {1}
    kek_before = controller_doc(trust.raw)["versions"]["1"]["wrapped"]["key_id"]

    calls: list[tuple[int, int | None]] = []
    with Writers(trust.service, dict(trust.records), patients) as writers:
        during_start = Counter(writers.ops)
        kek_id = trust.admin.keys.rotate_kek()
        controller_report = trust.admin.keys.rotate_controller_key(
            progress=lambda done, total: calls.append((done, total)))
        index_report = trust.admin.keys.rotate_index_key()
        during_end = Counter(writers.ops)
    assert writers.errors == []
    # the writers really were writing while the keys rotated
    assert during_end["create"] > during_start["create"]
    assert writers.ops["create"] >= WRITERS * 2

    assert kek_id != kek_before
    assert controller_report.version == 2
    assert controller_report.examined >= SUBJECTS
    assert calls == [(n, controller_report.examined)
                     for n in range(1, controller_report.examined + 1)]
    assert index_report.version == 2
    assert index_report.examined >= SUBJECTS
    assert index_report.changed >= SUBJECTS

    # (f) too soon: another process may still hold the old keys in its cache
    for retire in (trust.admin.keys.retire_old_controller_keys,
                   trust.admin.keys.retire_old_index_keys):
        with pytest.raises(ConflictError, match="too soon"):
            retire()
    trust.now[0] = T0 + dt.timedelta(seconds=MAX_KEY_CACHE_TTL - 1)
    for retire in (trust.admin.keys.retire_old_controller_keys,
                   trust.admin.keys.retire_old_index_keys):
        with pytest.raises(ConflictError, match="too soon"):
            retire()
    assert set(controller_doc(trust.raw)["versions"]) == {"1", "2"}  # nothing retired

    trust.now[0] = T0 + dt.timedelta(seconds=MAX_KEY_CACHE_TTL + 1)
    assert trust.admin.keys.retire_old_controller_keys() == [1]
    assert trust.admin.keys.retire_old_index_keys() == [1]
    assert trust.admin.keys.retire_old_controller_keys() == []  # nothing left to retire
    assert trust.admin.keys.retire_old_index_keys() == []

    # (a) not one pre-existing record or document was rewritten
    after = blobs(trust.raw, "records/", "content/")
    for name, (etag, data) in before.items():
        assert name in after, name
        assert after[name][0] == etag, name
        assert after[name][1] == data, name
    new_names = set(after) - set(before)
    assert len([n for n in new_names if n.startswith("records/")]) == len(writers.created)
    assert len([n for n in new_names if n.startswith("content/")]) == len(writers.created)

    # (d) only the new controller key version and index key remain, under the new KEK
    doc = controller_doc(trust.raw)
    assert (doc["current"], doc["index_current"]) == (2, 2)
    assert set(doc["versions"]) == {"2"}
    assert doc["versions"]["2"]["wrapped"]["key_id"] == kek_id
    assert set(doc["subkeys"]) == {"audit", "data", "index-2"}
    for wrapped in doc["subkeys"].values():
        assert envelope.wrapped_key_version(base64.b64decode(wrapped)) == 2
    assert doc["rotated_at"] == T0.isoformat()
    assert doc["index_rotated_at"] == T0.isoformat()
    subject_keys = subject_key_versions(trust.raw)
    assert {version for version, _ in subject_keys.values()} == {2}
    new_patients = {e.subject.value for e in writers.created.values()} - {
        p.value for p in patients}
    assert len(subject_keys) == SUBJECTS + len(new_patients)  # one key per patient
    assert index_versions(trust.raw) == Counter({2: len(subject_keys)})

    # (b) and (c): every record reads back through a processor with empty caches, and
    # every patient's records are found through the new index key alone
    everything = {**trust.records, **writers.created}
    by_patient: dict[tuple[str, str], tuple[SubjectId, set[str]]] = {}
    for rid, expected in everything.items():
        key = (expected.subject.kind, expected.subject.value)
        by_patient.setdefault(key, (expected.subject, set()))[1].add(rid)
    trust.proc.close()
    with trust.fresh() as fresh:
        service = fresh.tenant(trust.cid, actor=SERVICE)
        for rid, expected in everything.items():
            read_back(service, rid, expected)
        for subject, wanted in by_patient.values():
            assert set(service.list_records(subject)) == wanted

        # (e) the trail verifies and holds every step of the rotation
        admin = fresh.tenant(trust.cid, actor=ADMIN)
        report = admin.audit.verify()
        events = admin.audit.query()
    assert report.events > 0
    steps = Counter((e.operation, e.outcome) for e in events if e.operation.startswith("key."))
    assert steps == Counter({
        ("key.rotate_kek", "success"): 1,
        ("key.rotate_controller_key", "success"): 1,
        ("key.rewrap_pass", "success"): 2,  # the rotation's pass and the retirement's
        ("key.rotate_index_key", "success"): 1,
        ("key.reindex_pass", "success"): 2,
        ("key.retire_controller_keys", "success"): 1,
        ("key.retire_index_keys", "success"): 1,
    })
    assert {e.actor for e in events if e.operation.startswith("key.")} == {ADMIN.id}


# -- resumability ----------------------------------------------------------------------


class PassInterruptedError(Exception):
    """Stands for a crash or Ctrl-C part-way through a pass."""


def interrupt_after(count: int, *, before_each: bool = False) -> Callable[[int, int | None], None]:
    """A progress callback that stops the pass once ``count`` items are done.

    The re-wrap pass reports after each subject; the re-index pass before each entry
    (``before_each``), so it stops when asked about item ``count + 1``.
    """

    def progress(done: int, total: int | None) -> None:
        if done == count + (1 if before_each else 0):
            raise PassInterruptedError

    return progress


def test_an_interrupted_controller_key_rotation_resumes_and_rewraps_each_key_exactly_once(
    azurite: AzuriteServer, blob_service: BlobServiceClient
) -> None:
    trust = make_trust(azurite, blob_service, LocalKeyring.generate())
    try:
        for n, subject in enumerate(subjects(5)):
            rid, expected = create(trust.service, subject, f"r{n}")
            trust.records[rid] = expected
        initial = subject_key_versions(trust.raw)
        assert {v for v, _ in initial.values()} == {1} and len(initial) == 5
        records_before = blobs(trust.raw, "records/", "content/")

        with pytest.raises(PassInterruptedError):
            trust.admin.keys.rotate_controller_key(progress=interrupt_after(2))
        halfway = subject_key_versions(trust.raw)
        done = sorted(skid for skid, (version, _) in halfway.items() if version == 2)
        assert done == sorted(halfway)[:2]  # the pass goes in listing order
        for skid in set(halfway) - set(done):
            assert halfway[skid] == initial[skid]  # untouched
        assert set(controller_doc(trust.raw)["versions"]) == {"1", "2"}
        for rid, expected in trust.records.items():  # readable half-way through
            read_back(trust.service, rid, expected)

        seen: list[tuple[int, int | None]] = []
        resumed = trust.admin.keys.rotate_controller_key(
            progress=lambda d, t: seen.append((d, t)))
        assert (resumed.version, resumed.examined, resumed.changed) == (2, 5, 3)
        assert seen == [(n, 5) for n in range(1, 6)]
        finished = subject_key_versions(trust.raw)
        assert {v for v, _ in finished.values()} == {2}
        for skid in done:  # not re-wrapped a second time
            assert finished[skid] == halfway[skid]
        for skid in set(finished) - set(done):
            assert finished[skid][1] != halfway[skid][1]
        doc = controller_doc(trust.raw)
        assert set(doc["versions"]) == {"1", "2"} and doc["current"] == 2  # no version 3

        again = trust.admin.keys.rotate_controller_key()
        assert (again.version, again.examined, again.changed) == (2, 5, 0)
        assert subject_key_versions(trust.raw) == finished

        # the same for the blind-index key: stop after two entries, then resume
        with pytest.raises(PassInterruptedError):
            trust.admin.keys.rotate_index_key(progress=interrupt_after(2, before_each=True))
        # old entries stay until the old key is retired (other processes may still use it)
        assert index_versions(trust.raw) == Counter({1: 5, 2: 2})
        for rid, expected in trust.records.items():  # found under either key meanwhile
            assert list(trust.service.list_records(expected.subject)) == [rid]
        reindexed = trust.admin.keys.rotate_index_key()
        assert (reindexed.version, reindexed.examined, reindexed.changed) == (2, 7, 3)
        assert index_versions(trust.raw) == Counter({1: 5, 2: 5})
        assert controller_doc(trust.raw)["index_current"] == 2

        trust.now[0] = T0 + dt.timedelta(seconds=MAX_KEY_CACHE_TTL + 1)
        assert trust.admin.keys.retire_old_controller_keys() == [1]
        assert trust.admin.keys.retire_old_index_keys() == [1]
        assert index_versions(trust.raw) == Counter({2: 5})  # old entries gone with the key
        assert subject_key_versions(trust.raw) == finished  # nothing left to re-wrap
        assert blobs(trust.raw, "records/", "content/") == records_before
        trust.proc.close()
        with trust.fresh() as fresh:
            service = fresh.tenant(trust.cid, actor=SERVICE)
            for rid, expected in trust.records.items():
                read_back(service, rid, expected)
                assert list(service.list_records(expected.subject)) == [rid]
            admin = fresh.tenant(trust.cid, actor=ADMIN)
            admin.audit.verify()
            ops = Counter(e.operation for e in admin.audit.query()
                          if e.operation.startswith("key.") and e.outcome == "success")
        assert ops["key.rotate_controller_key"] == 1  # one new version, however many runs
        assert ops["key.rotate_index_key"] == 1
        assert ops["key.rewrap_pass"] == 4  # interrupted, resumed, again, retirement
    finally:
        trust.proc.close()


# -- other processes during a rotation -------------------------------------------------


def test_a_process_with_cached_keys_keeps_finding_patients_during_an_index_key_rotation(
    azurite: AzuriteServer, blob_service: BlobServiceClient
) -> None:
    keyring = LocalKeyring.generate()
    trust = make_trust(azurite, blob_service, keyring)
    other = trust.fresh()  # a second process of the same deployment
    try:
        patient = HospitalNumber("RJ1-7700001")
        first, _ = create(trust.service, patient, "first")
        other_service = other.tenant(trust.cid, actor=SERVICE)
        other_service.get_record(first)  # its controller keys are now cached (5 min)

        trust.admin.keys.rotate_index_key()

        # the other process has not seen the new index key yet: it must still find the
        # patient (the module promises lookups try both keys until the old one is retired)
        found: list[str] | MizaicError
        try:
            found = list(other_service.list_records(patient))
            second, _ = create(other_service, patient, "second")
        except MizaicError as exc:
            found = exc
        assert found == [first]
        assert second[1:27] == first[1:27]  # the same subject key, not a new one
        trust.now[0] = T0 + dt.timedelta(seconds=MAX_KEY_CACHE_TTL + 1)
        assert trust.admin.keys.retire_old_index_keys() == [1]
        assert set(trust.service.list_records(patient)) == {first, second}
    finally:
        other.close()
        trust.proc.close()


def test_an_erasure_by_a_process_with_cached_keys_during_an_index_key_rotation_is_complete(
    azurite: AzuriteServer, blob_service: BlobServiceClient
) -> None:
    trust = make_trust(azurite, blob_service, LocalKeyring.generate())
    other = trust.fresh()
    try:
        patient = HospitalNumber("RJ1-7700002")
        first, _ = create(trust.service, patient, "first")
        other_admin = other.tenant(trust.cid, actor=ADMIN)
        assert list(other_admin.list_records(patient)) == [first]  # keys and entry cached

        trust.admin.keys.rotate_index_key()
        instruction = other_admin.create_instruction("erasure", subject=patient)
        report = other_admin.erase_subject(patient, instruction_id=instruction.instruction_id)
        assert report.records_destroyed == (first,) and report.key_destroyed

        assert list(trust.raw.list_blob_names(name_starts_with="subjects/")) == []
        assert list(trust.raw.list_blob_names(name_starts_with="index/")) == []
        with trust.fresh() as fresh:
            service = fresh.tenant(trust.cid, actor=SERVICE)
            assert service.subject_exists(patient) is False
            again, expected = create(service, patient, "returning patient")
            read_back(service, again, expected)
    finally:
        other.close()
        trust.proc.close()
