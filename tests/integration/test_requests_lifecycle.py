"""The request clock and lifecycle through ``scope.requests``, reminders, controller-
instructed fulfilment and breach notices, against real Azurite and a local receiver."""

# The fixtures come from requests_support by import; using them as arguments re-binds
# their names, which is what pytest expects.
# ruff: noqa: F811

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest
from requests_support import (  # noqa: F401 - fixtures
    ADMIN,
    NHS,
    OPERATOR,
    SECRET,
    SERVICE,
    Clock,
    Receiver,
    assert_no_personal_data,
    azurite,
    clock,
    keyring,
    new_controller,
    proc,
    receiver,
    request_args,
)

from mizaic_processor import (
    AccessDeniedError,
    ClockError,
    ConflictError,
    ControllerScope,
    HoldError,
    InvalidInputError,
    NHSNumber,
    NotFoundError,
    Processor,
    RecordRef,
    RequestStatus,
    RestrictedError,
    WaitingFor,
    WebhookRoute,
)

D = dt.date.fromisoformat


def at(day: str) -> dt.datetime:
    return dt.datetime.fromisoformat(day + "T09:00:00+00:00")


def setup(proc: Processor, receiver: Receiver | None = None) -> tuple[str, ControllerScope]:
    cid = new_controller(proc)
    if receiver is not None:
        proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET),
                                actor=OPERATOR)
    return cid, proc.tenant(cid, actor=ADMIN)


def receive(proc: Processor, cid: str, clock: Clock, **changes: object) -> str:
    return proc.requests.receive(**request_args(cid, clock, **changes)).request_id  # type: ignore[arg-type]


# -- the clock ---------------------------------------------------------------------------


def test_a_clarification_pause_moves_the_due_date_and_an_extension_needs_a_reason(
    proc: Processor, clock: Clock
) -> None:
    cid, admin = setup(proc)
    rid = receive(proc, cid, clock, kind="rectification")  # received Monday 2 March 2026
    assert admin.requests.get(rid).due_on == D("2026-04-02")

    clock.now = at("2026-03-10")
    admin.requests.acknowledge(rid)
    paused = admin.requests.pause(rid, "clarification", on=D("2026-03-04"))
    assert paused.status is RequestStatus.AWAITING_CLARIFICATION
    assert paused.due_on is None and paused.waiting_for == (WaitingFor.CLARIFICATION,)
    resumed = admin.requests.resume(rid, on=D("2026-03-09"))  # 5 days paused
    assert resumed.status is RequestStatus.ACKNOWLEDGED
    assert resumed.due_on == D("2026-04-07")

    with pytest.raises(InvalidInputError):
        admin.requests.extend(rid, months=2, reason="   ")
    with pytest.raises(InvalidInputError):
        admin.requests.extend(rid, months=3, reason="complex")
    extended = admin.requests.extend(rid, months=2, reason="records held across three sites")
    # 2 June + 5 paused days = Sunday 7 June -> Monday 8 June
    assert extended.due_on == D("2026-06-08") and extended.extension_months == 2

    details = admin.requests.get(rid)
    assert [h.event for h in details.history] == [
        "received", "acknowledged", "paused:clarification", "resumed:clarification", "extended",
    ]
    assert all(h.actor == ADMIN.id for h in details.history[1:])
    assert details.clock is not None
    assert details.clock.events[-1].reason == "records held across three sites"  # type: ignore[union-attr]


def test_identity_restarts_the_clock_and_an_extension_after_the_first_deadline_is_refused(
    proc: Processor, clock: Clock
) -> None:
    cid, admin = setup(proc)
    rid = receive(proc, cid, clock, kind="erasure")
    clock.now = at("2026-03-25")
    admin.requests.acknowledge(rid)
    admin.requests.pause(rid, WaitingFor.IDENTITY, on=D("2026-03-03"))
    assert admin.requests.get(rid).status is RequestStatus.AWAITING_IDENTITY
    assert admin.requests.resume(rid, "identity", on=D("2026-03-20")).due_on == D("2026-04-20")
    with pytest.raises(InvalidInputError):  # not in the future
        admin.requests.pause(rid, "fee", on=D("2026-03-26"))

    clock.now = at("2026-04-21")
    with pytest.raises(ClockError):
        admin.requests.extend(rid, months=1, reason="complex")
    assert issubclass(ClockError, InvalidInputError)
    assert admin.requests.get(rid).extension_months == 0


def test_a_complaint_is_acknowledged_within_30_days_and_has_no_clock(
    proc: Processor, clock: Clock
) -> None:
    cid, admin = setup(proc)
    rid = receive(proc, cid, clock, kind="complaint")
    assert admin.requests.get(rid).due_on == D("2026-04-01")
    clock.now = at("2026-04-02")
    (late,) = admin.requests.list(overdue=True)
    assert late.request_id == rid and late.days_remaining == -1
    acknowledged = admin.requests.acknowledge(rid)
    assert acknowledged.due_on is None and not acknowledged.overdue
    with pytest.raises(ConflictError):
        admin.requests.pause(rid, "clarification")
    with pytest.raises(ConflictError):
        admin.requests.extend(rid, months=1, reason="complex")


def test_lists_of_open_due_soon_and_overdue_requests_and_reminders_once_a_day(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    cid, admin = setup(proc, receiver)
    early = receive(proc, cid, clock)  # due 2 April
    clock.now = at("2026-03-16")
    later = receive(proc, cid, clock, kind="objection")  # due 16 April
    closed = receive(proc, cid, clock, kind="complaint")
    admin.requests.acknowledge(closed)
    admin.requests.complete(closed)

    def ids(**filters: object) -> set[str]:
        return {s.request_id for s in admin.requests.list(**filters)}  # type: ignore[arg-type]

    assert ids() == {early, later, closed}
    assert ids(open_only=True) == {early, later}
    assert ids(status="completed") == {closed}
    assert ids(due_within_days=7, as_of=D("2026-03-30")) == {early}
    assert ids(due_within_days=20, as_of=D("2026-03-30")) == {early, later}
    assert ids(overdue=True, as_of=D("2026-04-03")) == {early}
    assert ids(overdue=True, due_within_days=14, as_of=D("2026-04-03")) == {early, later}
    with pytest.raises(InvalidInputError):
        ids(status="lost")

    clock.now = at("2026-04-03")
    posts = len(receiver.posts)
    assert proc.requests.send_reminders(within_days=14) >= 2  # (other tests' too)
    assert proc.requests.send_reminders(within_days=14) == 0  # once a day
    reminders = [json.loads(p.body) for p in receiver.posts[posts:]]
    assert sorted((n["type"], n["request_id"], n["overdue"]) for n in reminders) == sorted(
        [("request.reminder", early, True), ("request.reminder", later, False)]
    )
    for post in receiver.posts:
        assert_no_personal_data(post.body)
    clock.now = at("2026-04-06")
    proc.requests.send_reminders(within_days=14)  # another day
    assert len(receiver.posts) == posts + 4


# -- fulfilment --------------------------------------------------------------------------


def test_an_objection_is_instructed_and_completed_with_no_data_action(
    proc: Processor, clock: Clock
) -> None:
    cid, admin = setup(proc)
    rid = receive(proc, cid, clock, kind="objection")
    with pytest.raises(ConflictError):  # not acknowledged yet
        admin.requests.instruct(rid, note="stop direct marketing")
    admin.requests.acknowledge(rid)
    with pytest.raises(InvalidInputError):
        admin.requests.instruct(rid)  # needs a note
    with pytest.raises(InvalidInputError):
        admin.requests.instruct(rid, note="x", subject=NHSNumber(NHS))
    done = admin.requests.instruct(rid, note="stop direct marketing")
    assert done.request.status is RequestStatus.INSTRUCTED
    assert done.export is None and done.erasure is None
    assert admin.requests.complete(rid, note="confirmed").status is RequestStatus.COMPLETED
    with pytest.raises(ConflictError):
        admin.requests.refuse(rid, reason="too late")
    details = admin.requests.get(rid)
    assert details.instruction_id == done.instruction_id
    assert details.instruction_note == "stop direct marketing"
    assert [h.event for h in details.history][-2:] == ["instructed", "completed"]
    with pytest.raises(AccessDeniedError):
        proc.tenant(cid, actor=SERVICE).requests.instruct(rid, note="x")


def test_reasons_and_notes_that_are_not_printable_text_are_refused_and_change_nothing(
    proc: Processor, clock: Clock
) -> None:
    # A lone surrogate used to be stored, and then the request could not be shown as JSON
    # (model_dump_json, and the CLI's requests show --json, failed).
    cid, admin = setup(proc)
    rid = receive(proc, cid, clock, kind="objection")
    admin.requests.acknowledge(rid)
    before = admin.requests.get(rid).model_dump_json()
    for bad in ("held at \ud800 sites", "a\x00b"):
        with pytest.raises(InvalidInputError) as caught:
            admin.requests.extend(rid, months=1, reason=bad)
        assert bad not in str(caught.value)
        with pytest.raises(InvalidInputError):
            admin.requests.refuse(rid, reason=bad)
    assert admin.requests.get(rid).model_dump_json() == before
    # what people type or paste is text: CRLF (a browser's textarea), non-breaking spaces,
    # right-to-left marks
    reason = "records held\r\nat three\xa0sites \u200f\u05d0"
    admin.requests.extend(rid, months=1, reason=reason)
    details = admin.requests.get(rid)
    assert details.clock is not None
    assert details.clock.events[-1].reason == reason  # type: ignore[union-attr]
    details.model_dump_json()  # and it can be shown


def test_access_holds_the_subject_until_complete_and_erasure_is_refused_then_done(
    proc: Processor, clock: Clock
) -> None:
    from fhir.resources.R4B.bundle import Bundle

    cid, admin = setup(proc)
    subject = NHSNumber(NHS)
    refs = [admin.create_record(subject, category="adult", fields={"note": f"visit {n}"},
                                content=b"%PDF-1.7 scan" if n == 0 else None,
                                content_type="application/pdf" if n == 0 else None)
            for n in range(3)]
    access = receive(proc, cid, clock, kind="access")  # "943 476 5919": held at intake
    erasure = receive(proc, cid, clock, kind="erasure")
    (hold,) = admin.retention.list_holds()
    assert hold.kind == "access_request" and hold.request_id == access
    assert admin.requests.get(access).hold_id == hold.hold_id

    admin.requests.acknowledge(erasure)
    with pytest.raises(HoldError):
        admin.requests.instruct(erasure, subject=subject)
    assert admin.requests.get(erasure).history[-1].event == "blocked:hold"
    assert admin.get_record(refs[0].record_id).fields["note"] == "visit 0"

    admin.requests.acknowledge(access)
    out = io.BytesIO()
    done = admin.requests.instruct(access, subject=subject, destination=out, note="SAR")
    assert done.export is not None and done.export.records == 3 and done.export.documents == 1
    with zipfile.ZipFile(out) as archive:
        bundle = Bundle.model_validate_json(archive.read("fhir-bundle.json"))
        assert json.loads(archive.read("records.json"))["records"]
    assert bundle.type == "collection"
    admin.requests.complete(access)
    assert admin.retention.list_holds() == []

    erased = admin.requests.instruct(erasure, subject=subject, note="erase all")
    assert erased.erasure is not None and erased.erasure.key_destroyed
    assert len(erased.erasure.records_destroyed) == 3
    with pytest.raises(NotFoundError):
        admin.get_record(refs[1].record_id)
    assert not admin.subject_exists(subject)


def _with_record_and_requests(
    proc: Processor, clock: Clock, *kinds: str
) -> tuple[ControllerScope, NHSNumber, RecordRef, list[str]]:
    """A controller with one record of NHS and an acknowledged request of each kind."""
    cid, admin = setup(proc)
    subject = NHSNumber(NHS)
    ref = admin.create_record(subject, category="adult", fields={"allergy": "penicilin"})
    requests = [receive(proc, cid, clock, kind=kind) for kind in kinds]
    for rid in requests:
        admin.requests.acknowledge(rid)
    return admin, subject, ref, requests


class _Sink:
    """A writer with no tell() whose write() returns None, as many file-likes do."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data

    def flush(self) -> None:
        pass


def test_a_refused_instruction_leaves_no_instruction_and_no_hold_behind(
    proc: Processor, clock: Clock
) -> None:
    # Before, the instruction was recorded in the ledger before these arguments were
    # checked: each refused call left a permanent instruction, and a text destination
    # failed with TypeError after it.
    admin, subject, ref, (rectify, access) = _with_record_and_requests(
        proc, clock, "rectification", "access")
    holds = admin.retention.list_holds(active_only=False)  # the access request's own
    closed = io.BytesIO()
    closed.close()
    bad_calls = [
        lambda: admin.requests.instruct(rectify, record_id=ref.record_id, etag=ref.etag,
                                        fields={"bad name": 1}),
        lambda: admin.requests.instruct(rectify, record_id=ref.record_id, etag=5,
                                        fields={"allergy": "x"}),
        lambda: admin.requests.instruct(rectify, record_id="../x", etag=ref.etag,
                                        fields={"allergy": "x"}),
        lambda: admin.requests.instruct(rectify, record_id=ref.record_id, etag=ref.etag,
                                        remove_fields=5),
        lambda: admin.requests.instruct(rectify, record_id=ref.record_id, etag=ref.etag,
                                        events={"seen": dt.datetime(2026, 1, 1)}),
        *[lambda d=d: admin.requests.instruct(access, subject=subject, destination=d)
          for d in (io.StringIO(), closed, object())],
    ]
    for call in bad_calls:
        with pytest.raises(InvalidInputError):
            call()
    assert list(admin._ledger.list_instructions()) == []  # no public listing of the ledger
    assert admin.retention.list_holds(active_only=False) == holds
    assert admin.requests.get(rectify).status is RequestStatus.ACKNOWLEDGED
    assert admin.requests.get(access).status is RequestStatus.ACKNOWLEDGED
    assert admin.get_record(ref.record_id).fields == {"allergy": "penicilin"}
    # a writer whose write() returns None and that has no tell() still gets the archive
    sink = _Sink()
    done = admin.requests.instruct(access, subject=subject, destination=sink, note="SAR")
    assert done.export is not None and done.export.records == 1
    with zipfile.ZipFile(io.BytesIO(bytes(sink.data))) as archive:
        assert archive.testzip() is None
        assert json.loads(archive.read("records.json"))["records"]


def test_a_rectification_of_a_missing_or_changed_record_leaves_no_instruction(
    proc: Processor, clock: Clock
) -> None:
    # Before, the instruction was recorded first and the rectification then failed on
    # the record: each such call left a permanent rectification instruction.
    admin, _subject, ref, (rectify,) = _with_record_and_requests(proc, clock, "rectification")
    unknown = ref.record_id[:27] + "a" * 26  # well formed, same subject, never stored
    changed = admin.update_record(ref.record_id, etag=ref.etag, fields={"allergy": "nuts"})
    with pytest.raises(NotFoundError):
        admin.requests.instruct(rectify, record_id=unknown, etag=ref.etag,
                                fields={"allergy": "x"})
    with pytest.raises(ConflictError):  # ref.etag is stale since the update
        admin.requests.instruct(rectify, record_id=ref.record_id, etag=ref.etag,
                                fields={"allergy": "x"})
    assert list(admin._ledger.list_instructions()) == []
    assert admin.requests.get(rectify).status is RequestStatus.ACKNOWLEDGED
    assert admin.get_record(ref.record_id).fields == {"allergy": "nuts"}
    done = admin.requests.instruct(rectify, record_id=ref.record_id, etag=changed.etag,
                                   fields={"allergy": "penicillin"})
    assert done.record is not None and done.record.version == 3
    assert [i.instruction_id for i in admin._ledger.list_instructions()] == [
        done.instruction_id
    ]


def test_restriction_and_rectification_are_carried_out_on_instruction(
    proc: Processor, clock: Clock
) -> None:
    admin, subject, ref, (rectify, restrict) = _with_record_and_requests(
        proc, clock, "rectification", "restriction")

    with pytest.raises(InvalidInputError):  # needs the record and its etag
        admin.requests.instruct(rectify, fields={"allergy": "penicillin"})
    fixed = admin.requests.instruct(rectify, record_id=ref.record_id, etag=ref.etag,
                                    fields={"allergy": "penicillin"})
    assert fixed.record is not None and fixed.record.version == 2
    assert admin.get_record(ref.record_id).fields["allergy"] == "penicillin"
    (earlier,) = admin.list_record_versions(ref.record_id)
    assert earlier.fields["allergy"] == "penicilin"

    service = proc.tenant(admin.controller_id, actor=SERVICE)
    assert service.get_record(ref.record_id).version == 2
    done = admin.requests.instruct(restrict, subject=subject)
    assert done.restricted is True
    with pytest.raises(RestrictedError):
        service.get_record(ref.record_id)
    assert admin.get_record(ref.record_id).version == 2  # the controller still reads it


def test_a_breach_notice_is_forwarded_at_once_and_updates_append(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    cid, admin = setup(proc, receiver)
    reported = proc.requests.report_breach(
        cid, nature="misdirected export file", categories=["health", "contact"],
        subjects_approx=12, records_approx=40, consequences="disclosure to one GP practice",
        measures="file recalled and deleted", detected_at=clock.now, actor=OPERATOR,
    )
    assert reported.delivered and reported.version == 1
    clock.advance(hours=2)
    updated = proc.requests.update_breach(cid, reported.breach_id, records_approx=41,
                                          measures="recipient confirmed deletion",
                                          actor=OPERATOR)
    assert updated.version == 2 and updated.delivered
    notes = [json.loads(p.body) for p in receiver.accepted]
    assert [(n["type"], n["version"]) for n in notes] == [
        ("breach.reported", 1), ("breach.updated", 2)
    ]
    for post in receiver.posts:
        assert b"misdirected" not in post.body

    first = admin.requests.get_breach(reported.breach_id, version=1)
    latest = admin.requests.get_breach(reported.breach_id)
    assert (first.records_approx, first.measures) == (40, "file recalled and deleted")
    assert (latest.records_approx, latest.measures) == (41, "recipient confirmed deletion")
    assert latest.nature == first.nature and latest.categories == ("contact", "health")
    assert [b.version for b in admin.requests.list_breaches()] == [2]
    with pytest.raises(InvalidInputError):
        proc.requests.report_breach(
            cid, nature="", categories=[], subjects_approx=-1, records_approx=0,
            consequences="x", measures="y", detected_at=clock.now, actor=OPERATOR,
        )
    # counts are ints, not True / 1.0 / "5"; a detection in the future is refused (as an
    # intake received in the future is); a bool is not a version or a number of days
    good = {"nature": "lost laptop", "categories": ["health"], "subjects_approx": 3,
            "records_approx": 3, "consequences": "x", "measures": "y",
            "detected_at": clock.now}
    for bad in ({"subjects_approx": True}, {"subjects_approx": 1.0}, {"records_approx": "5"},
                {"detected_at": clock.now + dt.timedelta(days=400)}):
        with pytest.raises(InvalidInputError):
            proc.requests.report_breach(cid, **{**good, **bad}, actor=OPERATOR)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        proc.requests.update_breach(cid, reported.breach_id, subjects_approx=True,
                                    actor=OPERATOR)
    with pytest.raises(InvalidInputError):
        admin.requests.get_breach(reported.breach_id, version=True)
    with pytest.raises(InvalidInputError):
        admin.requests.list(due_within_days=True)
    with pytest.raises(InvalidInputError):
        proc.requests.send_reminders(within_days=True, actor=OPERATOR)
    assert [b.version for b in admin.requests.list_breaches()] == [2]  # nothing new
    with pytest.raises(AccessDeniedError):
        proc.tenant(cid, actor=SERVICE).requests.get_breach(reported.breach_id)
    with pytest.raises(AccessDeniedError):
        proc.requests.update_breach(cid, reported.breach_id, measures="x", actor=ADMIN)
