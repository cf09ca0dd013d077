"""The statutory clock of a subject request: one calendar month, working days, stop the clock.

Every expected date below was worked out by hand from the calendar; the weekday column makes
each row check itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from mizaic_processor._core.deadlines import (
    ClockError,
    ClockHistory,
    WaitingFor,
    add_calendar_months,
    complaint_acknowledgement_due,
    compute_deadline,
    is_working_day,
    next_working_day,
    status_as_of,
    uk_day,
    working_day_on_or_after,
)

D = date.fromisoformat
REASON = "complex: records held across three sites"


def due_of(history: ClockHistory) -> date | None:
    return compute_deadline(history).due_date


def received(day: str) -> ClockHistory:
    return ClockHistory(received_on=D(day))


# --------------------------------------------------------------------------- calendar months


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        ("2026-01-31", 1, "2026-02-28"),  # no 31 February: the month's last day
        ("2028-01-31", 1, "2028-02-29"),  # leap year
        ("2026-01-30", 1, "2026-02-28"),
        ("2028-01-30", 1, "2028-02-29"),
        ("2026-01-29", 1, "2026-02-28"),
        ("2028-01-29", 1, "2028-02-29"),
        ("2026-01-28", 1, "2026-02-28"),
        ("2026-03-31", 1, "2026-04-30"),
        ("2026-01-15", 1, "2026-02-15"),
        ("2026-12-15", 1, "2027-01-15"),  # across the year end
        ("2026-11-30", 3, "2027-02-28"),
        ("2027-11-30", 3, "2028-02-29"),
        ("2026-03-31", 0, "2026-03-31"),
        ("2026-03-31", -1, "2026-02-28"),
    ],
)
def test_adding_calendar_months_gives_the_corresponding_day_or_the_months_last_day(
    start: str, months: int, expected: str
) -> None:
    assert add_calendar_months(D(start), months) == D(expected)


def test_adding_months_beyond_the_calendar_raises_a_clock_error() -> None:
    with pytest.raises(ClockError):
        add_calendar_months(date(9999, 12, 1), 1)


# --------------------------------------------------------------------------- working days


@pytest.mark.parametrize(
    ("day", "working"),
    [
        ("2026-03-02", True),  # Monday
        ("2026-03-07", False),  # Saturday
        ("2026-03-08", False),  # Sunday
        ("2026-12-25", False),  # Christmas Day, a Friday
        ("2026-12-28", False),  # Boxing Day (substitute day), a Monday
        ("2026-12-29", True),
        ("2027-03-26", False),  # Good Friday
        ("2027-03-29", False),  # Easter Monday
        ("2027-05-03", False),  # early May bank holiday
        ("2028-01-03", False),  # New Year's Day (substitute day)
        ("2023-05-08", False),  # one-off: coronation of Charles III
        ("2026-03-17", True),  # St Patrick's Day: a holiday in Northern Ireland only
        ("2026-01-02", True),  # a holiday in Scotland only
    ],
)
def test_working_days_exclude_weekends_and_england_and_wales_bank_holidays(
    day: str, working: bool
) -> None:
    assert is_working_day(D(day)) is working


def test_wales_observes_the_same_bank_holidays_as_england() -> None:
    import holidays

    years = range(2020, 2060)
    england = holidays.country_holidays("GB", subdiv="ENG", years=years)
    wales = holidays.country_holidays("GB", subdiv="WLS", years=years)
    assert set(england) == set(wales)


def test_next_working_day_is_strictly_after_and_skips_a_christmas_weekend() -> None:
    assert next_working_day(D("2026-03-02")) == D("2026-03-03")
    assert next_working_day(D("2026-12-24")) == D("2026-12-29")
    assert working_day_on_or_after(D("2026-03-02")) == D("2026-03-02")
    assert working_day_on_or_after(D("2026-12-25")) == D("2026-12-29")


# --------------------------------------------------------------------------- due dates


@pytest.mark.parametrize(
    ("receipt", "due", "weekday"),
    [
        # 28 February 2026 is a Saturday: rolled to Monday 2 March.
        ("2026-01-31", "2026-03-02", "Mon"),
        ("2026-01-30", "2026-03-02", "Mon"),
        ("2026-01-29", "2026-03-02", "Mon"),
        # 29 February 2028 is a Tuesday: no roll.
        ("2028-01-31", "2028-02-29", "Tue"),
        ("2028-01-30", "2028-02-29", "Tue"),
        ("2028-01-29", "2028-02-29", "Tue"),
        # 28 February 2027 is a Sunday: rolled to Monday 1 March.
        ("2027-01-29", "2027-03-01", "Mon"),
        ("2027-01-31", "2027-03-01", "Mon"),
    ],
)
def test_a_request_received_at_the_end_of_january_is_due_at_the_end_of_february(
    receipt: str, due: str, weekday: str
) -> None:
    assert due_of(received(receipt)) == D(due)
    assert D(due).strftime("%a") == weekday


@pytest.mark.parametrize(
    ("receipt", "due", "weekday", "why"),
    [
        ("2026-11-25", "2026-12-29", "Tue", "Christmas Fri, weekend, Boxing Day substitute Mon"),
        ("2026-11-26", "2026-12-29", "Tue", "26 Dec is a Saturday, then the substitute Monday"),
        ("2026-11-28", "2026-12-29", "Tue", "28 Dec 2026 is the Boxing Day substitute day"),
        ("2027-02-26", "2027-03-30", "Tue", "Good Friday, weekend, Easter Monday 2027"),
        ("2027-02-28", "2027-03-30", "Tue", "28 Mar is a Sunday, then Easter Monday"),
        ("2026-04-04", "2026-05-05", "Tue", "early May bank holiday 2026 (4 May)"),
        ("2027-04-03", "2027-05-04", "Tue", "early May bank holiday 2027 (3 May)"),
        ("2027-12-01", "2028-01-04", "Tue", "1 Jan 2028 is a Saturday; 3 Jan its substitute"),
        ("2027-12-03", "2028-01-04", "Tue", "New Year's Day substitute Monday 3 Jan 2028"),
    ],
)
def test_a_due_date_on_a_bank_holiday_moves_to_the_next_working_day(
    receipt: str, due: str, weekday: str, why: str
) -> None:
    assert due_of(received(receipt)) == D(due), why
    assert D(due).strftime("%a") == weekday


@pytest.mark.parametrize(
    ("receipt", "due"),
    [
        ("2026-02-14", "2026-03-16"),  # 14 March 2026 is a Saturday
        ("2026-02-15", "2026-03-16"),  # 15 March 2026 is a Sunday
        ("2026-03-02", "2026-04-02"),  # a Thursday: no roll
    ],
)
def test_a_due_date_on_a_weekend_moves_to_monday(receipt: str, due: str) -> None:
    assert due_of(received(receipt)) == D(due)
    assert is_working_day(D(due))


def test_a_request_received_late_in_the_evening_counts_from_that_uk_day() -> None:
    # 23:30 UTC on 31 March 2026 is 00:30 BST on 1 April in London.
    moment = datetime(2026, 3, 31, 23, 30, tzinfo=UTC)
    assert uk_day(moment) == D("2026-04-01")
    assert ClockHistory(received_on=moment).received_on == D("2026-04-01")
    # In winter London is on UTC.
    assert uk_day(datetime(2026, 1, 31, 23, 59, tzinfo=UTC)) == D("2026-01-31")
    assert uk_day(datetime(2026, 2, 1, 1, 0, tzinfo=timezone(timedelta(hours=2)))) == D(
        "2026-01-31"
    )


def test_a_naive_moment_of_receipt_is_refused() -> None:
    with pytest.raises(ClockError):
        uk_day(datetime(2026, 3, 31, 23, 30))
    with pytest.raises(ValidationError):
        ClockHistory(received_on=datetime(2026, 3, 31, 23, 30))


# --------------------------------------------------------------------------- stop the clock


@pytest.mark.parametrize(
    ("asked", "answered", "paused", "due"),
    [
        # Received Monday 2 March 2026: unpaused due Thursday 2 April.
        ("2026-03-04", "2026-03-04", 0, "2026-04-02"),
        ("2026-03-04", "2026-03-09", 5, "2026-04-07"),
        # 1 day paused lands on Good Friday 3 April: rolled past Easter to Tuesday 7 April.
        ("2026-03-04", "2026-03-05", 1, "2026-04-07"),
        ("2026-03-02", "2026-03-12", 10, "2026-04-13"),  # asked on the day of receipt
        ("2026-03-20", "2026-04-20", 31, "2026-05-05"),  # 3 May is a Sunday, 4 May a holiday
    ],
)
def test_asking_for_clarification_pauses_the_clock_and_moves_the_due_date_by_the_days_paused(
    asked: str, answered: str, paused: int, due: str
) -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.CLARIFICATION, on=D(asked))
        .receive_information(WaitingFor.CLARIFICATION, on=D(answered))
    )
    deadline = compute_deadline(history)
    assert deadline.paused_days == paused == (D(answered) - D(asked)).days
    assert deadline.due_date == D(due)
    assert deadline.due_date == working_day_on_or_after(D("2026-04-02") + timedelta(paused))


def test_while_clarification_is_awaited_the_clock_is_not_running() -> None:
    history = received("2026-03-02").request_information(
        WaitingFor.CLARIFICATION, on=D("2026-03-04")
    )
    deadline = compute_deadline(history)
    assert deadline.due_date is None
    assert deadline.waiting_for == (WaitingFor.CLARIFICATION,)
    assert deadline.waiting_for == ("clarification",)
    assert not deadline.running


def test_two_clarifications_both_pause_the_clock() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-04"))
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-03-06"))
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-10"))
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-03-13"))
    )
    assert compute_deadline(history).paused_days == 5
    assert due_of(history) == D("2026-04-07")  # 2 April + 5 days


def test_identity_requested_at_receipt_starts_the_clock_when_the_identity_arrives() -> None:
    asked = received("2026-03-02").request_information(WaitingFor.IDENTITY, on=D("2026-03-02"))
    waiting = compute_deadline(asked)
    assert waiting.due_date is None
    assert waiting.started_on is None
    assert waiting.waiting_for == ("identity",)

    arrived = asked.receive_information(WaitingFor.IDENTITY, on=D("2026-03-13"))
    deadline = compute_deadline(arrived)
    assert deadline.started_on == D("2026-03-13")
    assert deadline.due_date == D("2026-04-13")  # Monday; 13 March + one month


def test_identity_asked_later_restarts_the_clock_from_its_arrival() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-03"))
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-03-05"))
        .request_information(WaitingFor.IDENTITY, on=D("2026-03-06"))
        .receive_information(WaitingFor.IDENTITY, on=D("2026-03-12"))
    )
    deadline = compute_deadline(history)
    assert deadline.started_on == D("2026-03-12")
    assert deadline.paused_days == 0  # the earlier pause is before the new start
    assert deadline.due_date == D("2026-04-13")  # 12 April is a Sunday


def test_the_clock_waits_for_both_identity_and_fee_and_starts_when_the_last_arrives() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.IDENTITY, on=D("2026-03-02"))
        .request_information(WaitingFor.FEE, on=D("2026-03-02"))
        .receive_information(WaitingFor.FEE, on=D("2026-03-05"))
    )
    assert compute_deadline(history).waiting_for == ("identity",)
    history = history.receive_information(WaitingFor.IDENTITY, on=D("2026-03-14"))
    assert compute_deadline(history).started_on == D("2026-03-14")
    assert due_of(history) == D("2026-04-14")


def test_clarification_still_awaited_when_the_identity_arrives_pauses_from_that_day() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.IDENTITY, on=D("2026-03-02"))
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-02"))
        .receive_information(WaitingFor.IDENTITY, on=D("2026-03-10"))
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-03-13"))
    )
    deadline = compute_deadline(history)
    assert (deadline.started_on, deadline.paused_days) == (D("2026-03-10"), 3)
    assert deadline.due_date == D("2026-04-13")  # 10 April + 3 days


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda h: h.receive_information(WaitingFor.IDENTITY, on=D("2026-03-05")),
            "not asked for",
        ),
        (
            lambda h: h.request_information(WaitingFor.FEE, on=D("2026-03-03")).request_information(
                WaitingFor.FEE, on=D("2026-03-04")
            ),
            "already waiting",
        ),
        (
            lambda h: h.request_information(WaitingFor.FEE, on=D("2026-03-03")).receive_information(
                WaitingFor.FEE, on=D("2026-03-02")
            ),
            "out of order",
        ),
        (
            lambda h: h.request_information(WaitingFor.FEE, on=D("2026-03-01")),
            "out of order",
        ),
        (
            # Due 2 April 2026: asking afterwards cannot stop a clock that has run out.
            lambda h: h.request_information(WaitingFor.CLARIFICATION, on=D("2026-04-03")),
            "ran out",
        ),
    ],
)
def test_an_impossible_history_is_refused_with_a_clock_error(
    build: Callable[[ClockHistory], ClockHistory], message: str
) -> None:
    with pytest.raises(ClockError, match=message):
        build(received("2026-03-02"))


def test_clarification_may_still_be_asked_on_the_due_date_itself() -> None:
    history = received("2026-03-02").request_information(
        WaitingFor.CLARIFICATION, on=D("2026-04-02")
    )
    assert compute_deadline(history).waiting_for == ("clarification",)


def test_an_impossible_history_parsed_from_storage_fails_validation() -> None:
    stored = {
        "received_on": "2026-03-02",
        "events": [{"kind": "information_received", "on": "2026-03-05", "what": "fee"}],
    }
    with pytest.raises(ValidationError):
        ClockHistory.model_validate(stored)


def test_a_history_round_trips_through_json() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-04"))
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-03-09"))
        .extend(on=D("2026-03-20"), months=2, reason=REASON)
    )
    assert ClockHistory.model_validate_json(history.model_dump_json()) == history


def test_a_history_is_immutable_and_rejects_unknown_fields() -> None:
    history = received("2026-03-02")
    with pytest.raises(ValidationError):
        history.received_on = D("2026-03-03")  # type: ignore[misc]
    with pytest.raises(ValidationError):
        ClockHistory.model_validate({"received_on": "2026-03-02", "note": "x"})


# --------------------------------------------------------------------------- extensions


@pytest.mark.parametrize(
    ("months", "due"),
    [
        (1, "2026-05-05"),  # 2 May 2026 is a Saturday, 4 May the early May bank holiday
        (2, "2026-06-02"),  # a Tuesday: three months from the start
    ],
)
def test_an_extension_with_a_reason_adds_months_counted_from_the_start(
    months: int, due: str
) -> None:
    history = received("2026-03-02").extend(on=D("2026-03-20"), months=months, reason=REASON)
    deadline = compute_deadline(history)
    assert deadline.unextended_due_date == D("2026-04-02")
    assert deadline.extension_months == months
    assert deadline.due_date == D(due)


def test_an_extension_keeps_the_days_paused() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-04"))
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-03-09"))
        .extend(on=D("2026-03-20"), months=2, reason=REASON)
    )
    assert due_of(history) == D("2026-06-08")  # 2 June + 5 days: 7 June is a Sunday


def test_two_one_month_extensions_add_up_to_two_months() -> None:
    history = (
        received("2026-03-02")
        .extend(on=D("2026-03-10"), months=1, reason=REASON)
        .extend(on=D("2026-03-30"), months=1, reason="several requests from the requester")
    )
    assert due_of(history) == D("2026-06-02")


def test_an_extension_on_the_last_day_before_the_first_deadline_is_allowed() -> None:
    history = received("2026-03-02").extend(on=D("2026-04-01"), months=2, reason=REASON)
    assert due_of(history) == D("2026-06-02")


def test_an_extension_before_a_rolled_first_deadline_is_allowed() -> None:
    # Received 14 Feb 2026: 14 March is a Saturday, so the first deadline is Monday 16 March.
    history = received("2026-02-14").extend(on=D("2026-03-14"), months=1, reason=REASON)
    assert due_of(history) == D("2026-04-14")


def test_an_extension_while_the_clock_is_paused_is_allowed() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-30"))
        .extend(on=D("2026-04-10"), months=1, reason=REASON)
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-04-13"))
    )
    # 2 May + 14 paused days = 16 May, a Saturday.
    assert due_of(history) == D("2026-05-18")


@pytest.mark.parametrize(
    "decided_on",
    ["2026-04-02", "2026-04-03", "2026-05-01"],  # the first deadline itself, and later
)
def test_an_extension_decided_on_or_after_the_first_deadline_is_refused(decided_on: str) -> None:
    with pytest.raises(ClockError, match="before the first deadline"):
        received("2026-03-02").extend(on=D(decided_on), months=1, reason=REASON)


def test_an_extension_beyond_two_months_in_total_is_refused() -> None:
    with pytest.raises(ClockError, match="at most 2 months"):
        received("2026-03-02").extend(on=D("2026-03-10"), months=3, reason=REASON)
    once = received("2026-03-02").extend(on=D("2026-03-10"), months=2, reason=REASON)
    with pytest.raises(ClockError, match="at most 2 months"):
        once.extend(on=D("2026-03-11"), months=1, reason=REASON)


@pytest.mark.parametrize("reason", ["", "   ", "\n\t"])
def test_an_extension_without_a_reason_is_refused(reason: str) -> None:
    with pytest.raises(ClockError, match="reason"):
        received("2026-03-02").extend(on=D("2026-03-10"), months=1, reason=reason)


@pytest.mark.parametrize("months", [0, -1])
def test_an_extension_of_no_months_is_refused(months: int) -> None:
    with pytest.raises(ClockError):
        received("2026-03-02").extend(on=D("2026-03-10"), months=months, reason=REASON)


def test_a_malformed_event_is_refused_with_a_clock_error_that_hides_the_input() -> None:
    with pytest.raises(ClockError) as caught:
        received("2026-03-02").extend(
            on=D("2026-03-10"),
            months="two",  # type: ignore[arg-type]
            reason="patient 943 476 5919",
        )
    assert "943" not in str(caught.value)
    assert "943" not in str(caught.value.__cause__)


def test_clock_error_is_a_value_error() -> None:
    assert issubclass(ClockError, ValueError)


# --------------------------------------------------------------------------- complaints


@pytest.mark.parametrize(
    ("receipt", "acknowledge_by", "weekday"),
    [
        ("2026-03-02", "2026-04-01", "Wed"),  # day one is 3 March; day 30 is 1 April
        ("2026-02-12", "2026-03-16", "Mon"),  # day 30 is Saturday 14 March
        ("2026-11-25", "2026-12-29", "Tue"),  # day 30 is Christmas Day
        ("2027-02-27", "2027-03-30", "Tue"),  # day 30 is Easter Monday 29 March
    ],
)
def test_a_complaint_is_acknowledged_within_30_days_rolled_to_a_working_day(
    receipt: str, acknowledge_by: str, weekday: str
) -> None:
    assert complaint_acknowledgement_due(D(receipt)) == D(acknowledge_by)
    assert D(acknowledge_by).strftime("%a") == weekday


# --------------------------------------------------------------------------- status


@pytest.mark.parametrize(
    ("today", "remaining", "overdue", "due_within_7", "due_today"),
    [
        ("2026-03-02", 31, False, False, False),
        ("2026-03-26", 7, False, True, False),
        ("2026-04-01", 1, False, True, False),
        ("2026-04-02", 0, False, True, True),  # the due date itself is still in time
        ("2026-04-03", -1, True, False, False),
        ("2026-05-02", -30, True, False, False),
    ],
)
def test_status_counts_days_remaining_and_flags_overdue_and_due_soon(
    today: str, remaining: int, overdue: bool, due_within_7: bool, due_today: bool
) -> None:
    status = status_as_of(received("2026-03-02"), D(today))
    assert status.due_date == D("2026-04-02")
    assert status.days_remaining == remaining
    assert status.overdue is overdue
    assert status.due_soon(7) is due_within_7
    assert status.due_soon(0) is due_today
    assert status.paused is False


def test_a_paused_clock_is_neither_overdue_nor_due_soon() -> None:
    history = received("2026-03-02").request_information(WaitingFor.IDENTITY, on=D("2026-03-02"))
    status = status_as_of(history, D("2026-06-01"))
    assert status.paused
    assert status.waiting_for == ("identity",)
    assert (status.due_date, status.days_remaining, status.overdue) == (None, None, False)
    assert status.due_soon(365) is False


def test_status_ignores_events_recorded_after_the_day_asked_about() -> None:
    history = (
        received("2026-03-02")
        .request_information(WaitingFor.CLARIFICATION, on=D("2026-03-04"))
        .receive_information(WaitingFor.CLARIFICATION, on=D("2026-03-09"))
    )
    assert status_as_of(history, D("2026-03-03")).due_date == D("2026-04-02")
    assert status_as_of(history, D("2026-03-05")).paused
    assert status_as_of(history, D("2026-03-09")).due_date == D("2026-04-07")


def test_status_before_receipt_is_refused() -> None:
    with pytest.raises(ClockError):
        status_as_of(received("2026-03-02"), D("2026-03-01"))


def test_due_soon_refuses_a_negative_window() -> None:
    with pytest.raises(ClockError):
        status_as_of(received("2026-03-02"), D("2026-03-02")).due_soon(-1)


def test_status_takes_an_aware_moment_as_its_uk_day() -> None:
    status = status_as_of(received("2026-03-02"), datetime(2026, 4, 2, 23, 30, tzinfo=UTC))
    assert status.as_of == D("2026-04-03")  # 00:30 BST
    assert status.overdue


# --------------------------------------------------------------------------- properties


@st.composite
def histories(draw: st.DrawFn) -> ClockHistory:
    receipt = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31)))
    history = ClockHistory(received_on=receipt)
    start = receipt
    if draw(st.booleans()):
        start = receipt + timedelta(draw(st.integers(0, 60)))
        history = history.request_information(WaitingFor.IDENTITY, on=receipt)
        history = history.receive_information(WaitingFor.IDENTITY, on=start)
    last = start
    if draw(st.booleans()):
        asked = start + timedelta(draw(st.integers(0, 27)))  # always before the deadline
        last = asked + timedelta(draw(st.integers(0, 90)))
        history = history.request_information(WaitingFor.CLARIFICATION, on=asked)
        history = history.receive_information(WaitingFor.CLARIFICATION, on=last)
    months = draw(st.integers(0, 2))
    if months:
        history = history.extend(on=last, months=months, reason=REASON)
    return history


@settings(deadline=None, max_examples=300)
@given(histories())
def test_the_due_date_is_never_before_receipt_plus_28_days_and_is_a_working_day(
    history: ClockHistory,
) -> None:
    deadline = compute_deadline(history)
    assert deadline.due_date is not None
    assert deadline.unextended_due_date is not None
    assert deadline.due_date >= history.received_on + timedelta(28)
    assert deadline.due_date >= deadline.unextended_due_date
    assert is_working_day(deadline.due_date)


@settings(deadline=None)
@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2200, 12, 31)), st.integers(-24, 24))
def test_adding_months_lands_in_the_right_month_never_past_the_same_day(
    start: date, months: int
) -> None:
    result = add_calendar_months(start, months)
    assert result.year * 12 + result.month == start.year * 12 + start.month + months
    assert result.day <= start.day
    if start.day <= 28:
        assert result.day == start.day
