"""The statutory clock of a data subject request: pure date arithmetic, no I/O.

The rules (UK GDPR Art 12(3); Art 12A and DPA 2018 s.164A as inserted by the Data (Use and
Access) Act 2025; the ICO's guidance on time limits and on complaints):

* The clock starts on the **day** of receipt: a request received at 23:59 counts from that day.
  A moment is turned into a day in UK local time by :func:`uk_day`.
* One calendar month: the corresponding day of the next month, or that month's last day when
  there is none (:func:`add_calendar_months`). A due date on a weekend or an England & Wales
  bank holiday moves to the next working day.
* **Identity evidence or a fee** asked for: the clock does not run until it arrives, and then
  starts afresh on the day it arrives (pauses counted before that no longer matter).
* **Clarification** asked for ("stop the clock"): the clock is paused from the day asked until
  the day the answer arrives, and the due date moves later by that many days.
* **Extension**: one or two further months in total, each decided before the first
  (unextended) deadline, with a reason. The extended due date is counted from the start:
  ``add_calendar_months(start, 1 + months)`` plus the paused days, then the next working day.
* A **complaint** is acknowledged within 30 days: day one is the day after receipt, so the
  last day is receipt + 30 days, moved to the next working day when it falls on a weekend or
  bank holiday (as the ICO's complaints guidance says).

While identity, a fee or clarification is awaited the clock is **not running**: the due date is
``None`` and :attr:`Deadline.waiting_for` says why.

Nothing here reads the clock: every date is a parameter, so deadlines are testable exactly.
A :class:`ClockHistory` is an immutable record of what happened; its builder methods return a
new history and refuse an impossible one with :class:`ClockError`.
"""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

import holidays
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from mizaic_processor.errors import ClockError

__all__ = [
    "COMPLAINT_ACKNOWLEDGEMENT_DAYS",
    "MAX_EXTENSION_MONTHS",
    "ClockError",
    "ClockEvent",
    "ClockHistory",
    "ClockStatus",
    "Deadline",
    "Extended",
    "InformationReceived",
    "InformationRequested",
    "WaitingFor",
    "add_calendar_months",
    "complaint_acknowledgement_due",
    "compute_deadline",
    "is_working_day",
    "next_working_day",
    "status_as_of",
    "uk_day",
    "working_day_on_or_after",
]

MAX_EXTENSION_MONTHS = 2
"""Further months an extension may add, in total (UK GDPR Art 12(3))."""

COMPLAINT_ACKNOWLEDGEMENT_DAYS = 30
"""Days within which a complaint is acknowledged (DPA 2018 s.164A)."""

_UK_ZONE = "Europe/London"
# Wales observes exactly England's bank holidays; the package's "ENG" and "WLS" agree.
_HOLIDAY_COUNTRY = "GB"
_HOLIDAY_SUBDIVISION = "ENG"


class WaitingFor(StrEnum):
    """What the controller has asked the requester for, while the clock is not running."""

    IDENTITY = "identity"
    FEE = "fee"
    CLARIFICATION = "clarification"


_RESTARTING = frozenset({WaitingFor.IDENTITY, WaitingFor.FEE})


# --------------------------------------------------------------------------- calendar


def uk_day(moment: datetime) -> date:
    """The UK calendar day on which ``moment`` falls.

    :param moment: a timezone-aware datetime (any zone).
    :returns: the date in ``Europe/London`` local time.
    :raises ClockError: if ``moment`` is naive (its day would be a guess).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ClockError("a moment of receipt must be timezone-aware")
    try:
        return moment.astimezone(ZoneInfo(_UK_ZONE)).date()
    except OverflowError:
        raise ClockError("the moment is outside the supported calendar range") from None


def add_calendar_months(d: date, n: int) -> date:
    """The corresponding day ``n`` calendar months after ``d``.

    When that month has no corresponding day, its last day: 31 January + 1 month is
    28 February (29 February in a leap year). ``n`` may be zero or negative.

    :param d: the starting day.
    :param n: how many months to add.
    :returns: the corresponding day.
    :raises ClockError: if the result is outside the years 1 to 9999.
    """
    months = d.year * 12 + (d.month - 1) + n
    year, month0 = divmod(months, 12)
    if not 1 <= year <= 9999:
        raise ClockError("date out of range")
    last_day = calendar.monthrange(year, month0 + 1)[1]
    return date(year, month0 + 1, min(d.day, last_day))


@functools.lru_cache(maxsize=128)
def _bank_holidays(year: int) -> frozenset[date]:
    """England & Wales bank holidays of one year (computed locally, no network)."""
    calendar_of_year = holidays.country_holidays(
        _HOLIDAY_COUNTRY, subdiv=_HOLIDAY_SUBDIVISION, years=year
    )
    return frozenset(calendar_of_year.keys())


def is_working_day(d: date) -> bool:
    """Whether ``d`` is a working day: not a Saturday, Sunday or England & Wales bank holiday.

    :param d: the day.
    :returns: ``True`` for a working day.
    """
    day = _as_date(d)
    return day.weekday() < 5 and day not in _bank_holidays(day.year)


def next_working_day(d: date) -> date:
    """The first working day strictly after ``d``.

    :param d: the day.
    :returns: the next working day.
    """
    candidate = _as_date(d) + timedelta(days=1)
    while not is_working_day(candidate):
        candidate += timedelta(days=1)
    return candidate


def working_day_on_or_after(d: date) -> date:
    """``d`` if it is a working day, otherwise the next working day.

    :param d: the day.
    :returns: the first working day on or after ``d``.
    """
    day = _as_date(d)
    return day if is_working_day(day) else next_working_day(day)


def complaint_acknowledgement_due(received_on: date) -> date:
    """The last day to acknowledge a complaint received on ``received_on``.

    Day one of the 30 is the day after receipt, so the last day is receipt + 30 days; on a
    weekend or bank holiday it moves to the next working day (ICO complaints guidance).

    :param received_on: the day the complaint was received.
    :returns: the acknowledgement due date.
    """
    return working_day_on_or_after(
        _as_date(received_on) + timedelta(COMPLAINT_ACKNOWLEDGEMENT_DAYS)
    )


def _as_date(d: date) -> date:
    """A plain ``date``; a ``datetime`` (a subclass of date) becomes its UK day."""
    return uk_day(d) if isinstance(d, datetime) else d


def _to_uk_day(value: object) -> object:
    return uk_day(value) if isinstance(value, datetime) else value


UkDay = Annotated[date, BeforeValidator(_to_uk_day)]
"""A calendar day; an aware datetime is accepted and becomes its UK day."""


# --------------------------------------------------------------------------- history


class _Frozen(BaseModel):
    # A reason is free text: keep inputs out of validation messages (invariant 2).
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class InformationRequested(_Frozen):
    """The controller asked the requester for identity evidence, a fee or clarification."""

    kind: Literal["information_requested"] = "information_requested"
    on: UkDay
    what: WaitingFor


class InformationReceived(_Frozen):
    """What the controller asked for arrived."""

    kind: Literal["information_received"] = "information_received"
    on: UkDay
    what: WaitingFor


class Extended(_Frozen):
    """The controller decided to extend the time limit by ``months`` further months."""

    kind: Literal["extended"] = "extended"
    on: UkDay
    months: int
    reason: str


ClockEvent = Annotated[
    InformationRequested | InformationReceived | Extended, Field(discriminator="kind")
]
"""One event of a :class:`ClockHistory`."""


@dataclass
class _State:
    """The clock after replaying events, up to and including the last one."""

    received_on: date
    start: date | None
    awaiting: dict[WaitingFor, date] = field(default_factory=dict)
    paused_days: int = 0
    pause_from: date | None = None
    extension_months: int = 0

    @property
    def running(self) -> bool:
        return self.start is not None and not self.awaiting

    def due(self, months: int, extra_paused_days: int = 0) -> date:
        if self.start is None:
            raise ClockError("the clock is not running")
        day = add_calendar_months(self.start, months)
        return working_day_on_or_after(day + timedelta(self.paused_days + extra_paused_days))


def _replay(received_on: date, events: tuple[ClockEvent, ...]) -> _State:
    """Replay ``events`` in order, refusing any that could not have happened.

    :raises ClockError: if the history is impossible.
    """
    state = _State(received_on=received_on, start=received_on)
    last = received_on
    for event in events:
        if event.on < last:
            raise ClockError(
                f"clock events out of order: {event.on.isoformat()} after {last.isoformat()}"
            )
        last = event.on
        if isinstance(event, InformationRequested):
            _apply_request(state, event)
        elif isinstance(event, InformationReceived):
            _apply_arrival(state, event)
        else:
            _apply_extension(state, event)
    return state


def _apply_request(state: _State, event: InformationRequested) -> None:
    if event.what in state.awaiting:
        raise ClockError(f"already waiting for {event.what.value}")
    if state.running:
        due = state.due(1 + state.extension_months)
        if event.on > due:
            raise ClockError(
                f"the clock ran out on {due.isoformat()}; asking for {event.what.value} on "
                f"{event.on.isoformat()} cannot stop it"
            )
    state.awaiting[event.what] = event.on
    if event.what in _RESTARTING:
        # The clock will start afresh when it arrives; pauses so far no longer count.
        state.start = None
        state.pause_from = None
        state.paused_days = 0
    elif state.start is not None and state.pause_from is None:
        state.pause_from = event.on


def _apply_arrival(state: _State, event: InformationReceived) -> None:
    if event.what not in state.awaiting:
        raise ClockError(f"{event.what.value} arrived but was not asked for")
    del state.awaiting[event.what]
    if event.what in _RESTARTING:
        if not _RESTARTING & state.awaiting.keys():
            state.start = event.on
            state.paused_days = 0
            waiting = WaitingFor.CLARIFICATION in state.awaiting
            state.pause_from = event.on if waiting else None
    elif state.pause_from is not None:
        state.paused_days += (event.on - state.pause_from).days
        state.pause_from = None


def _apply_extension(state: _State, event: Extended) -> None:
    if not event.reason.strip():
        raise ClockError("an extension needs a reason")
    if event.months < 1:
        raise ClockError("an extension adds at least one month")
    if state.extension_months + event.months > MAX_EXTENSION_MONTHS:
        raise ClockError(f"an extension may add at most {MAX_EXTENSION_MONTHS} months in total")
    if state.start is not None:
        ongoing = (event.on - state.pause_from).days if state.pause_from is not None else 0
        first = state.due(1, ongoing)
        if event.on >= first:
            raise ClockError(
                f"an extension must be decided before the first deadline {first.isoformat()}"
            )
    state.extension_months += event.months


class ClockHistory(_Frozen):
    """What happened to one request's clock: the day received, then events in date order.

    Build it with the methods, each returning a new history::

        clock = ClockHistory(received_on=date(2026, 3, 2))
        clock = clock.request_information(WaitingFor.CLARIFICATION, on=date(2026, 3, 4))
        clock = clock.receive_information(WaitingFor.CLARIFICATION, on=date(2026, 3, 9))

    Constructing or parsing an impossible history directly raises pydantic's
    ``ValidationError`` (a ``ValueError``); the methods raise :class:`ClockError`.
    """

    received_on: UkDay
    events: tuple[ClockEvent, ...] = ()

    @model_validator(mode="after")
    def _possible(self) -> ClockHistory:
        _replay(self.received_on, self.events)
        return self

    def request_information(self, what: WaitingFor, *, on: date) -> ClockHistory:
        """Record that the controller asked for identity evidence, a fee or clarification.

        :param what: what was asked for.
        :param on: the day it was asked for.
        :returns: the new history.
        :raises ClockError: if it is already awaited, ``on`` is before the last event, or the
            clock had already run out.
        """
        return self._with(InformationRequested, on=on, what=what)

    def receive_information(self, what: WaitingFor, *, on: date) -> ClockHistory:
        """Record that what was asked for arrived.

        :param what: what arrived.
        :param on: the day it arrived.
        :returns: the new history.
        :raises ClockError: if it was not awaited, or ``on`` is before the last event.
        """
        return self._with(InformationReceived, on=on, what=what)

    def extend(self, *, on: date, months: int, reason: str) -> ClockHistory:
        """Record the controller's decision to extend the time limit.

        :param on: the day the extension was decided.
        :param months: further months (1 or 2; at most 2 over all extensions).
        :param reason: why (the request is complex, or the requester made several).
        :returns: the new history.
        :raises ClockError: if decided on or after the first deadline, beyond two months in
            total, without a reason, or before the last event.
        """
        return self._with(Extended, on=on, months=months, reason=reason)

    def _with(
        self,
        event_type: type[InformationRequested | InformationReceived | Extended],
        **values: object,
    ) -> ClockHistory:
        try:
            event = event_type.model_validate(values)
        except ValidationError as exc:
            fields = ", ".join(str(error["loc"][0]) for error in exc.errors() if error["loc"])
            raise ClockError(f"invalid clock event ({fields or 'value'})") from exc
        events = (*self.events, event)
        _replay(self.received_on, events)
        return ClockHistory(received_on=self.received_on, events=events)


# --------------------------------------------------------------------------- results


class Deadline(_Frozen):
    """The due date of a request, as the full history stands.

    ``due_date`` is ``None`` while the clock is not running (``waiting_for`` is not empty).
    """

    received_on: date
    started_on: date | None
    waiting_for: tuple[WaitingFor, ...]
    paused_days: int
    extension_months: int
    unextended_due_date: date | None
    due_date: date | None

    @property
    def running(self) -> bool:
        """Whether the clock is running (nothing is awaited)."""
        return not self.waiting_for


def compute_deadline(history: ClockHistory) -> Deadline:
    """Compute the due date from a clock history.

    :param history: what happened.
    :returns: the deadline; its ``due_date`` is ``None`` while identity, a fee or
        clarification is awaited.
    :raises ClockError: if the history is impossible.
    """
    state = _replay(history.received_on, history.events)
    waiting = tuple(what for what in WaitingFor if what in state.awaiting)
    running = state.running
    return Deadline(
        received_on=history.received_on,
        started_on=state.start,
        waiting_for=waiting,
        paused_days=state.paused_days,
        extension_months=state.extension_months,
        unextended_due_date=state.due(1) if running else None,
        due_date=state.due(1 + state.extension_months) if running else None,
    )


class ClockStatus(_Frozen):
    """A request's clock as it stood on ``as_of``."""

    as_of: date
    due_date: date | None
    waiting_for: tuple[WaitingFor, ...]

    @property
    def paused(self) -> bool:
        """Whether the clock is not running: identity, a fee or clarification is awaited."""
        return bool(self.waiting_for)

    @property
    def days_remaining(self) -> int | None:
        """Days from ``as_of`` to the due date: 0 on the due date, negative when overdue,
        ``None`` while paused."""
        return None if self.due_date is None else (self.due_date - self.as_of).days

    @property
    def overdue(self) -> bool:
        """Whether the due date has passed (the due date itself is still in time)."""
        return self.due_date is not None and self.as_of > self.due_date

    def due_soon(self, within_days: int) -> bool:
        """Whether the request is due within ``within_days`` days and not yet overdue.

        :param within_days: how many days ahead counts as soon (0: due today).
        :returns: ``True`` when ``0 <= days_remaining <= within_days``; ``False`` while paused.
        :raises ClockError: if ``within_days`` is negative.
        """
        if within_days < 0:
            raise ClockError("within_days must not be negative")
        remaining = self.days_remaining
        return remaining is not None and 0 <= remaining <= within_days


def status_as_of(history: ClockHistory, today: date) -> ClockStatus:
    """The clock's status on ``today``, from the events recorded on or before it.

    :param history: what happened (events after ``today`` are ignored).
    :param today: the day to evaluate; an aware datetime is taken as its UK day.
    :returns: the status.
    :raises ClockError: if ``today`` is before the request was received, or is a naive
        datetime.
    """
    day = _as_date(today)
    if day < history.received_on:
        raise ClockError("the request had not been received on that day")
    known = tuple(event for event in history.events if event.on <= day)
    deadline = compute_deadline(ClockHistory(received_on=history.received_on, events=known))
    return ClockStatus(as_of=day, due_date=deadline.due_date, waiting_for=deadline.waiting_for)
