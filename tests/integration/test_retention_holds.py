"""Holds against a real Azurite: a held record (legal, public inquiry, open access request;
held by subject, by record, by category, or the whole controller) survives appraisal,
approval, destruction and every direct delete, until every hold on it is released."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    Actor,
    ControllerScope,
    HoldError,
    HospitalNumber,
    InvalidInputError,
    LocalKeyring,
    NHSNumber,
    NotFoundError,
    Processor,
    RecordRef,
    SubjectId,
)
from mizaic_processor._core.retention import NHS_RECORDS_CODE_2021
from mizaic_processor._ledger import Hold, HoldKind
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("records.manager@trust.example")
NOW = dt.datetime(2031, 2, 1, 8, 0, tzinfo=dt.UTC)
LONG_AGO = {"last_treatment": dt.date(2001, 1, 1), "diagnosis": dt.date(1990, 1, 1)}
AS_OF = dt.date(2030, 12, 31)


def nhs_number(seed: int) -> NHSNumber:
    """A valid (Modulus 11) NHS number made from ``seed``."""
    while True:
        digits = [int(c) for c in f"{seed % 10**9:09d}"]
        check = 11 - sum(d * w for d, w in zip(digits, range(10, 1, -1), strict=True)) % 11
        if check != 10:
            return NHSNumber("".join(map(str, digits)) + str(check % 11))
        seed += 1


@pytest.fixture
def proc(azurite: AzuriteServer) -> Iterator[Processor]:
    processor = Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
        retry_total=2, clock=lambda: NOW,
    )
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


@dataclass
class Store:
    held_subject: SubjectId
    held: RecordRef  # the record the hold is about
    free_subject: SubjectId
    free: RecordRef  # due and unheld (held too under a whole-controller hold)


def populate(svc: ControllerScope, held_category: str) -> Store:
    held_subject = nhs_number(uuid.uuid4().int)
    free_subject = HospitalNumber("H" + uuid.uuid4().hex[:10].upper())
    held = svc.create_record(held_subject, category=held_category, fields={"n": 1},
                             events=LONG_AGO)
    free = svc.create_record(free_subject, category="adult", fields={"n": 2}, events=LONG_AGO)
    return Store(held_subject, held, free_subject, free)


CASES: list[tuple[HoldKind, str]] = [
    ("legal", "subject"),
    ("legal", "record"),
    ("inquiry", "category"),
    ("inquiry", "whole_controller"),
    ("access_request", "subject"),
    ("access_request", "record"),
]


def place(admin: ControllerScope, kind: HoldKind, scope: str, store: Store) -> Hold:
    reason = f"{kind} hold, case 2031/{uuid.uuid4().hex[:6]}"
    if scope == "subject":
        return admin.retention.place_hold(kind, reason=reason, subject=store.held_subject)
    if scope == "record":
        return admin.retention.place_hold(kind, reason=reason, record_ids=[store.held.record_id])
    if scope == "category":
        return admin.retention.place_hold(kind, reason=reason, category="oncology")
    return admin.retention.place_hold(kind, reason=reason, whole_controller=True)


@pytest.mark.parametrize(("kind", "scope"), CASES, ids=[f"{k}-by-{s}" for k, s in CASES])
def test_held_record_survives_appraisal_approval_destruction_and_direct_delete(
    admin: ControllerScope, svc: ControllerScope, kind: HoldKind, scope: str
) -> None:
    store = populate(svc, held_category="oncology" if scope == "category" else "adult")
    hold = place(admin, kind, scope, store)
    assert (hold.kind, hold.placed_by, hold.placed_at, hold.active) == (kind, ADMIN.id, NOW, True)
    whole = scope == "whole_controller"

    # Appraisal lists the held record apart, with the hold that keeps it.
    appraisal = admin.retention.appraise(AS_OF)
    held_items = {i.record_id: i.hold_ids for i in appraisal.held}
    assert held_items[store.held.record_id] == (hold.hold_id,)
    assert store.held.record_id not in {i.record_id for i in appraisal.due}
    assert (store.free.record_id in held_items) is whole

    # It cannot be approved; approving the appraisal leaves it out.
    with pytest.raises(InvalidInputError):
        admin.retention.approve(appraisal.appraisal_id, record_ids=[store.held.record_id])
    if whole:  # nothing is due: there is nothing to approve
        with pytest.raises(InvalidInputError):
            admin.retention.approve(appraisal.appraisal_id)
    else:
        approved = admin.retention.approve(appraisal.appraisal_id)
        assert store.held.record_id not in (approved.approved_record_ids or ())
    report = admin.retention.destroy(appraisal.appraisal_id)
    assert store.held.record_id not in report.destroyed
    assert svc.get_record(store.held.record_id).fields == {"n": 1}
    assert report.destroyed == (() if whole else (store.free.record_id,))

    # Every direct path refuses too, and changes nothing.
    deletion = admin.create_instruction("deletion", record_ids=[store.held.record_id])
    with pytest.raises(HoldError):
        admin.delete_record(store.held.record_id, instruction_id=deletion.instruction_id)
    erasure = admin.create_instruction("erasure", subject=store.held_subject)
    with pytest.raises(HoldError):
        admin.erase_subject(store.held_subject, instruction_id=erasure.instruction_id)
    assert svc.get_record(store.held.record_id).fields == {"n": 1}
    assert svc.subject_exists(store.held_subject)
    assert store.held.record_id not in {e.record_id for e in admin.retention.list_evidence()}

    # Released (who, when, why recorded), the record can be destroyed.
    released = admin.retention.release_hold(hold.hold_id, reason="case closed")
    assert (released.released_by, released.released_at, released.active) == (
        ADMIN.id, NOW, False)
    assert admin.retention.list_holds() == []
    assert [h.hold_id for h in admin.retention.list_holds(active_only=False)] == [hold.hold_id]
    evidence = admin.delete_record(store.held.record_id, instruction_id=deletion.instruction_id)
    assert (evidence.status, evidence.reason) == ("destroyed", "deletion")
    with pytest.raises(NotFoundError):
        svc.get_record(store.held.record_id)


def test_a_record_stays_held_until_every_hold_on_it_is_released(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    store = populate(svc, held_category="adult")
    legal = admin.retention.place_hold("legal", reason="claim", subject=store.held_subject)
    sar = admin.retention.place_hold("access_request", reason="SAR received",
                                     record_ids=[store.held.record_id])
    appraisal = admin.retention.appraise(AS_OF)
    (item,) = [i for i in appraisal.held if i.record_id == store.held.record_id]
    assert set(item.hold_ids) == {legal.hold_id, sar.hold_id}
    deletion = admin.create_instruction("deletion", record_ids=[store.held.record_id])
    admin.retention.release_hold(legal.hold_id, reason="claim settled")
    with pytest.raises(HoldError):
        admin.delete_record(store.held.record_id, instruction_id=deletion.instruction_id)
    admin.retention.release_hold(sar.hold_id, reason="SAR answered by the controller")
    admin.delete_record(store.held.record_id, instruction_id=deletion.instruction_id)


def test_hold_placed_after_approval_stops_the_destruction_of_that_record(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    store = populate(svc, held_category="adult")
    appraisal = admin.retention.appraise(AS_OF)
    admin.retention.approve(appraisal.appraisal_id)
    hold = admin.retention.place_hold("inquiry", reason="Inquiry notice 12",
                                      record_ids=[store.held.record_id])
    report = admin.retention.destroy(appraisal.appraisal_id)
    assert report.held == (store.held.record_id,)
    assert report.destroyed == (store.free.record_id,)
    assert svc.get_record(store.held.record_id).fields == {"n": 1}
    # Released, the same approved appraisal finishes the job.
    admin.retention.release_hold(hold.hold_id, reason="Inquiry released the material")
    again = admin.retention.destroy(appraisal.appraisal_id)
    assert again.destroyed == (store.held.record_id,)
    assert again.already_destroyed == (store.free.record_id,)


def test_hold_beats_a_standing_destroy_instruction(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    standing = NHS_RECORDS_CODE_2021["adult"].model_copy(update={"on_expiry": "destroy"})
    admin.retention.set_instruction("adult", standing)
    store = populate(svc, held_category="adult")
    admin.retention.place_hold("access_request", reason="SAR", subject=store.held_subject)
    appraisal = admin.retention.appraise(AS_OF)
    assert [i.standing_destroy for i in appraisal.held] == [True]
    report = admin.retention.destroy(appraisal.appraisal_id)  # no approval needed...
    assert report.destroyed == (store.free.record_id,)
    assert store.held.record_id not in report.destroyed  # ...but the hold wins
    assert svc.get_record(store.held.record_id).fields == {"n": 1}


def test_hold_needs_exactly_one_scope_and_a_reason(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    store = populate(svc, held_category="adult")
    with pytest.raises(InvalidInputError):
        admin.retention.place_hold("legal", reason="x")
    with pytest.raises(InvalidInputError):
        admin.retention.place_hold("legal", reason="x", subject=store.held_subject,
                                   category="adult")
    with pytest.raises(InvalidInputError):
        admin.retention.place_hold("legal", reason="", whole_controller=True)
    with pytest.raises(InvalidInputError):
        admin.retention.place_hold("litigation", reason="x",  # type: ignore[arg-type]
                                   whole_controller=True)
    with pytest.raises(NotFoundError):
        admin.retention.place_hold("legal", reason="x", subject=nhs_number(123456789))
    assert admin.retention.list_holds(active_only=False) == []


def test_hold_register_stores_no_patient_identifier_or_reason_in_plaintext(
    azurite: AzuriteServer, admin: ControllerScope, svc: ControllerScope
) -> None:
    store = populate(svc, held_category="adult")
    admin.retention.place_hold("legal", reason="Claim by the family of the patient",
                               subject=store.held_subject)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(f"mzc-{admin.controller_id}")
        names = list(container.list_blob_names(name_starts_with="holds/"))
        assert len(names) == 1
        for name in names:
            data = container.download_blob(name).readall()
            assert store.held_subject.value.encode() not in data
            assert b"Claim by the family" not in data


def test_open_access_request_holds_its_subject_through_appraisal_and_destruction(
    proc: Processor, cid: str, admin: ControllerScope, svc: ControllerScope
) -> None:
    """The hold an open subject access request places at intake (altering or erasing data
    to frustrate one is an offence, DPA 2018 s.173) keeps the subject's records out of
    every destruction path until the controller closes the request."""
    subject = NHSNumber("943 476 5919")
    ref = svc.create_record(subject, category="adult", fields={"n": 1}, events=LONG_AGO)
    receipt = proc.requests.receive(
        kind="access", controller=cid, subject="943 476 5919",
        contact={"email": "requester@example.org"}, received_at=NOW, channel="email",
        actor=OPERATOR,
    )
    (hold,) = admin.retention.list_holds()
    assert (hold.kind, hold.request_id) == ("access_request", receipt.request_id)

    appraisal = admin.retention.appraise(AS_OF)
    assert [(i.record_id, i.hold_ids) for i in appraisal.held] == [
        (ref.record_id, (hold.hold_id,))
    ]
    with pytest.raises(InvalidInputError):  # its only record is held: nothing to approve
        admin.retention.approve(appraisal.appraisal_id)
    assert admin.retention.destroy(appraisal.appraisal_id).destroyed == ()
    deletion = admin.create_instruction("deletion", record_ids=[ref.record_id])
    with pytest.raises(HoldError):
        admin.delete_record(ref.record_id, instruction_id=deletion.instruction_id)
    assert svc.get_record(ref.record_id).fields == {"n": 1}

    admin.requests.acknowledge(receipt.request_id)
    admin.requests.refuse(receipt.request_id, reason="manifestly unfounded")  # closed
    assert admin.retention.list_holds() == []
    admin.delete_record(ref.record_id, instruction_id=deletion.instruction_id)
    with pytest.raises(NotFoundError):
        svc.get_record(ref.record_id)
