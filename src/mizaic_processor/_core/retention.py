"""Retention rules and due dates: pure date arithmetic, no I/O, no clock.

The NHS Records Management Code of Practice 2021 (updated 2023, Appendix II) sets **minimum**
retention periods; the controller may instruct longer. A record that reaches its period is
*due*: due records are **appraised**, never destroyed automatically (the Code forbids it), and
a hold blocks every destruction path. This module only says *when* a record becomes due; what
happens then is the controller's decision, carried out by the shell.

Vocabulary:

* A **trigger event** is something the controller records about a patient or a record, with a
  date: ``end_of_treatment``, ``last_seen``, ``date_of_death``, ... (:data:`STANDARD_EVENTS`;
  any name matching ``^[a-z][a-z0-9_]{0,39}$`` may be used). Triggers are never blob timestamps.
* **Reuse restarts the clock** by updating events: the caller keeps, for every event name, the
  date of its most recent occurrence, so a record coming back into use gets a newer
  ``last_seen`` / ``end_of_treatment`` / ``last_treatment``. Every preset combines its triggers
  by ``latest``, so a newer event never brings a due date forward (a property the tests check;
  the date of birth is a fact, not a trigger, and is not "newer").
* A :class:`RetentionRule` is one or more **clauses**, each giving a date or nothing, combined
  by ``latest`` (default) or ``earliest``:

  - :class:`AfterEvents`: a :class:`Duration` after the latest (or earliest) of the named
    events that are recorded; nothing while none is recorded;
  - :class:`UntilBirthday`: until the Nth birthday, or a later one if the patient had reached
    a given age at the latest of some events (the child row: 25th, or 26th if 17 at the end of
    treatment);
  - :class:`Indefinite`: never due (public inquiry material, until the inquiry releases it by a
    new instruction).

  A clause that yields nothing (its events are not recorded: the patient is alive, treatment
  has not ended) is left out of the combination; if every clause yields nothing, or an event
  in :attr:`RetentionRule.requires` is missing, the rule is **not computable** and the record is
  never due (:class:`RetentionDue` says which events it awaits). Missing data therefore keeps
  records, it never releases them.

Where the Code gives alternatives without saying which prevails ("20 years after end of
treatment, or 10 years after death"), the preset :data:`NHS_RECORDS_CODE_2021` takes the
**later** of those that apply: these are minimum periods, the Code warns against premature
destruction, and the later date is never below the Code under either reading. A controller whose
policy reads "whichever is sooner" instructs ``combine="earliest"``; :func:`is_shorter_than`
then reports that instruction as shorter than the preset, which is the truth.

Storage sees only coarse months (:func:`due_bucket`); exact dates stay in the record.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Iterator, Mapping
from datetime import MAXYEAR, date, datetime, timedelta
from types import MappingProxyType
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_serializer,
    model_validator,
)

from mizaic_processor._core.validation import describe_validation_error
from mizaic_processor.errors import InvalidInputError

__all__ = [
    "EVENT_NAME_PATTERN",
    "NHS_RECORDS_CODE_2021",
    "STANDARD_EVENTS",
    "AfterEvents",
    "Clause",
    "Combine",
    "DueStatus",
    "Duration",
    "EventName",
    "Indefinite",
    "RetentionDue",
    "RetentionRule",
    "UntilBirthday",
    "add_duration",
    "bucket_upper_bound",
    "compute_retain_until",
    "due_bucket",
    "is_shorter_than",
    "parse_duration",
]

EVENT_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
"""What a trigger event name looks like: lower-case, starts with a letter, at most 40 chars."""

_EVENT_NAME_RE = re.compile(EVENT_NAME_PATTERN)

STANDARD_EVENTS: frozenset[str] = frozenset(
    {
        "date_of_birth",
        "date_of_death",
        "diagnosis",
        "end_of_care",
        "end_of_support",
        "end_of_treatment",
        "last_seen",
        "last_treatment",
    }
)
"""The event names the preset uses. Others may be recorded and used by instructed rules."""

EventName = Annotated[str, StringConstraints(pattern=EVENT_NAME_PATTERN)]
"""A validated trigger event name."""

Combine = Literal["latest", "earliest"]
"""How several dates are combined: the later (default) or the earlier of those present."""

DueStatus = Literal["due", "indefinite", "awaiting_events"]
"""``due``: a date is known; ``indefinite``: never due; ``awaiting_events``: not computable."""

_FROZEN = ConfigDict(frozen=True, extra="forbid")

# ---------------------------------------------------------------------------------------------
# ISO 8601 durations (date part only)
# ---------------------------------------------------------------------------------------------

# [0-9], not \d: \d also matches non-ASCII digits.
_DURATION_RE = re.compile(
    r"P(?:(?P<years>[0-9]{1,4})Y)?(?:(?P<months>[0-9]{1,5})M)?(?:(?P<days>[0-9]{1,6})D)?"
)
_WEEKS_RE = re.compile(r"P(?P<weeks>[0-9]{1,5})W")


def _parse_iso(text: str) -> dict[str, int]:
    """Split an ISO 8601 date-only duration into years, months and days (no range checks)."""
    weeks = _WEEKS_RE.fullmatch(text)
    if weeks is not None:
        return {"years": 0, "months": 0, "days": 7 * int(weeks["weeks"])}
    match = _DURATION_RE.fullmatch(text)
    if match is None or not any(match.groupdict().values()):
        raise InvalidInputError(
            "not an ISO 8601 date duration: expected PnYnMnD (any part optional) or PnW"
        )
    return {name: int(value or 0) for name, value in match.groupdict().items()}


class Duration(BaseModel):
    """A positive ISO 8601 duration without a time part: years, months and days.

    Written ``P8Y``, ``P1Y6M``, ``P30D``, ``P1Y2M3D`` or ``P2W`` (weeks become days). Negative,
    zero-length (``P``, ``P0D``) and time-bearing (``PT1H``) durations are refused. A pydantic
    field of this type accepts the ISO string and serialises back to it (``str(d)``), in the
    normal form ``PnYnMnD`` with zero parts left out: ``P2W`` becomes ``P14D`` and ``P18M`` stays
    ``P18M`` (parts are not carried; :func:`add_duration` adds ``P18M`` and ``P1Y6M`` alike).
    """

    model_config = _FROZEN

    years: int = Field(default=0, ge=0, le=1000)
    months: int = Field(default=0, ge=0, le=12000)
    days: int = Field(default=0, ge=0, le=366000)

    @model_validator(mode="before")
    @classmethod
    def _from_iso_string(cls, data: Any) -> Any:
        if isinstance(data, str):
            return _parse_iso(data)
        return data

    @model_validator(mode="after")
    def _not_zero(self) -> Self:
        if self.years == self.months == self.days == 0:
            raise ValueError("a retention period must not be zero-length")
        return self

    @model_serializer(mode="plain")
    def _to_iso_string(self) -> str:
        return str(self)

    def __str__(self) -> str:
        parts = ((self.years, "Y"), (self.months, "M"), (self.days, "D"))
        return "P" + "".join(f"{value}{unit}" for value, unit in parts if value)


def parse_duration(text: str) -> Duration:
    """Parse an ISO 8601 date-only duration such as ``P8Y``, ``P1Y6M`` or ``P2W``.

    :param text: the duration, exactly (no surrounding spaces, upper-case designators).
    :returns: the duration.
    :raises InvalidInputError: if ``text`` is not a positive date-only ISO 8601 duration, or a
        part is out of range (at most 1000 years, 12000 months, 366000 days).
    """
    if not isinstance(text, str):
        raise InvalidInputError("a duration must be given as an ISO 8601 string")
    try:
        return Duration.model_validate(text)
    except ValidationError as exc:
        raise InvalidInputError(
            "not a positive ISO 8601 date duration within the allowed range"
        ) from exc


def _shift_months(d: date, months: int) -> date | None:
    """``d`` moved by whole calendar months, clamped to the month's end; None past year 9999."""
    year, month0 = divmod(d.year * 12 + (d.month - 1) + months, 12)
    if year > MAXYEAR:
        return None
    return date(year, month0 + 1, min(d.day, calendar.monthrange(year, month0 + 1)[1]))


def _add(d: date, years: int, months: int, days: int) -> date | None:
    shifted = _shift_months(d, 12 * years + months)
    if shifted is None:
        return None
    try:
        return shifted + timedelta(days=days)
    except OverflowError:
        return None


def _require_date(value: object) -> date:
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidInputError("expected a calendar date (datetime.date, not a datetime)")
    return value


def add_duration(d: date, duration: Duration | str) -> date:
    """The day ``duration`` after ``d``: calendar years and months first, then days.

    Years and months are added together as calendar months (as XML Schema adds durations);
    when the target month has no such day the month's last day is used, so 29 February plus
    one year is 28 February and 31 January plus one month is the end of February. Days are
    then added. The result never decreases when ``d`` or any part of ``duration`` grows.

    :param d: the starting day.
    :param duration: a :class:`Duration`, or its ISO 8601 string.
    :returns: the resulting day.
    :raises InvalidInputError: if ``d`` is not a date, ``duration`` is not a valid duration,
        or the result is after 31 December 9999.
    """
    start = _require_date(d)
    period = parse_duration(duration) if isinstance(duration, str) else duration
    result = _add(start, period.years, period.months, period.days)
    if result is None:
        raise InvalidInputError("the date with the duration added is after the year 9999")
    return result


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


class RetentionDue(BaseModel):
    """When a record becomes due for appraisal, or why that cannot be said.

    ``retain_until`` is the first day on which the record is due: it is retained *until* that
    day and due *on* it (:meth:`is_due`). It is set exactly when ``status`` is ``"due"``.
    ``awaiting`` names, for ``"awaiting_events"``, the events of which recording one or more
    could make the rule computable (for a GP record: ``date_of_death``).
    """

    model_config = _FROZEN

    status: DueStatus
    retain_until: date | None = None
    awaiting: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.status == "due") != (self.retain_until is not None):
            raise ValueError("retain_until is set exactly when the status is 'due'")
        if self.awaiting and self.status != "awaiting_events":
            raise ValueError("awaiting is only given when events are awaited")
        return self

    def is_due(self, as_of: date) -> bool:
        """Whether the record is due for appraisal on ``as_of``.

        :param as_of: the day to judge (the caller's clock, never read here).
        :returns: True only for status ``"due"`` with ``retain_until`` on or before ``as_of``.
        """
        return self.retain_until is not None and self.retain_until <= as_of

    @property
    def bucket(self) -> str | None:
        """The coarse month of ``retain_until`` (:func:`due_bucket`), or None if not due."""
        return None if self.retain_until is None else due_bucket(self.retain_until)


_INDEFINITE = RetentionDue(status="indefinite")


def _due(d: date | None) -> RetentionDue:
    # A date past the year 9999 is, for every practical purpose, never.
    return _INDEFINITE if d is None else RetentionDue(status="due", retain_until=d)


def _awaiting(names: set[str]) -> RetentionDue:
    return RetentionDue(status="awaiting_events", awaiting=tuple(sorted(names)))


def _pick(dates: list[date], how: Combine) -> date:
    return max(dates) if how == "latest" else min(dates)


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


def _unique(names: tuple[str, ...], what: str) -> None:
    if len(set(names)) != len(names):
        raise ValueError(f"{what} must not repeat an event name")


class AfterEvents(BaseModel):
    """A period after the latest (or earliest) of the named events that are recorded.

    Yields nothing while none of ``events`` is recorded. Example: 8 years after the later of
    the end of treatment and the last time the patient was seen.
    """

    model_config = _FROZEN

    kind: Literal["after_events"] = "after_events"
    period: Duration
    events: tuple[EventName, ...] = Field(min_length=1, max_length=16)
    combine: Combine = "latest"

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        _unique(self.events, "events")
        return self

    def evaluate(self, events: Mapping[str, date]) -> RetentionDue:
        """This clause on recorded events (already validated).

        :param events: event name to the date of its most recent occurrence.
        :returns: the clause's due date, or the events it awaits.
        """
        present = [events[name] for name in self.events if name in events]
        if not present:
            return _awaiting(set(self.events))
        start = _pick(present, self.combine)
        return _due(_add(start, self.period.years, self.period.months, self.period.days))


class UntilBirthday(BaseModel):
    """Until the patient's ``age``-th birthday, or ``extended_age``-th if they were older.

    The patient's age is taken on the latest recorded of ``age_at`` (the end of treatment);
    at ``extended_from_age`` or older the ``extended_age``-th birthday applies. Ages follow
    :func:`add_duration`: someone born on 29 February has a birthday on 28 February in a common
    year. Yields nothing until ``birth_event`` and at least one of ``age_at`` are recorded (a
    child still under treatment is not due). Example (Code, children): until the 25th birthday,
    or the 26th if the patient was 17 at the end of treatment. Patients older than 17 at that
    point (rare in a child's record) also get the later birthday.
    """

    model_config = _FROZEN

    kind: Literal["until_birthday"] = "until_birthday"
    age: int = Field(ge=1, le=150)
    extended_age: int | None = Field(default=None, ge=1, le=150)
    extended_from_age: int | None = Field(default=None, ge=0, le=150)
    birth_event: EventName = "date_of_birth"
    age_at: tuple[EventName, ...] = Field(
        default=("end_of_treatment",), min_length=1, max_length=16
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if (self.extended_age is None) != (self.extended_from_age is None):
            raise ValueError("extended_age and extended_from_age are given together or not at all")
        if self.extended_age is not None and self.extended_age <= self.age:
            raise ValueError("extended_age must be greater than age")
        _unique(self.age_at, "age_at")
        if self.birth_event in self.age_at:
            raise ValueError("birth_event must not be one of age_at")
        return self

    def evaluate(self, events: Mapping[str, date]) -> RetentionDue:
        """This clause on recorded events (already validated).

        :param events: event name to the date of its most recent occurrence.
        :returns: the birthday on which the record is due, or the events it awaits.
        """
        born = events.get(self.birth_event)
        ended = [events[name] for name in self.age_at if name in events]
        if born is None or not ended:
            missing: set[str] = set() if ended else set(self.age_at)
            if born is None:
                missing.add(self.birth_event)
            return _awaiting(missing)
        target = self.age
        if (
            self.extended_age is not None
            and self.extended_from_age is not None
            and _age_on(born, max(ended)) >= self.extended_from_age
        ):
            target = self.extended_age
        return _due(_shift_months(born, 12 * target))


def _age_on(born: date, day: date) -> int:
    """Whole years from ``born`` to ``day`` (birthdays as :func:`add_duration` counts them)."""
    years = day.year - born.year
    anniversary = _shift_months(born, 12 * years)
    if anniversary is not None and anniversary > day:
        years -= 1
    return years


class Indefinite(BaseModel):
    """Never due: kept until a new instruction releases it (public inquiry material)."""

    model_config = _FROZEN

    kind: Literal["indefinite"] = "indefinite"

    def evaluate(self, events: Mapping[str, date]) -> RetentionDue:
        """Always indefinite, whatever is recorded.

        :param events: ignored.
        :returns: status ``"indefinite"``.
        """
        return _INDEFINITE


Clause = Annotated[AfterEvents | UntilBirthday | Indefinite, Field(discriminator="kind")]
"""One alternative of a :class:`RetentionRule`, told apart by its ``kind``."""


class RetentionRule(BaseModel):
    """How long a category of record is kept: alternative clauses and how to combine them.

    * ``combine="latest"`` (default): the latest date among the clauses that yield one; an
      :class:`Indefinite` clause makes the whole rule indefinite.
    * ``combine="earliest"``: the earliest date among those clauses; indefinite only if no
      clause yields a date and one is indefinite.
    * ``requires``: events without which the rule is not computable at all, whatever the
      clauses say (the child row needs a date of birth).
    * ``on_expiry``: what the controller wants done when the record is due. ``"appraise"``
      (default, and the Code's practice) puts it before a records manager; ``"destroy"`` is
      the controller's standing instruction to propose it for destruction. Neither destroys
      anything by itself: destruction still needs a recorded instruction and no hold.

    See :func:`compute_retain_until`. The model is frozen and refuses unknown fields; it
    round-trips through JSON with periods written as ISO 8601 strings.

    :raises InvalidInputError: if a clause, period, event name or option is invalid (the
        message names the field, never the value).
    """

    model_config = _FROZEN

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInputError(describe_validation_error(exc)) from None

    # Only a caller's own RetentionRule(...) goes through the __init__ above: pydantic
    # keeps its own validation for model_validate and for a rule nested in a stored
    # instruction (a custom __init__ would be called with the document's keys as
    # keyword arguments, and a key such as "self" or 1 would escape as TypeError).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    clauses: tuple[Clause, ...] = Field(min_length=1, max_length=16)
    combine: Combine = "latest"
    requires: tuple[EventName, ...] = Field(default=(), max_length=16)
    on_expiry: Literal["appraise", "destroy"] = "appraise"

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        _unique(self.requires, "requires")
        return self

    @classmethod
    def after(
        cls,
        period: Duration | str,
        *events: str,
        on_expiry: Literal["appraise", "destroy"] = "appraise",
    ) -> RetentionRule:
        """A one-clause rule: ``period`` after the latest recorded of ``events``.

        :param period: the period, as a :class:`Duration` or an ISO 8601 string.
        :param events: one or more trigger event names.
        :param on_expiry: what the controller wants done when due.
        :returns: the rule.
        :raises InvalidInputError: if the period or an event name is invalid.
        """
        try:  # validated alone, so the message names period or events, as passed
            clause = AfterEvents(period=period, events=events)
        except ValidationError as exc:
            raise InvalidInputError(describe_validation_error(exc)) from None
        return cls(clauses=(clause,), on_expiry=on_expiry)

    @property
    def event_names(self) -> frozenset[str]:
        """Every event name the rule reads."""
        names: set[str] = set(self.requires)
        for clause in self.clauses:
            if isinstance(clause, AfterEvents):
                names.update(clause.events)
            elif isinstance(clause, UntilBirthday):
                names.update((clause.birth_event, *clause.age_at))
        return frozenset(names)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _evaluate(rule: RetentionRule, events: Mapping[str, date]) -> RetentionDue:
    """:func:`compute_retain_until` without validating ``events``."""
    missing = {name for name in rule.requires if name not in events}
    if missing:
        return _awaiting(missing)
    outcomes = [clause.evaluate(events) for clause in rule.clauses]
    dates = [o.retain_until for o in outcomes if o.retain_until is not None]
    indefinite = any(o.status == "indefinite" for o in outcomes)
    if rule.combine == "latest" and indefinite:
        return _INDEFINITE
    if dates:
        return _due(_pick(dates, rule.combine))
    if indefinite:
        return _INDEFINITE
    return _awaiting({name for o in outcomes for name in o.awaiting})


def compute_retain_until(rule: RetentionRule, events: Mapping[str, date]) -> RetentionDue:
    """When a record under ``rule`` becomes due for appraisal, given its recorded events.

    Missing events never raise: a rule that cannot be computed is never due, and the result
    names the events it awaits. A rule due after the year 9999 is reported as indefinite.

    :param rule: the retention rule of the record's category (preset or instructed).
    :param events: event name to the date of its most recent occurrence (reuse updates it).
        Names the rule does not read are ignored.
    :returns: the due date, ``"indefinite"``, or ``"awaiting_events"``.
    :raises InvalidInputError: if an event name is malformed, a value is not a plain date,
        or ``date_of_death`` precedes ``date_of_birth``. Messages name no dates.
    """
    for name, value in events.items():
        if not isinstance(name, str) or _EVENT_NAME_RE.fullmatch(name) is None:
            raise InvalidInputError("an event name does not match " + EVENT_NAME_PATTERN)
        _require_date(value)
    born, died = events.get("date_of_birth"), events.get("date_of_death")
    if born is not None and died is not None and died < born:
        raise InvalidInputError("date_of_death precedes date_of_birth")
    return _evaluate(rule, events)


# ---------------------------------------------------------------------------------------------
# The preset
# ---------------------------------------------------------------------------------------------

_TREATMENT_ENDED = ("end_of_treatment", "last_treatment")


def _after(period: str, *events: str) -> AfterEvents:
    return AfterEvents(period=parse_duration(period), events=events)


NHS_RECORDS_CODE_2021: Mapping[str, RetentionRule] = MappingProxyType(
    {
        # 8 years after end of treatment / last seen, or death: whichever is latest.
        "adult": RetentionRule(
            clauses=(_after("P8Y", *_TREATMENT_ENDED, "last_seen", "date_of_death"),)
        ),
        # 8 years after end of support / last seen.
        "adult_social_care": RetentionRule(clauses=(_after("P8Y", "end_of_support", "last_seen"),)),
        # Until the 25th birthday, or the 26th if 17 at the end of treatment; or 8 years
        # after death; the later applies. Needs a date of birth and an end of treatment.
        "child": RetentionRule(
            clauses=(
                UntilBirthday(
                    age=25, extended_age=26, extended_from_age=17, age_at=_TREATMENT_ENDED
                ),
                _after("P8Y", "date_of_death"),
            ),
            requires=("date_of_birth",),
        ),
        # 25 years after the end of care (the birth of the last child).
        "maternity": RetentionRule(clauses=(_after("P25Y", "end_of_care"),)),
        # 20 years after the end of treatment, or 10 years after death; the later applies.
        "mental_health": RetentionRule(
            clauses=(_after("P20Y", *_TREATMENT_ENDED), _after("P10Y", "date_of_death"))
        ),
        # For the life of the patient, then 10 years after death: not due until death.
        "gp": RetentionRule(clauses=(_after("P10Y", "date_of_death"),)),
        # 30 years from diagnosis, or 8 years after death; the later applies.
        "oncology": RetentionRule(
            clauses=(_after("P30Y", "diagnosis"), _after("P8Y", "date_of_death"))
        ),
        # Never destroyed until released by the inquiry (a new instruction, and its hold).
        "inquiry": RetentionRule(clauses=(Indefinite(),)),
    }
)
"""Minimum retention per category (Records Management Code of Practice 2021, Appendix II).

Where a row says "end of treatment", both ``end_of_treatment`` and ``last_treatment`` count
(services record one or the other); every combination is ``latest``, so recording more or
newer events never brings a due date forward. Every row is appraised on expiry.
"""


# ---------------------------------------------------------------------------------------------
# Comparing a rule with a minimum
# ---------------------------------------------------------------------------------------------

_YEAR = timedelta(days=365)
_BIRTHS = (date(1950, 1, 15), date(2000, 2, 29), date(2001, 6, 1), date(2011, 12, 31))
# Age at the end of treatment as (birthday, days after it): around the 17/18 thresholds too.
_AGES = (
    (0, 30),
    (5, 0),
    (16, 0),
    (17, -1),
    (17, 0),
    (17, 180),
    (18, -1),
    (18, 0),
    (30, 0),
    (70, 0),
)
_DEATHS: tuple[timedelta | None, ...] = (None, timedelta(0), _YEAR, 12 * _YEAR, 40 * _YEAR)
_PERTURBED = (
    "end_of_treatment",
    "last_treatment",
    "last_seen",
    "diagnosis",
    "end_of_care",
    "end_of_support",
)


def _anniversary(born: date, years: int) -> date:
    shifted = _shift_months(born, 12 * years)
    if shifted is None:
        raise InvalidInputError("the date with the duration added is after the year 9999")
    return shifted


def _base_histories() -> Iterator[dict[str, date]]:
    for born in _BIRTHS:
        for years, days in _AGES:
            ended = _anniversary(born, years) + timedelta(days=days)
            base = {
                "date_of_birth": born,
                "end_of_treatment": ended,
                "last_treatment": ended,
                "last_seen": ended,
                "diagnosis": max(born, ended - _YEAR),
                "end_of_care": ended,
                "end_of_support": ended,
            }
            for after_end in _DEATHS:
                if after_end is None:
                    yield base
                else:
                    yield {**base, "date_of_death": ended + after_end}


def _variants(base: dict[str, date]) -> Iterator[dict[str, date]]:
    yield base
    for name in _PERTURBED:
        without = {k: v for k, v in base.items() if k != name}
        yield without
        yield {**base, name: base[name] + 2 * _YEAR}  # a later episode: reuse
        yield {**base, name: max(base["date_of_birth"], base[name] - _YEAR)}
    for name, value in base.items():  # only one event besides the date of birth
        yield {"date_of_birth": base["date_of_birth"], name: value}


@functools.cache
def _representative_histories() -> tuple[Mapping[str, date], ...]:
    """The fixed sample :func:`is_shorter_than` evaluates on (built once, deterministic)."""
    seen: dict[frozenset[tuple[str, date]], Mapping[str, date]] = {}
    for base in _base_histories():
        for history in _variants(base):
            seen.setdefault(frozenset(history.items()), MappingProxyType(history))
    return tuple(seen.values())


def _with_other_events(
    history: Mapping[str, date], names: frozenset[str]
) -> Iterator[Mapping[str, date]]:
    """``history`` with non-standard events absent, then on its earliest and latest event.

    The date of birth does not count: a non-standard event (``last_used``, say) happens
    alongside care, so a history of nothing but a birth gets none.
    """
    yield history
    dates = [when for name, when in history.items() if name != "date_of_birth"]
    if names and dates:
        for when in (min(dates), max(dates)):
            yield {**history, **dict.fromkeys(names, when)}


def _gives_less(rule_due: RetentionDue, minimum_due: RetentionDue) -> bool:
    if rule_due.retain_until is None:
        return False  # never due under the rule: it keeps at least as long
    if minimum_due.retain_until is None:
        return True  # the minimum keeps it indefinitely or until more is known
    return rule_due.retain_until < minimum_due.retain_until


def is_shorter_than(rule: RetentionRule, minimum: RetentionRule) -> bool:
    """Whether ``rule`` would ever make a record due before ``minimum`` does.

    Method: both rules are evaluated on a fixed, deterministic sample of representative
    event histories, and ``rule`` is shorter if on any of them it is due while ``minimum`` is
    not yet (indefinite, or awaiting events: the GP row before death, inquiry material), or
    due on an earlier day. A rule that is not computable, or indefinite, keeps the record at
    least as long as anything, so it is never shorter. The sample crosses dates of birth
    (one on 29 February) with ages at the end of treatment (infant; 16; the day before, on and
    after the 17th birthday; the day before and on the 18th; 30; 70) and deaths (none, in care,
    1, 12 and 40 years later); each history is also varied by dropping, delaying (a later
    episode: reuse) or advancing one event at a time, and by keeping only one event besides the
    date of birth, which is always recorded. Event names outside :data:`STANDARD_EVENTS` are
    tried absent, on the earliest and on the latest date of the history's other events
    (births aside), because nothing says when they happen. ``on_expiry`` is not compared.

    This is evidence, not proof: a rule that differs from the minimum only on histories
    outside the sample goes unnoticed, while every shortening it reports comes with a concrete
    history. The sample is fixed so the answer never changes from one run to the next.

    :param rule: the instructed rule.
    :param minimum: the minimum to respect, usually ``NHS_RECORDS_CODE_2021[category]``.
    :returns: True if ``rule`` gives less retention than ``minimum`` on some sampled history.
    """
    same_clauses = rule.clauses == minimum.clauses and rule.combine == minimum.combine
    if same_clauses and set(rule.requires) >= set(minimum.requires):
        return False  # the same dates, computable in no more cases
    others = (rule.event_names | minimum.event_names) - STANDARD_EVENTS
    for history in _representative_histories():
        for events in _with_other_events(history, others):
            if _gives_less(_evaluate(rule, events), _evaluate(minimum, events)):
                return True
    return False


# ---------------------------------------------------------------------------------------------
# Coarse months for storage
# ---------------------------------------------------------------------------------------------


def due_bucket(d: date) -> str:
    """The coarse month ``YYYY-MM`` of a due date: the only retention date storage sees.

    Blob index tags and names carry this bucket, never the exact day (and never any event
    date), so storage learns only the month a record falls due. The format sorts
    lexicographically in date order, as tag queries compare strings.

    :param d: a due date.
    :returns: its month, zero-padded, e.g. ``"2027-06"``.
    :raises InvalidInputError: if ``d`` is not a date.
    """
    day = _require_date(d)
    return f"{day.year:04d}-{day.month:02d}"


def bucket_upper_bound(as_of: date) -> str:
    """The inclusive upper bound of a storage query for records due on or before ``as_of``.

    Querying ``bucket <= bucket_upper_bound(as_of)`` finds every record due by ``as_of`` and,
    because storage knows only months, also those due later in ``as_of``'s month: the caller
    confirms each candidate with its exact due date (:meth:`RetentionDue.is_due`).

    :param as_of: the day to judge (the caller's clock, never read here).
    :returns: the bucket of ``as_of``.
    :raises InvalidInputError: if ``as_of`` is not a date.
    """
    return due_bucket(as_of)
