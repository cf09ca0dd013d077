"""``scope.keys.verify_index()`` against a real Azurite: a blind-index entry deleted in
Blob Storage (with the raw SDK) hides its subject, and the next record for that subject
would get a second key. The pass puts a lost entry back, reports a subject already split
between two keys, drops an entry whose key was erased, sends the controller the integrity
notice when it finds anything, and on a sound store changes nothing and sends nothing.
"""

from __future__ import annotations

import base64
import contextlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    ControllerScope,
    HospitalNumber,
    IndexReport,
    IntegrityError,
    InvalidInputError,
    LocalKeyring,
    NHSNumber,
    Processor,
)
from mizaic_processor.keys import KeyRotation
from mizaic_processor.models import SubjectId
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
PATIENTS: tuple[SubjectId, ...] = (
    NHSNumber("9434765919"), NHSNumber("9434765870"), HospitalNumber("RJ1-0042731"),
)


@dataclass
class Trust:
    connection_string: str
    keyring: LocalKeyring
    cid: str
    svc: ControllerScope
    admin: ControllerScope
    raw: ContainerClient
    index_of: dict[str, str]  # subject value -> its index blob name
    records_of: dict[str, list[str]]  # subject value -> its record ids
    tenant: Callable[[Actor], ControllerScope]

    def names(self, prefix: str) -> list[str]:
        return sorted(self.raw.list_blob_names(name_starts_with=prefix))

    def state(self) -> dict[str, str]:
        """The keys, index entries, records and documents, each with its etag (the
        automatic notice and the audit trail are checked on their own)."""
        return {b.name: str(b.etag) for b in self.raw.list_blobs()
                if b.name.startswith(("subjects/", "index/", "records/", "content/"))}

    def breaches(self) -> int:
        return len(list(self.admin.requests.list_breaches()))

    @contextlib.contextmanager
    def fresh(self) -> Iterator[ControllerScope]:
        """The service's scope in a new Processor: no lookup cached from before (a
        process caches the subjects it has found)."""
        with Processor.from_connection_string(
            self.connection_string, region="uksouth", keyring=self.keyring,
        ) as processor:
            yield processor.tenant(self.cid, actor=SERVICE)

    def found(self, subject: SubjectId) -> list[str]:
        """The subject's records, as a new process finds them by its identifier."""
        with self.fresh() as scope:
            return sorted(scope.list_records(subject))


@pytest.fixture
def trust(azurite: AzuriteServer) -> Iterator[Trust]:
    ring = LocalKeyring.generate()
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=ring, retry_total=1,
    ) as processor, BlobServiceClient.from_connection_string(
        azurite.connection_string
    ) as service:
        cid = "ix" + uuid.uuid4().hex[:10]
        processor.register_controller(cid, name="Index Trust", actor=OPERATOR)
        svc = processor.tenant(cid, actor=SERVICE)
        raw = service.get_container_client(f"mzc-{cid}")
        index_of: dict[str, str] = {}
        records_of: dict[str, list[str]] = {}
        for n, patient in enumerate(PATIENTS):
            before = set(raw.list_blob_names(name_starts_with="index/"))
            records_of[patient.value] = [
                svc.create_record(patient, category="adult", fields={"n": n, "i": i}).record_id
                for i in range(2)
            ]
            after = set(raw.list_blob_names(name_starts_with="index/"))
            (index_of[patient.value],) = after - before
        yield Trust(azurite.connection_string, ring, cid, svc,
                    processor.tenant(cid, actor=ADMIN), raw, index_of, records_of,
                    lambda actor: processor.tenant(cid, actor=actor))


def skid_of(record_id: str) -> str:
    return record_id[1:27]


def test_a_sound_store_is_reported_sound_and_nothing_changes(trust: Trust) -> None:
    before = trust.state()
    seen: list[tuple[int, int | None]] = []
    report = trust.admin.keys.verify_index(
        progress=lambda done, total: seen.append((done, total)))
    assert report == IndexReport(examined=3, restored=0, split=(), without_records=0)
    assert seen == [(1, None), (2, None), (3, None)]
    assert trust.state() == before
    assert trust.breaches() == 0
    ops = [e.operation for e in trust.admin.audit.query(actor=ADMIN.id)]
    assert "key.verify_index" in ops and "subject.index_restore" not in ops


def test_a_lost_index_entry_is_put_back_and_the_subject_found_again(trust: Trust) -> None:
    lost = PATIENTS[1]
    trust.raw.delete_blob(trust.index_of[lost.value])
    # the attack works: the subject reads as unknown
    assert trust.found(lost) == []
    with trust.fresh() as svc:
        assert not svc.subject_exists(lost)

    report = trust.admin.keys.verify_index()
    assert report == IndexReport(examined=3, restored=1, split=(), without_records=0)
    assert trust.index_of[lost.value] in trust.names("index/")
    # a fresh process (no cached lookups) finds the subject and its records again, and a
    # new record joins the subject's key instead of making a second one
    with trust.fresh() as svc:
        assert sorted(svc.list_records(lost)) == sorted(trust.records_of[lost.value])
        new = svc.create_record(lost, category="adult", fields={"after": True}).record_id
    assert skid_of(new) == skid_of(trust.records_of[lost.value][0])
    assert len(trust.names("subjects/")) == 3
    # the controller is told its store was tampered with, and what the check did
    (notice,) = trust.admin.requests.list_breaches()
    assert "blind-index check" in notice.consequences
    assert "refused" not in notice.consequences  # the check refuses nothing
    events = [e for e in trust.admin.audit.query(actor=ADMIN.id)
              if e.operation == "subject.index_restore"]
    assert [(e.entity, e.outcome) for e in events] == [
        (f"subject:{skid_of(new)}", "success")]

    again = trust.admin.keys.verify_index()  # what was put back stays put back
    assert again == IndexReport(examined=3, restored=0, split=(), without_records=0)


def test_a_subject_already_split_between_two_keys_is_reported(trust: Trust) -> None:
    lost = PATIENTS[0]
    old = trust.records_of[lost.value]
    trust.raw.delete_blob(trust.index_of[lost.value])
    with trust.fresh() as svc:  # a process that had not found the subject yet
        second = svc.create_record(lost, category="adult", fields={"later": 1}).record_id
    assert skid_of(second) != skid_of(old[0])  # the split: a second key for the subject
    before = trust.state()

    report = trust.admin.keys.verify_index()
    assert report == IndexReport(examined=4, restored=0, split=(skid_of(old[0]),),
                                 without_records=0)
    assert trust.state() == before  # both keys are left for the controller to decide
    assert trust.found(lost) == [second]
    for record_id in old:  # the orphaned key still opens its records by record id
        assert trust.admin.get_record(record_id).fields["n"] == 0
    assert trust.breaches() == 1


def test_records_without_an_entry_are_found_among_keys_without_records(trust: Trust) -> None:
    # keys sort by id, and the pass walks the key and record listings side by side: a key
    # without records between others must not shift which record belongs to which key
    first, emptied, last = sorted(PATIENTS, key=lambda p: trust.records_of[p.value][0])
    others = (first, last)
    for record_id in trust.records_of[emptied.value]:  # its records gone from storage
        (name,) = [n for n in trust.names("records/") if n.endswith(record_id[27:])]
        trust.raw.delete_blob(name)
    for patient in others:
        trust.raw.delete_blob(trust.index_of[patient.value])

    report = trust.admin.keys.verify_index()
    assert report == IndexReport(examined=3, restored=2, split=(), without_records=1)
    for patient in others:
        assert trust.found(patient) == sorted(trust.records_of[patient.value])
    assert trust.index_of[emptied.value] in trust.names("index/")  # untouched


def test_an_entry_naming_an_erased_key_is_dropped_and_the_right_one_put_back(
    trust: Trust,
) -> None:
    # The subject's entry names a second key, which was then erased while the entry
    # survived (as when an erasing process did not know a newer index key version).
    lost = PATIENTS[0]
    trust.raw.delete_blob(trust.index_of[lost.value])
    with trust.fresh() as svc:  # a process that had not found the subject yet
        second = svc.create_record(lost, category="adult", fields={"later": 1}).record_id
    for name in trust.names(f"records/{skid_of(second)}/"):
        trust.raw.delete_blob(name)
    trust.raw.delete_blob(f"subjects/{skid_of(second)}")
    assert trust.index_of[lost.value] in trust.names("index/")  # naming the erased key

    report = trust.admin.keys.verify_index()
    assert report == IndexReport(examined=3, restored=1, split=(), without_records=0)
    assert trust.found(lost) == sorted(trust.records_of[lost.value])


def test_only_an_administrator_runs_it_and_a_bad_callback_is_refused_first(
    trust: Trust,
) -> None:
    before = trust.state()
    with pytest.raises(AccessDeniedError):
        trust.svc.keys.verify_index()
    with pytest.raises(InvalidInputError):
        trust.admin.keys.verify_index(progress="bar")  # type: ignore[arg-type]
    assert trust.state() == before


def test_a_damaged_record_is_listed_and_the_pass_goes_on(trust: Trust) -> None:
    # One corrupted record must not shield the subjects after it from the check.
    damaged, *others = sorted(PATIENTS, key=lambda p: trust.records_of[p.value][0])
    for record_id in trust.records_of[damaged.value]:
        (name,) = [n for n in trust.names("records/") if n.endswith(record_id[27:])]
        doc = json.loads(trust.raw.download_blob(name).readall())
        meta = bytearray(base64.b64decode(doc["m"]))
        meta[-1] ^= 0x01
        doc["m"] = base64.b64encode(bytes(meta)).decode()
        trust.raw.upload_blob(name, json.dumps(doc).encode(), overwrite=True)
    for patient in others:
        trust.raw.delete_blob(trust.index_of[patient.value])

    report = trust.admin.keys.verify_index()
    assert report == IndexReport(examined=3, restored=2, split=(),
                                 damaged=(skid_of(trust.records_of[damaged.value][0]),))
    for patient in others:
        assert trust.found(patient) == sorted(trust.records_of[patient.value])
    assert trust.breaches() == 1


def test_entries_under_an_older_index_key_still_count_during_a_rotation(
    trust: Trust,
) -> None:
    # Mid-rotation a subject may be found through its old entry only: that is sound.
    operator = trust.tenant(OPERATOR)
    before = set(trust.names("index/"))
    assert operator.keys.rotate_index_key().changed == 3
    newer = set(trust.names("index/")) - before
    trust.raw.delete_blob(sorted(newer)[0])  # one subject keeps only its old entry
    state = trust.state()

    report = operator.keys.verify_index()
    assert report == IndexReport(examined=3, restored=0, split=(), without_records=0)
    assert trust.state() == state
    assert trust.breaches() == 0


def test_a_writer_that_wins_the_race_to_the_entry_is_judged_not_overwritten(
    trust: Trust, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Between finding the entry missing and putting it back, a process that had not
    # found the subject gives it a new record (and a second key, with its own entry):
    # the create-only put loses, and the subject is then reported split.
    lost = PATIENTS[2]
    old = trust.records_of[lost.value]
    trust.raw.delete_blob(trust.index_of[lost.value])
    real = KeyRotation._index_state
    raced: list[str] = []

    def racing(self: KeyRotation, subject: SubjectId, skid: str) -> str:
        state = real(self, subject, skid)
        if state == "missing" and not raced:
            with trust.fresh() as svc:
                raced.append(svc.create_record(lost, category="adult", fields={}).record_id)
        return state

    monkeypatch.setattr(KeyRotation, "_index_state", racing)
    report = trust.admin.keys.verify_index()
    assert report.split == (skid_of(old[0]),) and report.restored == 0
    assert trust.found(lost) == raced  # the winner's entry stands
    events = [(e.entity, e.outcome) for e in trust.admin.audit.query(actor=ADMIN.id)
              if e.operation == "subject.index_restore"]
    assert events == [(f"subject:{skid_of(old[0])}", "success"),
                      (f"subject:{skid_of(old[0])}", "failure")]


def test_a_subject_erased_during_the_check_gets_no_entry_back(
    trust: Trust, monkeypatch: pytest.MonkeyPatch,
) -> None:
    lost = PATIENTS[1]
    skid = skid_of(trust.records_of[lost.value][0])
    trust.raw.delete_blob(trust.index_of[lost.value])
    real = KeyRotation._index_state

    def erasing(self: KeyRotation, subject: SubjectId, checked: str) -> str:
        state = real(self, subject, checked)
        if checked == skid:  # its records and key go, as an erasure removes them
            for name in trust.names(f"records/{skid}/"):
                trust.raw.delete_blob(name)
            trust.raw.delete_blob(f"subjects/{skid}")
        return state

    monkeypatch.setattr(KeyRotation, "_index_state", erasing)
    report = trust.admin.keys.verify_index()
    assert report == IndexReport(examined=3, restored=0, split=(), without_records=1)
    assert trust.index_of[lost.value] not in trust.names("index/")
    assert trust.breaches() == 0


def test_stray_blob_names_neither_hide_a_subject_nor_stop_the_pass(trust: Trust) -> None:
    # records/<key id>-x sorts before records/<key id>/..., and junk inside a key's own
    # block sorts before its real records: the walk must still pair each key with its
    # records, and use the key's other records when the first does not verify.
    first, middle, last = sorted(PATIENTS, key=lambda p: trust.records_of[p.value][0])
    for patient in (first, middle):
        trust.raw.delete_blob(trust.index_of[patient.value])
    stray = skid_of(trust.records_of[first.value][0])
    junk_key = skid_of(trust.records_of[middle.value][0])
    trust.raw.upload_blob(f"records/{stray}-/x", b"junk")
    junk = "r" + junk_key + "2" * 26  # well-formed, first in the key's block, no record
    trust.raw.upload_blob(f"records/{junk_key}/{'2' * 26}", b"not a record")
    trust.raw.upload_blob("subjects/not-a-key", b"junk")

    report = trust.admin.keys.verify_index()
    assert report.restored == 2 and report.split == ()
    assert set(report.damaged) == {junk_key, "not-a-key"}
    for patient in (first, last):
        assert trust.found(patient) == sorted(trust.records_of[patient.value])
    assert trust.found(middle) == sorted([*trust.records_of[middle.value], junk])
    assert trust.breaches() == 1


def test_a_stray_name_among_a_subjects_records_is_an_integrity_failure_not_an_id(
    trust: Trust,
) -> None:
    # Before, list_records turned any name under records/<key id>/ into a "record id",
    # and erasure and export then failed on it half-way.
    patient = PATIENTS[0]
    skid = skid_of(trust.records_of[patient.value][0])
    trust.raw.upload_blob(f"records/{skid}/x/y", b"junk")
    with trust.fresh() as svc, pytest.raises(IntegrityError):
        list(svc.list_records(patient))
    assert trust.breaches() == 1
