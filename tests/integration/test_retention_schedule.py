"""Retention instructions and due dates against a real Azurite: a worked example of every row
of the NHS Records Management Code preset, taken end to end through records with events;
the later of two triggers; reuse restarting the clock; records without an instruction;
versioned instructions, the Code's minimum and its override; who may change instructions;
and a due-record query whose cost does not grow with the records that are not due."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest
from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    ControllerScope,
    HospitalNumber,
    InvalidInputError,
    LocalKeyring,
    NotFoundError,
    Processor,
)
from mizaic_processor._core.retention import NHS_RECORDS_CODE_2021, RetentionRule
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("records.manager@trust.example")
NOW = dt.datetime(2024, 6, 1, 9, 30, tzinfo=dt.UTC)
D = dt.date


def new_processor(azurite: AzuriteServer, keyring: LocalKeyring | None = None) -> Processor:
    return Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=keyring or LocalKeyring.generate(),
        retry_total=2, clock=lambda: NOW,
    )


def new_controller(processor: Processor) -> str:
    cid = "t" + uuid.uuid4().hex[:10]
    processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
    return cid


def patient() -> HospitalNumber:
    return HospitalNumber("H" + uuid.uuid4().hex[:12].upper())


def record_tags(azurite: AzuriteServer, scope: ControllerScope, record_id: str) -> dict[str, str]:
    """The record blob's index tags, read with the raw SDK (what storage sees)."""
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        blob = service.get_blob_client(f"mzc-{scope.controller_id}",
                                       scope._record_blob(record_id))
        return dict(blob.get_blob_tags())


def due_ids(scope: ControllerScope, as_of: dt.date) -> set[str]:
    return {item.record_id for item in scope.retention.appraise(as_of).due}


@pytest.fixture
def keyring() -> LocalKeyring:
    return LocalKeyring.generate()


@pytest.fixture
def proc(azurite: AzuriteServer, keyring: LocalKeyring) -> Iterator[Processor]:
    processor = new_processor(azurite, keyring)
    try:
        yield processor
    finally:
        processor.close()


@pytest.fixture
def cid(proc: Processor) -> str:
    return new_controller(proc)


@pytest.fixture
def admin(proc: Processor, cid: str) -> ControllerScope:
    return proc.tenant(cid, actor=ADMIN)


@pytest.fixture
def svc(proc: Processor, cid: str) -> ControllerScope:
    return proc.tenant(cid, actor=SERVICE)


# -- worked examples of every preset row -------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A record of ``category`` with ``events``; due on ``due`` (None: never due)."""

    name: str
    category: str
    events: dict[str, dt.date] = field(hash=False)
    due: dt.date | None
    storage_status: str = "dated"


EXAMPLES = [
    # adult: 8 years after end of treatment / last seen, or death: the latest.
    Example("adult-8y-after-last-treatment", "adult", {"last_treatment": D(2012, 5, 17)},
            D(2020, 5, 17)),
    Example("adult-death-later-than-treatment", "adult",
            {"last_treatment": D(2012, 5, 17), "date_of_death": D(2015, 3, 1)}, D(2023, 3, 1)),
    # adult social care: 8 years after end of support / last seen.
    Example("adult-social-care-8y-after-end-of-support", "adult_social_care",
            {"last_seen": D(2013, 1, 1), "end_of_support": D(2014, 9, 30)}, D(2022, 9, 30)),
    # child: until the 25th birthday, or the 26th if 17 at the end of treatment.
    Example("child-16-at-end-of-treatment-25th-birthday", "child",
            {"date_of_birth": D(2000, 3, 10), "end_of_treatment": D(2016, 6, 1)},
            D(2025, 3, 10)),
    Example("child-day-before-17th-birthday-25th-birthday", "child",
            {"date_of_birth": D(2000, 3, 10), "end_of_treatment": D(2017, 3, 9)},
            D(2025, 3, 10)),
    Example("child-on-17th-birthday-26th-birthday", "child",
            {"date_of_birth": D(2000, 3, 10), "end_of_treatment": D(2017, 3, 10)},
            D(2026, 3, 10)),
    Example("child-17-at-last-treatment-26th-birthday", "child",
            {"date_of_birth": D(2000, 3, 10), "last_treatment": D(2017, 11, 2)},
            D(2026, 3, 10)),
    Example("child-born-29-february-25th-birthday-28-february", "child",
            {"date_of_birth": D(2004, 2, 29), "end_of_treatment": D(2010, 1, 5)},
            D(2029, 2, 28)),
    Example("child-died-8y-after-death-when-later", "child",
            {"date_of_birth": D(2000, 3, 10), "end_of_treatment": D(2016, 6, 1),
             "date_of_death": D(2019, 2, 1)}, D(2027, 2, 1)),
    Example("child-died-25th-birthday-when-later", "child",
            {"date_of_birth": D(2005, 1, 1), "end_of_treatment": D(2010, 1, 1),
             "date_of_death": D(2012, 6, 15)}, D(2030, 1, 1)),
    Example("child-without-date-of-birth-never-due", "child",
            {"end_of_treatment": D(1990, 1, 1)}, None, "await"),
    # maternity: 25 years after the end of care (birth of the last child).
    Example("maternity-25y-after-end-of-care", "maternity", {"end_of_care": D(2001, 7, 4)},
            D(2026, 7, 4)),
    # mental health: 20 years after end of treatment, or 10 after death: the later.
    Example("mental-health-20y-after-treatment", "mental_health",
            {"end_of_treatment": D(2000, 1, 31)}, D(2020, 1, 31)),
    Example("mental-health-10y-after-death-when-later", "mental_health",
            {"end_of_treatment": D(2000, 1, 31), "date_of_death": D(2015, 6, 1)},
            D(2025, 6, 1)),
    # GP: life of the patient, then 10 years after death.
    Example("gp-alive-never-due", "gp", {"last_seen": D(1980, 1, 1)}, None, "await"),
    Example("gp-10y-after-death", "gp", {"last_seen": D(2012, 1, 1),
                                          "date_of_death": D(2012, 8, 20)}, D(2022, 8, 20)),
    # oncology: 30 years from diagnosis, or 8 years after death: the later.
    Example("oncology-30y-after-diagnosis", "oncology", {"diagnosis": D(1995, 4, 1)},
            D(2025, 4, 1)),
    Example("oncology-8y-after-death-when-later", "oncology",
            {"diagnosis": D(1995, 4, 1), "date_of_death": D(2020, 1, 1)}, D(2028, 1, 1)),
    # public inquiry material: never due (released only by the inquiry).
    Example("inquiry-never-due", "inquiry",
            {"last_treatment": D(1970, 1, 1), "date_of_death": D(1971, 1, 1)}, None, "indef"),
]


@dataclass
class Populated:
    processor: Processor
    admin: ControllerScope
    record_ids: dict[str, str]


def populate(azurite: AzuriteServer) -> Populated:
    processor = new_processor(azurite)
    cid = new_controller(processor)
    admin = processor.tenant(cid, actor=ADMIN)
    admin.retention.adopt_preset()
    svc = processor.tenant(cid, actor=SERVICE)
    record_ids = {
        ex.name: svc.create_record(
            patient(), category=ex.category, fields={"note": ex.name}, events=ex.events
        ).record_id
        for ex in EXAMPLES
    }
    return Populated(processor, admin, record_ids)


@pytest.fixture(scope="module")
def preset_store(azurite: AzuriteServer) -> Iterator[Populated]:
    populated = populate(azurite)
    try:
        yield populated
    finally:
        populated.processor.close()


def test_preset_covers_every_row_of_the_code() -> None:
    assert set(NHS_RECORDS_CODE_2021) == {
        "adult", "adult_social_care", "child", "maternity", "mental_health", "gp",
        "oncology", "inquiry",
    }
    assert {ex.category for ex in EXAMPLES} == set(NHS_RECORDS_CODE_2021)


@pytest.mark.parametrize("example", EXAMPLES, ids=[ex.name for ex in EXAMPLES])
def test_preset_row_worked_example(
    azurite: AzuriteServer, preset_store: Populated, example: Example
) -> None:
    admin = preset_store.admin
    record_id = preset_store.record_ids[example.name]
    tags = record_tags(azurite, admin, record_id)
    # Storage sees the category, the coarse month and the instruction version only.
    assert set(tags) == {"cat", "due", "rs", "iv"}
    assert tags["cat"] == example.category
    assert tags["rs"] == example.storage_status
    assert tags["iv"] == "000001"
    if example.due is None:
        assert tags["due"] == "9999-12"
        appraisal = admin.retention.appraise(D(2200, 1, 1))
        listed = {i.record_id for i in appraisal.due + appraisal.held + appraisal.no_instruction}
        assert record_id not in listed
        return
    assert tags["due"] == example.due.strftime("%Y-%m")
    before = admin.retention.appraise(example.due - dt.timedelta(days=1))
    assert record_id not in {i.record_id for i in before.due}
    on_the_day = admin.retention.appraise(example.due)
    (item,) = [i for i in on_the_day.due if i.record_id == record_id]
    assert item.category == example.category
    assert item.instruction_version == 1
    assert item.retain_until == example.due
    assert not item.standing_destroy


def test_every_preset_row_end_to_end_appraise_approve_destroy(azurite: AzuriteServer) -> None:
    populated = populate(azurite)
    try:
        admin = populated.admin
        appraisal = admin.retention.appraise(D(2100, 1, 1))
        dated = {populated.record_ids[ex.name]: ex for ex in EXAMPLES if ex.due is not None}
        assert {i.record_id: i.retain_until for i in appraisal.due} == {
            rid: ex.due for rid, ex in dated.items()
        }
        admin.retention.approve(appraisal.appraisal_id, note="annual appraisal")
        report = admin.retention.destroy(appraisal.appraisal_id)
        assert set(report.destroyed) == set(dated)
        evidence = {e.record_id: e for e in admin.retention.list_evidence()}
        assert set(evidence) == set(dated)
        for record_id, ex in dated.items():
            assert evidence[record_id].category == ex.category
            assert evidence[record_id].instruction_version == 1
            assert evidence[record_id].appraisal_id == appraisal.appraisal_id
            assert evidence[record_id].status == "destroyed"
            with pytest.raises(NotFoundError):
                admin.get_record(record_id)
        for ex in EXAMPLES:
            if ex.due is None:  # never due: kept
                assert admin.get_record(populated.record_ids[ex.name]).fields == {
                    "note": ex.name
                }
    finally:
        populated.processor.close()


# -- triggers and reuse ------------------------------------------------------------------


def test_the_later_of_two_triggers_sets_the_due_date(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    admin.retention.adopt_preset()
    ref = svc.create_record(
        patient(), category="adult",
        events={"last_treatment": D(2010, 1, 1), "last_seen": D(2014, 2, 3)},
    )
    assert ref.record_id not in due_ids(admin, D(2018, 1, 1))  # 8y after the earlier one
    assert ref.record_id not in due_ids(admin, D(2022, 2, 2))
    assert ref.record_id in due_ids(admin, D(2022, 2, 3))  # 8y after the later one


def test_reuse_event_restarts_the_clock_and_the_record_leaves_the_appraisal(
    azurite: AzuriteServer, admin: ControllerScope, svc: ControllerScope
) -> None:
    admin.retention.adopt_preset()
    ref = svc.create_record(patient(), category="adult", events={"last_treatment": D(2010, 1, 1)})
    kept = svc.create_record(patient(), category="adult", events={"last_treatment": D(2010, 1, 1)})
    appraisal = admin.retention.appraise(D(2019, 1, 1))
    assert {ref.record_id, kept.record_id} <= {i.record_id for i in appraisal.due}
    admin.retention.approve(appraisal.appraisal_id)

    # The patient comes back: a newer treatment, recorded by the service.
    svc.update_record(ref.record_id, etag=ref.etag, events={"last_treatment": D(2018, 9, 1)})
    assert record_tags(azurite, admin, ref.record_id)["due"] == "2026-09"
    assert ref.record_id not in due_ids(admin, D(2019, 1, 1))

    # The appraisal approved before the reuse no longer destroys it.
    report = admin.retention.destroy(appraisal.appraisal_id)
    assert report.no_longer_due == (ref.record_id,)
    assert report.destroyed == (kept.record_id,)
    assert svc.get_record(ref.record_id).events["last_treatment"] == D(2018, 9, 1)
    assert ref.record_id in due_ids(admin, D(2026, 9, 1))


def test_records_without_an_instruction_are_reported_and_kept(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    admin.retention.adopt_preset()
    orphan = svc.create_record(
        patient(), category="research_cohort", events={"last_treatment": D(1990, 1, 1)}
    )
    dated = svc.create_record(patient(), category="adult", events={"last_treatment": D(1990, 1, 1)})
    appraisal = admin.retention.appraise(D(2030, 1, 1))
    assert [(i.record_id, i.category, i.instruction_version) for i in appraisal.no_instruction] == [
        (orphan.record_id, "research_cohort", None)
    ]
    assert orphan.record_id not in {i.record_id for i in appraisal.due}
    with pytest.raises(InvalidInputError):
        admin.retention.approve(appraisal.appraisal_id, record_ids=[orphan.record_id])
    admin.retention.approve(appraisal.appraisal_id)
    report = admin.retention.destroy(appraisal.appraisal_id)
    assert report.destroyed == (dated.record_id,)
    assert svc.get_record(orphan.record_id).category == "research_cohort"
    assert [e.record_id for e in admin.retention.list_evidence()] == [dated.record_id]


# -- instructions: versions, minimum, override, recompute --------------------------------


def test_instruction_history_keeps_every_version(admin: ControllerScope) -> None:
    first = admin.retention.set_instruction("adult", RetentionRule.after("P8Y", "last_treatment"),
                                            override_reason="policy before 2024 review")
    longer = RetentionRule.model_validate({"clauses": [{
        "kind": "after_events", "period": "P10Y",
        "events": ["end_of_treatment", "last_treatment", "last_seen", "date_of_death"],
    }]})
    second = admin.retention.set_instruction("adult", longer)
    history = admin.retention.list_instructions("adult")
    assert [(i.version, i.rule) for i in history] == [(1, first.rule), (2, second.rule)]
    assert all(i.issued_by == ADMIN.id and i.issued_at == NOW for i in history)
    assert history[0].below_minimum and not history[1].below_minimum
    assert admin.retention.get_instruction("adult").version == 2
    assert {(i.category, i.version) for i in admin.retention.list_instructions()} == {
        ("adult", 1), ("adult", 2)
    }


def test_instruction_shorter_than_the_code_minimum_needs_an_override_and_is_flagged(
    admin: ControllerScope,
) -> None:
    admin.retention.adopt_preset()
    short = RetentionRule.after("P5Y", "last_treatment")
    with pytest.raises(InvalidInputError, match="minimum"):
        admin.retention.set_instruction("adult", short)
    assert [i.version for i in admin.retention.list_instructions("adult")] == [1]
    flagged = admin.retention.set_instruction(
        "adult", short, override_reason="Board decision 2024/17: duplicates of scanned notes"
    )
    assert (flagged.version, flagged.below_minimum) == (2, True)
    stored = admin.retention.list_instructions("adult")[-1]
    assert stored.below_minimum
    assert stored.override_reason == "Board decision 2024/17: duplicates of scanned notes"
    # A category the Code does not cover has no minimum: accepted, not flagged.
    other = admin.retention.set_instruction("staff_rota", RetentionRule.after("P1Y", "last_seen"))
    assert not other.below_minimum
    # The whole child row (birthdays) cannot be replaced by a flat 8 years silently.
    with pytest.raises(InvalidInputError):
        admin.retention.set_instruction("child", RetentionRule.after("P8Y", "end_of_treatment"))


def test_recompute_moves_existing_records_to_the_new_instruction(
    azurite: AzuriteServer, admin: ControllerScope, svc: ControllerScope
) -> None:
    admin.retention.adopt_preset()
    refs = [
        svc.create_record(patient(), category="adult", events={"last_treatment": D(2016, 1, 1)})
        for _ in range(3)
    ]
    assert not {r.record_id for r in refs} & due_ids(admin, D(2022, 1, 1))
    admin.retention.set_instruction(
        "adult", RetentionRule.after("P5Y", "last_treatment"), override_reason="trust policy"
    )
    # Their stored due month still says 2024: not found by the due query until recomputed.
    assert not {r.record_id for r in refs} & due_ids(admin, D(2022, 1, 1))
    seen: list[tuple[int, int | None]] = []
    assert admin.retention.recompute_due_dates(
        "adult", progress=lambda d, t: seen.append((d, t))
    ) == 3
    assert seen[-1] == (3, 3)
    assert {record_tags(azurite, admin, r.record_id)["iv"] for r in refs} == {"000002"}
    assert {r.record_id for r in refs} <= due_ids(admin, D(2021, 1, 1))
    assert admin.retention.recompute_due_dates("adult") == 0  # resumable: nothing left
    # it decrypts each record's dated events: each pass is in the trail, once
    passes = [e.entity for e in admin.audit.query(actor=admin.actor.id)
              if e.operation == "retention.recompute"]
    assert passes == ["retention:adult", "retention:adult"]


# -- who may change retention ------------------------------------------------------------


@pytest.mark.parametrize(
    "actor", [SERVICE, Actor.processor_operator("support@mizaic.example")],
    ids=["service", "processor_operator"],
)
def test_only_a_controller_admin_changes_instructions_holds_or_approvals(
    proc: Processor, cid: str, admin: ControllerScope, actor: Actor
) -> None:
    admin.retention.adopt_preset()
    svc = proc.tenant(cid, actor=SERVICE)
    subject = patient()
    ref = svc.create_record(subject, category="adult", events={"last_treatment": D(2000, 1, 1)})
    hold = admin.retention.place_hold("legal", reason="claim", record_ids=[ref.record_id])
    appraisal = admin.retention.appraise(D(2020, 1, 1))
    other = proc.tenant(cid, actor=actor)
    rule = RetentionRule.after("P30Y", "last_treatment")
    attempts: dict[str, Callable[[], object]] = {
        "set_instruction": lambda: other.retention.set_instruction("adult", rule),
        "adopt_preset": lambda: other.retention.adopt_preset(),
        "recompute": lambda: other.retention.recompute_due_dates("adult"),
        "place_hold": lambda: other.retention.place_hold("legal", reason="x", subject=subject),
        "release_hold": lambda: other.retention.release_hold(hold.hold_id, reason="x"),
        "list_holds": lambda: other.retention.list_holds(),
        "appraise": lambda: other.retention.appraise(D(2020, 1, 1)),
        "approve": lambda: other.retention.approve(appraisal.appraisal_id),
        "destroy": lambda: other.retention.destroy(appraisal.appraisal_id),
        "list_evidence": lambda: other.retention.list_evidence(),
    }
    allowed = []
    for name, attempt in attempts.items():
        try:
            attempt()
        except AccessDeniedError:
            continue
        allowed.append(name)
    assert allowed == []
    assert [i.version for i in admin.retention.list_instructions("adult")] == [1]
    assert [h.hold_id for h in admin.retention.list_holds()] == [hold.hold_id]
    assert admin.retention.get_appraisal(appraisal.appraisal_id).approved_at is None


# -- cost of finding due records ---------------------------------------------------------


def test_finding_due_records_costs_the_same_with_ten_times_more_not_due(
    azurite: AzuriteServer, keyring: LocalKeyring, cid: str, admin: ControllerScope,
    svc: ControllerScope,
) -> None:
    admin.retention.adopt_preset()
    as_of = D(2024, 1, 1)
    due = [
        svc.create_record(patient(), category="adult", events={"last_treatment": D(2010, 3, 1)})
        for _ in range(5)
    ]
    one_patient = patient()  # not-due records are cheap to add for one patient

    def add_not_due(count: int) -> None:
        def one(n: int) -> None:
            svc.create_record(one_patient, category="adult",
                              events={"last_treatment": D(2020, 1, 1) + dt.timedelta(days=n)})

        with ThreadPoolExecutor(4) as pool:
            list(pool.map(one, range(count)))

    add_not_due(10)
    # A separate processor measures, warmed up once so keys and the audit segment are loaded.
    measuring = new_processor(azurite, keyring)
    try:
        scope = measuring.tenant(cid, actor=ADMIN)
        scope.retention.appraise(as_of)

        def storage_calls() -> tuple[int, int | None]:
            examined: list[int | None] = [0]
            before = measuring.request_count
            appraisal = scope.retention.appraise(
                as_of, progress=lambda done, total: examined.append(total)
            )
            assert {i.record_id for i in appraisal.due} == {r.record_id for r in due}
            return measuring.request_count - before, examined[-1]

        small = storage_calls()
        add_not_due(90)  # ten times as many records that are not due
        large = storage_calls()
    finally:
        measuring.close()
    assert large == small
    calls, examined = small
    assert examined == len(due)  # only the due records were candidates
    assert calls < 3 * len(due) + 10  # a few calls per due record, plus a constant



def test_records_stored_before_any_instruction_are_found_and_retagged_by_appraisal(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    refs = [
        svc.create_record(patient(), category="adult", events={"last_treatment": D(2012, 1, 1)})
        for _ in range(3)
    ]  # stored while the controller had no instruction: tagged "no instruction"
    admin.retention.adopt_preset()

    def examined(as_of: dt.date) -> tuple[set[str], int | None]:
        totals: list[int | None] = [0]
        appraisal = admin.retention.appraise(as_of, progress=lambda d, t: totals.append(t))
        return {i.record_id for i in appraisal.due}, totals[-1]

    ids = {r.record_id for r in refs}
    # Found all the same (judged under the instruction now in force), and re-tagged as
    # they are read...
    assert examined(D(2020, 1, 1)) == (ids, 3)
    # ...so the next appraisal no longer examines them unless they are due,
    assert examined(D(2019, 12, 31)) == (set(), 0)
    # and there is nothing left for a recompute to do.
    assert admin.retention.recompute_due_dates("adult") == 0
    assert examined(D(2020, 1, 1)) == (ids, 3)


def test_recompute_retags_records_stored_before_any_instruction(
    admin: ControllerScope, svc: ControllerScope
) -> None:
    refs = [
        svc.create_record(patient(), category="adult", events={"last_treatment": D(2012, 1, 1)})
        for _ in range(3)
    ]
    admin.retention.adopt_preset()
    assert admin.retention.recompute_due_dates("adult") == 3
    assert admin.retention.recompute_due_dates("adult") == 0  # resumable: nothing left
    totals: list[int | None] = [0]
    appraisal = admin.retention.appraise(D(2020, 1, 1), progress=lambda d, t: totals.append(t))
    assert {i.record_id for i in appraisal.due} == {r.record_id for r in refs}
    assert totals[-1] == 3
