"""Appraisal, approval and destruction against a real Azurite: nothing is destroyed without
an approved appraisal or a standing destroy instruction; destruction killed part-way and run
again destroys every approved record exactly once with one evidence entry each; several
workers on disjoint shards; crypto-shredding makes ciphertext copied aside unreadable; and
the evidence names no patient."""

from __future__ import annotations

import datetime as dt
import hashlib
import signal
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    Actor,
    AuditError,
    ControllerScope,
    HospitalNumber,
    IntegrityError,
    InvalidInputError,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    NotFoundError,
    Processor,
    RecordRef,
    SubjectId,
)
from mizaic_processor._azure.blob import Container
from mizaic_processor._core.retention import NHS_RECORDS_CODE_2021
from mizaic_processor._docs import ControllerDocs
from mizaic_processor.keys import MAX_KEY_CACHE_TTL
from mizaic_processor.retention import Appraisal, _shard_of
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("records.manager@trust.example")
NOW = dt.datetime(2033, 3, 1, 12, 0, tzinfo=dt.UTC)
AS_OF = dt.date(2033, 3, 1)
OLD = {"last_treatment": dt.date(2012, 1, 1)}  # adult: due 2020-01-01
NHS = "9434765919"
FIELD_VALUE = "left knee arthroscopy, meniscal tear"
DOCUMENT = b"%PDF-1.7 scanned operation note " + bytes(range(256)) * 64


class CrashError(Exception):
    """A deterministic stand-in for a worker dying at a precise point."""


@pytest.fixture
def keyring() -> LocalKeyring:
    return LocalKeyring.generate()


def new_processor(azurite: AzuriteServer, keyring: LocalKeyring) -> Processor:
    return Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=keyring, retry_total=2,
        clock=lambda: NOW,
    )


@pytest.fixture
def proc(azurite: AzuriteServer, keyring: LocalKeyring) -> Iterator[Processor]:
    processor = new_processor(azurite, keyring)
    try:
        yield processor
    finally:
        processor.close()


@pytest.fixture
def cid(proc: Processor) -> str:
    cid = "t" + uuid.uuid4().hex[:10]
    proc.register_controller(cid, name="Test Trust", actor=OPERATOR)
    proc.tenant(cid, actor=ADMIN).retention.adopt_preset()
    return cid


@pytest.fixture
def admin(proc: Processor, cid: str) -> ControllerScope:
    return proc.tenant(cid, actor=ADMIN)


@pytest.fixture
def svc(proc: Processor, cid: str) -> ControllerScope:
    return proc.tenant(cid, actor=SERVICE)


@pytest.fixture
def raw(azurite: AzuriteServer, cid: str) -> Iterator[ContainerClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service.get_container_client(f"mzc-{cid}")


def patient() -> HospitalNumber:
    return HospitalNumber("H" + uuid.uuid4().hex[:12].upper())


def due_records(svc: ControllerScope, count: int, *, per_subject: int = 1) -> list[RecordRef]:
    refs: list[RecordRef] = []
    subject: SubjectId = patient()
    for n in range(count):
        if n % per_subject == 0:
            subject = patient()
        refs.append(svc.create_record(subject, category="adult", fields={"n": n}, events=OLD))
    return refs


def approved_appraisal(admin: ControllerScope) -> Appraisal:
    appraisal = admin.retention.appraise(AS_OF)
    return admin.retention.approve(appraisal.appraisal_id, note="approved at the board")


def subject_key_blob(record_id: str) -> str:
    return "subjects/" + record_id[1:27]


def assert_destroyed_once(admin: ControllerScope, approved: Appraisal) -> None:
    """Every approved record is gone, with exactly one 'destroyed' evidence entry each."""
    ids = set(approved.approved_record_ids or ())
    evidence = admin.retention.list_evidence()
    assert sorted(e.record_id for e in evidence) == sorted(ids)  # one entry per record
    assert {e.status for e in evidence} == {"destroyed"}
    assert {e.appraisal_id for e in evidence} == {approved.appraisal_id}
    assert {e.instruction_id for e in evidence} == {approved.approval_instruction_id}
    for record_id in ids:
        with pytest.raises(NotFoundError):
            admin.get_record(record_id)


# -- authority ---------------------------------------------------------------------------


def test_nothing_is_destroyed_without_an_approved_appraisal(
    raw: ContainerClient, admin: ControllerScope, svc: ControllerScope
) -> None:
    refs = due_records(svc, 3)
    before = sorted(raw.list_blob_names(name_starts_with="records/"))
    appraisal = admin.retention.appraise(AS_OF)  # appraising destroys nothing
    assert {i.record_id for i in appraisal.due} == {r.record_id for r in refs}
    assert not any(i.standing_destroy for i in appraisal.due)
    report = admin.retention.destroy(appraisal.appraisal_id)  # not approved
    assert set(report.not_approved) == {r.record_id for r in refs}
    assert report.destroyed == ()
    assert sorted(raw.list_blob_names(name_starts_with="records/")) == before
    assert admin.retention.list_evidence() == []
    # A direct delete needs a destructive instruction from the ledger that covers the record.
    export = admin.create_instruction("export", record_ids=[refs[0].record_id])
    other = admin.create_instruction("deletion", record_ids=[refs[1].record_id])
    for instruction_id in (export.instruction_id, other.instruction_id, "i" + "a" * 26):
        with pytest.raises(NotFoundError):
            admin.delete_record(refs[0].record_id, instruction_id=instruction_id)
    with pytest.raises(InvalidInputError):
        admin.delete_record(refs[0].record_id, instruction_id=None)  # type: ignore[arg-type]
    assert sorted(raw.list_blob_names(name_starts_with="records/")) == before


def _blobs(raw: ContainerClient) -> dict[str, str]:
    return {blob.name: str(blob.etag) for blob in raw.list_blobs()}


def test_an_approval_refused_for_want_of_audit_writes_no_instruction(
    admin: ControllerScope, svc: ControllerScope, raw: ContainerClient
) -> None:
    # The approval's destruction instruction used to be written to the ledger before the
    # audit event, so an approval the audit refused still left a usable instruction.
    due_records(svc, 2)
    appraisal = admin.retention.appraise(AS_OF)
    before = _blobs(raw)
    segment = max(name for name in before if name.startswith("audit/"))
    lease = raw.get_blob_client(segment).acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(AuditError):
            admin.retention.approve(appraisal.appraisal_id)
        after = _blobs(raw)
    finally:
        lease.release()
    assert after == before
    assert list(admin._ledger.list_instructions()) == []  # no public listing of the ledger


def test_approving_nothing_is_refused_and_leaves_no_instruction(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    # An instruction with no record ids covers every record: approving an empty selection
    # used to leave a destruction instruction that delete_record accepted for any record.
    empty = admin.retention.appraise(AS_OF)  # nothing stored yet: nothing due
    with pytest.raises(InvalidInputError):
        admin.retention.approve(empty.appraisal_id)
    refs = due_records(svc, 2)
    appraisal = admin.retention.appraise(AS_OF)
    with pytest.raises(InvalidInputError):
        admin.retention.approve(appraisal.appraisal_id, record_ids=[])
    assert list(admin._ledger.list_instructions()) == []
    assert admin.get_record(refs[0].record_id).fields == {"n": 0}


def test_an_approvals_instruction_authorises_its_destruction_run_only(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    # An approval whose appraisal write failed (a lost race, a storage error) leaves its
    # instruction behind: citing it directly must not destroy anything.
    refs = due_records(svc, 2)
    approved = approved_appraisal(admin)
    assert approved.approval_instruction_id is not None
    with pytest.raises(NotFoundError):
        admin.delete_record(refs[0].record_id, instruction_id=approved.approval_instruction_id)
    assert admin.get_record(refs[0].record_id).fields == {"n": 0}
    report = admin.retention.destroy(approved.appraisal_id)  # its own run still works
    assert set(report.destroyed) == {r.record_id for r in refs}


def test_partial_approval_destroys_only_the_approved_records(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    refs = due_records(svc, 4)
    appraisal = admin.retention.appraise(AS_OF)
    chosen = [refs[0].record_id, refs[2].record_id]
    approved = admin.retention.approve(appraisal.appraisal_id, record_ids=chosen)
    assert set(approved.approved_record_ids or ()) == set(chosen)
    assert approved.approved_by == ADMIN.id
    ledger = admin.get_instruction(approved.approval_instruction_id or "")
    assert (ledger.action, set(ledger.record_ids)) == ("destruction", set(chosen))
    with pytest.raises(MizaicError):  # approved once only
        admin.retention.approve(appraisal.appraisal_id)
    report = admin.retention.destroy(appraisal.appraisal_id)
    assert set(report.destroyed) == set(chosen)
    assert set(report.not_approved) == {refs[1].record_id, refs[3].record_id}
    assert_destroyed_once(admin, approved)
    assert svc.get_record(refs[1].record_id).fields == {"n": 1}


def test_standing_destroy_instruction_destroys_due_records_without_approval(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    standing = NHS_RECORDS_CODE_2021["adult"].model_copy(update={"on_expiry": "destroy"})
    version = admin.retention.set_instruction("adult", standing).version
    refs = due_records(svc, 2)
    kept = svc.create_record(patient(), category="maternity", events={"end_of_care": dt.date(1990,
                                                                                            1, 1)})
    appraisal = admin.retention.appraise(AS_OF)
    assert {(i.record_id, i.standing_destroy) for i in appraisal.due} == {
        (refs[0].record_id, True), (refs[1].record_id, True), (kept.record_id, False)
    }
    report = admin.retention.destroy(appraisal.appraisal_id)
    assert set(report.destroyed) == {r.record_id for r in refs}
    assert report.not_approved == (kept.record_id,)  # maternity needs approval
    evidence = admin.retention.list_evidence()
    assert {(e.record_id, e.instruction_version, e.status) for e in evidence} == {
        (r.record_id, version, "destroyed") for r in refs
    }


def test_revoked_standing_destroy_instruction_no_longer_destroys(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    standing = NHS_RECORDS_CODE_2021["adult"].model_copy(update={"on_expiry": "destroy"})
    admin.retention.set_instruction("adult", standing)
    (ref,) = due_records(svc, 1)
    appraisal = admin.retention.appraise(AS_OF)
    assert appraisal.due[0].standing_destroy
    admin.retention.set_instruction("adult", NHS_RECORDS_CODE_2021["adult"])  # revoked
    report = admin.retention.destroy(appraisal.appraisal_id)
    assert report.not_approved == (ref.record_id,)
    assert svc.get_record(ref.record_id).fields == {"n": 0}


# -- resumable, idempotent destruction ---------------------------------------------------


def test_destruction_crashed_part_way_resumes_and_destroys_each_record_once(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    due_records(svc, 7, per_subject=2)
    approved = approved_appraisal(admin)
    assert len(approved.approved_record_ids or ()) == 7

    def crash_after_three(done: int, total: int | None) -> None:
        if done > 3:  # called before each record: three are done
            raise CrashError

    with pytest.raises(CrashError):
        admin.retention.destroy(approved.appraisal_id, progress=crash_after_three)
    first = {e.record_id: e for e in admin.retention.list_evidence()}
    assert len(first) == 3
    report = admin.retention.destroy(approved.appraisal_id)
    assert set(report.already_destroyed) == set(first)
    assert len(report.destroyed) == 4
    assert_destroyed_once(admin, approved)
    for evidence in admin.retention.list_evidence():  # the first three were not redone
        if evidence.record_id in first:
            assert evidence == first[evidence.record_id]
    assert admin.retention.destroy(approved.appraisal_id).destroyed == ()  # idempotent


CHILD = textwrap.dedent("""
    import os, signal, sys
    from mizaic_processor import Actor, LocalKeyring, Processor

    conn, keyring, cid, appraisal_id, after = sys.argv[1:6]

    def progress(done, total):
        if done > int(after):  # called before each record: `after` are done
            os.kill(os.getpid(), signal.SIGKILL)

    processor = Processor.from_connection_string(
        conn, region="uksouth", keyring=LocalKeyring.from_file(keyring), retry_total=2)
    scope = processor.tenant(cid, actor=Actor.controller_admin("worker@trust.example"))
    scope.retention.destroy(appraisal_id, progress=progress)
""")


def test_destruction_killed_in_a_subprocess_resumes_exactly_once(
    azurite: AzuriteServer, keyring: LocalKeyring, tmp_path: Path, cid: str,
    raw: ContainerClient, admin: ControllerScope, svc: ControllerScope,
) -> None:
    refs = due_records(svc, 6, per_subject=3)
    approved = approved_appraisal(admin)
    keyring.save(tmp_path / "keyring.json")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, azurite.connection_string, str(tmp_path / "keyring.json"),
         cid, approved.appraisal_id, "2"],
        capture_output=True, timeout=60, check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()[-2000:]
    killed = admin.retention.list_evidence()
    assert [e.status for e in killed] == ["destroyed", "destroyed"]
    report = admin.retention.destroy(approved.appraisal_id)
    assert len(report.destroyed) == 4
    assert set(report.already_destroyed) == {e.record_id for e in killed}
    assert_destroyed_once(admin, approved)
    assert report.subjects_shredded >= 1
    for ref in refs:  # every subject had all its records destroyed: keys shredded
        assert not raw.get_blob_client(subject_key_blob(ref.record_id)).exists()


def test_record_left_destroying_between_evidence_and_deletion_is_completed_on_rerun(
    monkeypatch: pytest.MonkeyPatch, raw: ContainerClient, admin: ControllerScope,
    svc: ControllerScope,
) -> None:
    subject = patient()
    victim = svc.create_record(subject, category="adult", fields={"n": 0}, events=OLD,
                               content=DOCUMENT, content_type="application/pdf")
    others = due_records(svc, 2)
    approved = approved_appraisal(admin)
    victim_blob = admin._record_blob(victim.record_id)
    original = Container.delete

    def die_deleting_victim(self: Container, name: str, **kwargs: Any) -> bool:
        if name == victim_blob:
            raise CrashError  # the worker dies after writing evidence, before deleting
        return original(self, name, **kwargs)

    monkeypatch.setattr(Container, "delete", die_deleting_victim)
    with pytest.raises(CrashError):
        for _ in range(3):  # whichever position the victim has, it is reached
            admin.retention.destroy(approved.appraisal_id)
    monkeypatch.undo()
    (interrupted,) = [e for e in admin.retention.list_evidence() if e.status == "destroying"]
    assert interrupted.record_id == victim.record_id
    assert interrupted.content_sha256 == hashlib.sha256(DOCUMENT).hexdigest()
    assert admin.get_record(victim.record_id).fields == {"n": 0}  # half-way: still whole

    report = admin.retention.destroy(approved.appraisal_id)
    assert victim.record_id in report.destroyed
    assert_destroyed_once(admin, approved)
    done = next(e for e in admin.retention.list_evidence() if e.record_id == victim.record_id)
    assert done.started_at == interrupted.started_at and done.destroyed_at is not None
    assert not list(raw.list_blob_names(name_starts_with="content/" + victim.record_id[1:27]))
    assert not raw.get_blob_client(subject_key_blob(victim.record_id)).exists()
    assert len(others) == 2


def test_subject_is_shredded_when_destruction_resumes_after_the_record_was_deleted(
    monkeypatch: pytest.MonkeyPatch, raw: ContainerClient, admin: ControllerScope,
    svc: ControllerScope,
) -> None:
    subject = patient()
    ref = svc.create_record(subject, category="adult", fields={"n": 0}, events=OLD)
    approved = approved_appraisal(admin)
    original = ControllerDocs.replace

    def die_marking_evidence(self: ControllerDocs, name: str, *args: Any, **kw: Any) -> str:
        if name.startswith("evidence/"):
            raise CrashError  # record deleted; evidence not yet marked destroyed
        return original(self, name, *args, **kw)

    monkeypatch.setattr(ControllerDocs, "replace", die_marking_evidence)
    with pytest.raises(CrashError):
        admin.retention.destroy(approved.appraisal_id)
    monkeypatch.undo()
    assert not raw.get_blob_client(admin._record_blob(ref.record_id)).exists()
    admin.retention.destroy(approved.appraisal_id)
    assert_destroyed_once(admin, approved)
    assert not raw.get_blob_client(subject_key_blob(ref.record_id)).exists()
    assert not admin.subject_exists(subject)


def test_two_workers_on_disjoint_shards_destroy_every_record_once(
    azurite: AzuriteServer, keyring: LocalKeyring, cid: str, raw: ContainerClient,
    admin: ControllerScope, svc: ControllerScope,
) -> None:
    refs = due_records(svc, 12, per_subject=3)
    approved = approved_appraisal(admin)
    reports: dict[int, Any] = {}
    errors: list[BaseException] = []

    def worker(shard: int) -> None:
        processor = new_processor(azurite, keyring)  # a separate worker, own connection
        try:
            scope = processor.tenant(cid, actor=Actor.controller_admin(f"worker{shard}@trust"))
            reports[shard] = scope.retention.destroy(approved.appraisal_id, shard=shard,
                                                     shards=2)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            processor.close()

    threads = [threading.Thread(target=worker, args=(shard,)) for shard in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for shard in (0, 1):
        expected = {r.record_id for r in refs if _shard_of(r.record_id, 2) == shard}
        assert set(reports[shard].destroyed) == expected
        assert reports[shard].already_destroyed == ()
    assert_destroyed_once(admin, approved)
    for ref in refs:  # every subject lost all its records: every key was shredded
        assert not raw.get_blob_client(subject_key_blob(ref.record_id)).exists()


# -- crypto-shredding --------------------------------------------------------------------


def copy_aside(raw: ContainerClient, names: list[str]) -> dict[str, bytes]:
    """What a snapshot, a soft-deleted blob or a backup would keep: the raw bytes."""
    return {name: raw.download_blob(name).readall() for name in names}


def put_back(raw: ContainerClient, copies: dict[str, bytes]) -> None:
    for name, data in copies.items():
        raw.upload_blob(name, data, overwrite=True)


def shred(admin: ControllerScope, subject: SubjectId, how: str) -> None:
    if how == "erasure":
        instruction = admin.create_instruction("erasure", subject=subject)
        report = admin.erase_subject(subject, instruction_id=instruction.instruction_id)
        assert report.key_destroyed
    else:
        approved = approved_appraisal(admin)
        assert admin.retention.destroy(approved.appraisal_id).subjects_shredded == 1


@pytest.mark.parametrize("how", ["retention", "erasure"])
def test_ciphertext_copied_aside_cannot_be_decrypted_after_crypto_shredding(
    azurite: AzuriteServer, keyring: LocalKeyring, cid: str, raw: ContainerClient,
    admin: ControllerScope, svc: ControllerScope, how: str,
) -> None:
    """Why it cannot: a record's field and content keys are derived from the subject's key
    (with controller, subject, record and field bound in), and that key is random, stored
    only wrapped in ``subjects/<skid>``; the controller key wraps it but cannot re-derive
    it. Shredding deletes that blob (and the index entry and cached copies), so a restored
    record or content blob has no key: reading it fails as one opaque ``IntegrityError``
    (or ``NotFoundError`` once the index entry is gone), and no byte of plaintext comes back.
    A fresh process, with no key cache, fails the same way.
    """
    subject = NHSNumber(NHS)
    refs = [
        svc.create_record(subject, category="adult", fields={"procedure": FIELD_VALUE},
                          events=OLD, content=DOCUMENT, content_type="application/pdf"),
        svc.create_record(subject, category="adult", fields={"n": 1}, events=OLD),
    ]
    skid = refs[0].record_id[1:27]
    names = [n for n in raw.list_blob_names() if n.startswith((f"records/{skid}/",
                                                               f"content/{skid}/"))]
    assert len(names) == 3
    copies = copy_aside(raw, names)
    assert svc.get_record(refs[0].record_id).fields == {"procedure": FIELD_VALUE}

    shred(admin, subject, how)
    assert not raw.get_blob_client(f"subjects/{skid}").exists()
    put_back(raw, copies)  # the surviving copies come back under their own names

    fresh = new_processor(azurite, keyring)
    try:
        for scope in (svc, admin, fresh.tenant(cid, actor=SERVICE),
                      fresh.tenant(cid, actor=ADMIN)):
            for ref in refs:
                with pytest.raises(IntegrityError):
                    scope.get_record(ref.record_id)
            with pytest.raises(IntegrityError):
                scope.open_content(refs[0].record_id)
            assert list(scope.list_records(subject)) == []
            assert not scope.subject_exists(subject)
    finally:
        fresh.close()


def test_wrapped_subject_key_copied_aside_is_useless_once_the_controller_key_is_retired(
    azurite: AzuriteServer, keyring: LocalKeyring,
) -> None:
    """A snapshot or backup of the container can hold the wrapped subject key as well as the
    ciphertext. Such a copy unwraps only under the controller-key version that wrapped it:
    until that version is destroyed, a restored copy still decrypts (the residual window
    every ErasureReport states). Rotating the controller key and retiring the old version
    closes it: the restored key names a version that no longer exists, so reading fails
    with the one opaque IntegrityError, in this process and in a fresh one.
    """
    now = [NOW]
    processor = Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=keyring, retry_total=2,
        clock=lambda: now[0],
    )
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    try:
        cid = "t" + uuid.uuid4().hex[:10]
        processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
        admin = processor.tenant(cid, actor=ADMIN)
        raw_c = service.get_container_client(f"mzc-{cid}")
        subject = NHSNumber(NHS)
        ref = admin.create_record(subject, category="adult", fields={"procedure": FIELD_VALUE},
                                  events=OLD)
        copies = copy_aside(raw_c, [admin._record_blob(ref.record_id),
                                    subject_key_blob(ref.record_id)])
        report = admin.erase_subject(
            subject, instruction_id=admin.create_instruction("erasure", subject=subject)
            .instruction_id)
        assert "rotate the controller key" in report.residual_copies

        put_back(raw_c, copies)  # the residual window: the old controller key still exists
        assert admin.get_record(ref.record_id).fields == {"procedure": FIELD_VALUE}
        for name in copies:
            raw_c.delete_blob(name)

        admin.keys.rotate_controller_key()
        # after any process's key cache can have expired
        now[0] = NOW + dt.timedelta(seconds=MAX_KEY_CACHE_TTL + 1)
        assert admin.keys.retire_old_controller_keys() == [1]
        put_back(raw_c, copies)
        fresh = new_processor(azurite, keyring)
        try:
            for scope in (admin, fresh.tenant(cid, actor=ADMIN)):
                with pytest.raises(IntegrityError):
                    scope.get_record(ref.record_id)
        finally:
            fresh.close()
    finally:
        processor.close()
        service.close()


# -- evidence ----------------------------------------------------------------------------


def test_destruction_evidence_says_what_when_and_on_whose_authority_without_the_patient(
    raw: ContainerClient, admin: ControllerScope, svc: ControllerScope
) -> None:
    subject = NHSNumber(NHS)
    ref = svc.create_record(subject, category="adult", fields={"procedure": FIELD_VALUE},
                            events=OLD, content=DOCUMENT, content_type="application/pdf")
    approved = approved_appraisal(admin)
    admin.retention.destroy(approved.appraisal_id)
    (evidence,) = admin.retention.list_evidence()
    assert evidence.model_dump() == {
        "record_id": ref.record_id,
        "category": "adult",
        "status": "destroyed",
        "reason": "retention",
        "instruction_id": approved.approval_instruction_id,
        "instruction_version": 1,
        "appraisal_id": approved.appraisal_id,
        "approved_by": ADMIN.id,
        "destroyed_by": ADMIN.id,
        "started_at": NOW,
        "destroyed_at": NOW,
        "content_sha256": hashlib.sha256(DOCUMENT).hexdigest(),
        "content_length": len(DOCUMENT),
    }
    stub = raw.download_blob(f"evidence/{ref.record_id}").readall()
    for secret in (NHS.encode(), b"943 476 5919", FIELD_VALUE.encode(), b"procedure"):
        assert secret not in stub
    events = [e for e in admin.audit.query(record_id=ref.record_id)
              if e.operation == "record.destroy" and e.outcome == "success"]
    assert [e.policy for e in events] == [approved.approval_instruction_id]
