"""Retention rules: ISO durations, the NHS Code preset row by row, and rule comparison."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from mizaic_processor._core.retention import (
    NHS_RECORDS_CODE_2021,
    STANDARD_EVENTS,
    AfterEvents,
    Duration,
    Indefinite,
    RetentionDue,
    RetentionRule,
    UntilBirthday,
    add_duration,
    bucket_upper_bound,
    compute_retain_until,
    due_bucket,
    is_shorter_than,
    parse_duration,
)
from mizaic_processor.errors import InvalidInputError
from mizaic_processor.retention import rule_from_json

D = date


def due(category: str, **events: date) -> RetentionDue:
    return compute_retain_until(NHS_RECORDS_CODE_2021[category], events)


def due_on(category: str, **events: date) -> date:
    result = due(category, **events)
    assert result.status == "due", result
    assert result.retain_until is not None
    return result.retain_until


# --- ISO 8601 durations -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "years", "months", "days"),
    [
        ("P8Y", 8, 0, 0),
        ("P25Y", 25, 0, 0),
        ("P1Y6M", 1, 6, 0),
        ("P30D", 0, 0, 30),
        ("P2W", 0, 0, 14),
        ("P1Y2M3D", 1, 2, 3),
        ("P18M", 0, 18, 0),
        ("P0Y1D", 0, 0, 1),
    ],
)
def test_date_only_iso_durations_parse_into_years_months_and_days(
    text: str, years: int, months: int, days: int
) -> None:
    assert parse_duration(text) == Duration(years=years, months=months, days=days)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "P",
        "P0D",
        "P0Y0M0D",
        "PT1H",
        "P1DT1H",
        "P-1Y",
        "-P1Y",
        "P1.5Y",
        "P1Y2W",
        "p8y",
        " P8Y",
        "P8Y ",
        "8Y",
        "P1M1Y",
        "P\u0668Y",  # an Arabic-Indic digit eight
        "P1001Y",
        "garbage",
    ],
)
def test_negative_zero_timed_or_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_duration(text)


def test_a_duration_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        parse_duration(8)  # type: ignore[arg-type]


def test_durations_print_in_normal_form_and_weeks_become_days() -> None:
    assert str(parse_duration("P1Y2M3D")) == "P1Y2M3D"
    assert str(parse_duration("P2W")) == "P14D"
    assert str(parse_duration("P0Y6M")) == "P6M"


def test_a_duration_is_frozen_and_refuses_unknown_fields() -> None:
    period = parse_duration("P8Y")
    with pytest.raises(ValidationError):
        period.years = 9
    with pytest.raises(ValidationError):
        Duration.model_validate({"years": 1, "hours": 2})


@given(st.integers(0, 1000), st.integers(0, 12000), st.integers(0, 366000))
def test_printing_and_parsing_a_duration_gives_it_back(years: int, months: int, days: int) -> None:
    assume(years or months or days)
    period = Duration(years=years, months=months, days=days)
    assert parse_duration(str(period)) == period


# --- Calendar arithmetic ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "period", "expected"),
    [
        (D(2000, 2, 29), "P1Y", D(2001, 2, 28)),
        (D(2000, 2, 29), "P4Y", D(2004, 2, 29)),
        (D(2000, 2, 29), "P25Y", D(2025, 2, 28)),
        (D(2000, 1, 31), "P1M", D(2000, 2, 29)),
        (D(2001, 1, 31), "P1M", D(2001, 2, 28)),
        (D(2015, 3, 10), "P8Y", D(2023, 3, 10)),
        (D(2020, 8, 31), "P1Y6M", D(2022, 2, 28)),
        (D(2020, 1, 1), "P1Y2M3D", D(2021, 3, 4)),
        (D(2020, 12, 25), "P2W", D(2021, 1, 8)),
        (D(2020, 2, 28), "P1Y1D", D(2021, 3, 1)),
        # years and months move together, then the day is clamped once
        (D(2000, 2, 29), "P1Y1M", D(2001, 3, 29)),
    ],
)
def test_years_and_months_add_by_calendar_then_days(
    start: date, period: str, expected: date
) -> None:
    assert add_duration(start, period) == expected
    assert add_duration(start, parse_duration(period)) == expected


def test_adding_past_the_year_9999_is_refused() -> None:
    with pytest.raises(InvalidInputError):
        add_duration(D(9999, 6, 1), "P1Y")
    with pytest.raises(InvalidInputError):
        add_duration(D(9999, 12, 31), "P1D")


def test_a_datetime_is_not_accepted_where_a_day_is_meant() -> None:
    with pytest.raises(InvalidInputError):
        add_duration(datetime(2020, 1, 1, 12, 0), "P1Y")


durations = st.tuples(st.integers(0, 200), st.integers(0, 50), st.integers(0, 2000)).filter(any)
days = st.dates(min_value=D(1900, 1, 1), max_value=D(2200, 12, 31))


@given(days, days, durations)
def test_adding_a_duration_never_reverses_the_order_of_two_days(
    a: date, b: date, parts: tuple[int, int, int]
) -> None:
    period = Duration(years=parts[0], months=parts[1], days=parts[2])
    earlier, later = sorted((a, b))
    assert add_duration(earlier, period) <= add_duration(later, period)


@given(days, durations, st.sampled_from(["years", "months", "days"]), st.integers(1, 100))
def test_a_longer_duration_never_gives_an_earlier_day(
    start: date, parts: tuple[int, int, int], part: str, extra: int
) -> None:
    period = Duration(years=parts[0], months=parts[1], days=parts[2])
    longer = period.model_copy(update={part: getattr(period, part) + extra})
    assert add_duration(start, longer) >= add_duration(start, period) > start


# --- The preset, row by row -------------------------------------------------------------------


def test_the_preset_covers_exactly_the_categories_of_the_design_and_appraises_every_one() -> None:
    assert set(NHS_RECORDS_CODE_2021) == {
        "adult",
        "adult_social_care",
        "child",
        "maternity",
        "mental_health",
        "gp",
        "oncology",
        "inquiry",
    }
    assert {rule.on_expiry for rule in NHS_RECORDS_CODE_2021.values()} == {"appraise"}
    assert all(rule.combine == "latest" for rule in NHS_RECORDS_CODE_2021.values())
    for rule in NHS_RECORDS_CODE_2021.values():
        assert rule.event_names <= STANDARD_EVENTS


def test_the_preset_cannot_be_altered() -> None:
    with pytest.raises(TypeError):
        NHS_RECORDS_CODE_2021["adult"] = RetentionRule.after("P1D", "last_seen")  # type: ignore[index]


def test_adult_record_is_due_8_years_after_the_last_treatment() -> None:
    assert due_on("adult", last_treatment=D(2015, 3, 10)) == D(2023, 3, 10)
    assert due_on("adult", end_of_treatment=D(2015, 3, 10)) == D(2023, 3, 10)


def test_adult_record_counts_from_the_later_of_end_of_treatment_and_last_seen() -> None:
    events = {"end_of_treatment": D(2015, 3, 10), "last_seen": D(2017, 1, 5)}
    assert due_on("adult", **events) == D(2025, 1, 5)


def test_adult_record_counts_from_death_when_the_patient_died_after_treatment() -> None:
    assert due_on("adult", end_of_treatment=D(2015, 3, 10), date_of_death=D(2020, 8, 1)) == D(
        2028, 8, 1
    )


def test_adult_record_with_no_trigger_recorded_is_never_due_and_says_what_it_awaits() -> None:
    result = due("adult", date_of_birth=D(1970, 1, 1))
    assert result.status == "awaiting_events"
    assert result.retain_until is None
    assert result.awaiting == ("date_of_death", "end_of_treatment", "last_seen", "last_treatment")
    assert not result.is_due(D(9999, 12, 31))


def test_adult_social_care_record_is_due_8_years_after_support_ended_or_last_seen() -> None:
    assert due_on("adult_social_care", end_of_support=D(2016, 11, 30)) == D(2024, 11, 30)
    later = {"end_of_support": D(2016, 11, 30), "last_seen": D(2018, 2, 1)}
    assert due_on("adult_social_care", **later) == D(2026, 2, 1)


def test_child_who_was_17_at_end_of_treatment_is_kept_until_the_26th_birthday() -> None:
    born = D(2001, 6, 1)
    assert due_on("child", date_of_birth=born, end_of_treatment=D(2018, 9, 1)) == D(2027, 6, 1)


def test_child_who_was_16_at_end_of_treatment_is_kept_until_the_25th_birthday() -> None:
    born = D(2001, 6, 1)
    assert due_on("child", date_of_birth=born, end_of_treatment=D(2017, 9, 1)) == D(2026, 6, 1)


def test_child_turns_17_on_the_17th_birthday_not_the_day_before() -> None:
    born = D(2001, 6, 1)
    assert due_on("child", date_of_birth=born, end_of_treatment=D(2018, 5, 31)) == D(2026, 6, 1)
    assert due_on("child", date_of_birth=born, end_of_treatment=D(2018, 6, 1)) == D(2027, 6, 1)


def test_child_older_than_17_at_end_of_treatment_also_gets_the_26th_birthday() -> None:
    born = D(2001, 6, 1)
    assert due_on("child", date_of_birth=born, end_of_treatment=D(2019, 7, 1)) == D(2027, 6, 1)


def test_child_born_on_29_february_has_birthdays_on_28_february_in_common_years() -> None:
    born = D(2000, 2, 29)
    assert due_on("child", date_of_birth=born, end_of_treatment=D(2010, 1, 1)) == D(2025, 2, 28)
    # 28 February 2017 is the 17th birthday, so the 26th applies
    assert due_on("child", date_of_birth=born, end_of_treatment=D(2017, 2, 28)) == D(2026, 2, 28)


def test_child_last_treatment_counts_as_end_of_treatment_and_the_later_one_decides_age() -> None:
    born = D(2001, 6, 1)
    events = {"end_of_treatment": D(2017, 9, 1), "last_treatment": D(2018, 7, 1)}
    assert due_on("child", date_of_birth=born, **events) == D(2027, 6, 1)


def test_child_who_died_as_a_young_adult_is_kept_8_years_after_death() -> None:
    born = D(2001, 6, 1)
    events = {"end_of_treatment": D(2010, 1, 1), "date_of_death": D(2020, 3, 15)}
    # 25th birthday 2026-06-01 is earlier than 8 years after death
    assert due_on("child", date_of_birth=born, **events) == D(2028, 3, 15)


def test_child_who_died_young_is_kept_until_25th_birthday_when_later_than_8_years_on() -> None:
    born = D(2010, 5, 5)
    events = {"end_of_treatment": D(2012, 1, 1), "date_of_death": D(2012, 1, 1)}
    assert due_on("child", date_of_birth=born, **events) == D(2035, 5, 5)


def test_child_record_without_a_date_of_birth_is_not_computable_even_after_death() -> None:
    result = due("child", end_of_treatment=D(2012, 1, 1), date_of_death=D(2013, 1, 1))
    assert result.status == "awaiting_events"
    assert result.awaiting == ("date_of_birth",)


def test_child_still_under_treatment_is_not_due() -> None:
    result = due("child", date_of_birth=D(2015, 1, 1))
    assert result.status == "awaiting_events"
    assert result.awaiting == ("date_of_death", "end_of_treatment", "last_treatment")


def test_maternity_record_is_due_25_years_after_the_end_of_care() -> None:
    assert due_on("maternity", end_of_care=D(2000, 4, 20)) == D(2025, 4, 20)


def test_mental_health_record_is_due_20_years_after_end_of_treatment() -> None:
    assert due_on("mental_health", end_of_treatment=D(2010, 1, 10)) == D(2030, 1, 10)


def test_mental_health_record_of_a_patient_who_died_long_after_is_kept_10_years_after_death() -> (
    None
):
    events = {"end_of_treatment": D(2010, 1, 10), "date_of_death": D(2025, 6, 30)}
    assert due_on("mental_health", **events) == D(2035, 6, 30)


def test_mental_health_record_keeps_20_years_when_death_came_soon_after_treatment() -> None:
    events = {"end_of_treatment": D(2010, 1, 10), "date_of_death": D(2011, 2, 1)}
    assert due_on("mental_health", **events) == D(2030, 1, 10)


def test_mental_health_record_of_a_patient_who_died_in_care_is_due_10_years_after_death() -> None:
    assert due_on("mental_health", date_of_death=D(2012, 5, 5)) == D(2022, 5, 5)


def test_gp_record_is_not_due_while_the_patient_lives() -> None:
    result = due("gp", date_of_birth=D(1950, 1, 1), last_seen=D(2001, 1, 1))
    assert result.status == "awaiting_events"
    assert result.awaiting == ("date_of_death",)


def test_gp_record_is_due_10_years_after_death() -> None:
    assert due_on("gp", last_seen=D(2019, 1, 1), date_of_death=D(2019, 12, 31)) == D(2029, 12, 31)


def test_oncology_record_is_due_30_years_from_diagnosis() -> None:
    assert due_on("oncology", diagnosis=D(2005, 7, 7)) == D(2035, 7, 7)


def test_oncology_record_counts_8_years_after_death_when_that_is_later() -> None:
    assert due_on("oncology", diagnosis=D(2005, 7, 7), date_of_death=D(2030, 1, 1)) == D(2038, 1, 1)
    assert due_on("oncology", diagnosis=D(2005, 7, 7), date_of_death=D(2006, 1, 1)) == D(2035, 7, 7)


def test_inquiry_material_is_never_due_whatever_is_recorded() -> None:
    for events in ({}, {"date_of_death": D(1990, 1, 1), "last_seen": D(1980, 1, 1)}):
        result = compute_retain_until(NHS_RECORDS_CODE_2021["inquiry"], events)
        assert result.status == "indefinite"
        assert result.retain_until is None
        assert result.bucket is None


# --- Reuse and combination --------------------------------------------------------------------


def test_a_record_coming_back_into_use_restarts_its_clock() -> None:
    first = due_on("adult", end_of_treatment=D(2015, 3, 10), last_seen=D(2015, 3, 10))
    reused = due_on("adult", end_of_treatment=D(2015, 3, 10), last_seen=D(2021, 10, 2))
    assert (first, reused) == (D(2023, 3, 10), D(2029, 10, 2))


def test_an_earliest_rule_takes_the_first_clause_to_fall_due() -> None:
    sooner = RetentionRule(
        clauses=(
            AfterEvents(period="P20Y", events=("end_of_treatment",)),
            AfterEvents(period="P10Y", events=("date_of_death",)),
        ),
        combine="earliest",
    )
    events = {"end_of_treatment": D(2010, 1, 10), "date_of_death": D(2011, 2, 1)}
    assert compute_retain_until(sooner, events).retain_until == D(2021, 2, 1)
    alive = compute_retain_until(sooner, {"end_of_treatment": D(2010, 1, 10)})
    assert alive.retain_until == D(2030, 1, 10)


def test_an_earliest_trigger_clause_counts_from_the_first_event_recorded() -> None:
    clause = AfterEvents(period="P1Y", events=("diagnosis", "last_seen"), combine="earliest")
    rule = RetentionRule(clauses=(clause,))
    events = {"diagnosis": D(2020, 5, 1), "last_seen": D(2022, 5, 1)}
    assert compute_retain_until(rule, events).retain_until == D(2021, 5, 1)


def test_an_indefinite_clause_wins_a_latest_rule_and_loses_an_earliest_one() -> None:
    clauses = (Indefinite(), AfterEvents(period="P1Y", events=("last_seen",)))
    events = {"last_seen": D(2020, 1, 1)}
    latest = compute_retain_until(RetentionRule(clauses=clauses), events)
    earliest = compute_retain_until(RetentionRule(clauses=clauses, combine="earliest"), events)
    assert latest.status == "indefinite"
    assert earliest.retain_until == D(2021, 1, 1)
    assert compute_retain_until(RetentionRule(clauses=clauses, combine="earliest"), {}).status == (
        "indefinite"
    )


def test_a_due_date_past_the_year_9999_is_reported_as_indefinite() -> None:
    rule = RetentionRule.after("P1000Y", "last_seen")
    assert compute_retain_until(rule, {"last_seen": D(9500, 1, 1)}).status == "indefinite"


def test_events_the_rule_does_not_read_are_ignored() -> None:
    events = {"last_treatment": D(2015, 3, 10), "theatre_list": D(1999, 1, 1)}
    assert due_on("adult", **events) == D(2023, 3, 10)


def test_a_death_recorded_before_the_birth_is_refused_without_naming_the_dates() -> None:
    with pytest.raises(InvalidInputError) as caught:
        due("adult", date_of_birth=D(2000, 1, 1), date_of_death=D(1999, 1, 1))
    assert "1999" not in str(caught.value)
    assert "2000" not in str(caught.value)


@pytest.mark.parametrize(
    "events",
    [
        {"Last_Seen": D(2020, 1, 1)},
        {"last-seen": D(2020, 1, 1)},
        {"": D(2020, 1, 1)},
        {"last_seen": datetime(2020, 1, 1)},
        {"last_seen": "2020-01-01"},
    ],
)
def test_malformed_event_names_and_values_are_refused(events: Mapping[str, date]) -> None:
    with pytest.raises(InvalidInputError):
        compute_retain_until(NHS_RECORDS_CODE_2021["adult"], events)


# --- Rule validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"clauses": []},
        {"clauses": [{"kind": "indefinite"}], "colour": "red"},
        {"clauses": [{"kind": "after_events", "period": "P8Y", "events": []}]},
        {"clauses": [{"kind": "after_events", "period": "P8Y", "events": ["Last_Seen"]}]},
        {"clauses": [{"kind": "after_events", "period": "P8Y", "events": ["a" * 41]}]},
        {"clauses": [{"kind": "after_events", "period": "P8Y", "events": ["x", "x"]}]},
        {"clauses": [{"kind": "after_events", "period": "PT8H", "events": ["x"]}]},
        {
            "clauses": [
                {"kind": "after_events", "period": "P8Y", "events": ["x"], "combine": "mean"}
            ]
        },
        {"clauses": [{"kind": "until_birthday", "age": 25, "extended_age": 26}]},
        {
            "clauses": [
                {"kind": "until_birthday", "age": 25, "extended_age": 24, "extended_from_age": 17}
            ]
        },
        {"clauses": [{"kind": "until_birthday", "age": 25, "age_at": ["date_of_birth"]}]},
        {"clauses": [{"kind": "sometime"}]},
        {"clauses": [{"kind": "indefinite"}], "on_expiry": "shred"},
        {"clauses": [{"kind": "indefinite"}], "requires": ["x", "x"]},
    ],
)
def test_malformed_rules_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RetentionRule.model_validate(data)
    # built by a caller, the same rule is the library's own error (it was pydantic's)
    with pytest.raises(InvalidInputError) as caught:
        RetentionRule(**data)
    assert "input_value" not in str(caught.value) and "P8Y" not in str(caught.value)


@pytest.mark.parametrize(
    ("period", "events", "named"),
    [("P0D", ("last_seen",), "period"), ("PT1H", ("last_seen",), "period"),
     (5, ("last_seen",), "period"), ("P8Y", (), "events"), ("P8Y", ("Last Seen",), "events"),
     ("P8Y", ("x", "x"), "input")],
)
def test_a_bad_one_clause_rule_is_an_invalid_input_error(
    period: object, events: tuple[str, ...], named: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"^invalid input: {named}: "):
        RetentionRule.after(period, *events)  # type: ignore[arg-type]
    assert RetentionRule.after("P8Y", "last_seen") == RetentionRule(
        clauses=({"kind": "after_events", "period": "P8Y", "events": ["last_seen"]},)
    )


@pytest.mark.parametrize(
    "data",
    [{"clauses": [{"kind": "indefinite"}], "self": 1}, {1: 2}, {"clauses": [{"kind": "indefinite"}],
                                                              "data": 1}],
    ids=["self-key", "int-key", "data-key"],
)
def test_rule_json_with_odd_keys_is_an_invalid_input_error_not_a_type_error(
    data: dict[object, object],
) -> None:
    # with a plain custom __init__, pydantic passed the JSON's keys as keyword arguments:
    # "self" collided with the parameter and an int key was not a keyword (TypeError)
    with pytest.raises(InvalidInputError):
        rule_from_json(data)
    with pytest.raises(ValidationError):  # a stored instruction's rule: mapped by the caller
        RetentionRule.model_validate(data)


def test_a_rule_is_frozen() -> None:
    rule = NHS_RECORDS_CODE_2021["adult"]
    with pytest.raises(ValidationError):
        rule.on_expiry = "destroy"


@pytest.mark.parametrize("category", sorted(NHS_RECORDS_CODE_2021))
def test_every_preset_rule_round_trips_through_json_with_iso_periods(category: str) -> None:
    rule = NHS_RECORDS_CODE_2021[category]
    text = rule.model_dump_json()
    assert RetentionRule.model_validate_json(text) == rule
    if category == "adult":
        assert '"period":"P8Y"' in text


def test_a_one_clause_rule_can_be_written_briefly() -> None:
    rule = RetentionRule.after("P10Y", "end_of_treatment", "last_seen", on_expiry="destroy")
    assert rule.clauses == (
        AfterEvents(period=Duration(years=10), events=("end_of_treatment", "last_seen")),
    )
    assert rule.on_expiry == "destroy"
    assert rule.event_names == {"end_of_treatment", "last_seen"}


def test_a_birthday_clause_without_an_extension_is_just_the_birthday() -> None:
    rule = RetentionRule(clauses=(UntilBirthday(age=21),))
    events = {"date_of_birth": D(2001, 6, 1), "end_of_treatment": D(2019, 1, 1)}
    assert compute_retain_until(rule, events).retain_until == D(2022, 6, 1)


# --- Comparing instructions with the minimum --------------------------------------------------

ADULT_TRIGGERS = ("end_of_treatment", "last_treatment", "last_seen", "date_of_death")


def test_seven_years_for_an_adult_record_is_shorter_than_the_minimum() -> None:
    rule = RetentionRule.after("P7Y", *ADULT_TRIGGERS)
    assert is_shorter_than(rule, NHS_RECORDS_CODE_2021["adult"])


def test_ten_years_on_the_same_adult_triggers_is_not_shorter() -> None:
    rule = RetentionRule.after("P10Y", *ADULT_TRIGGERS)
    assert not is_shorter_than(rule, NHS_RECORDS_CODE_2021["adult"])


def test_ten_years_after_treatment_alone_is_shorter_as_a_later_death_restarts_the_minimum() -> None:
    rule = RetentionRule.after("P10Y", "end_of_treatment")
    assert is_shorter_than(rule, NHS_RECORDS_CODE_2021["adult"])


@pytest.mark.parametrize("category", sorted(NHS_RECORDS_CODE_2021))
def test_no_preset_rule_is_shorter_than_itself(category: str) -> None:
    rule = NHS_RECORDS_CODE_2021[category]
    assert not is_shorter_than(rule, rule)
    appraised_copy = RetentionRule.model_validate_json(rule.model_dump_json())
    assert not is_shorter_than(appraised_copy.model_copy(update={"on_expiry": "destroy"}), rule)


def test_any_dated_rule_is_shorter_than_inquiry_material_and_never_due_is_not() -> None:
    inquiry = NHS_RECORDS_CODE_2021["inquiry"]
    assert is_shorter_than(RetentionRule.after("P100Y", "date_of_death"), inquiry)
    assert not is_shorter_than(RetentionRule(clauses=(Indefinite(),)), inquiry)


def test_a_gp_rule_that_can_fall_due_during_the_patients_life_is_shorter() -> None:
    assert is_shorter_than(RetentionRule.after("P100Y", "last_seen"), NHS_RECORDS_CODE_2021["gp"])
    assert not is_shorter_than(
        RetentionRule.after("P15Y", "date_of_death"), NHS_RECORDS_CODE_2021["gp"]
    )


def test_reading_the_codes_or_as_whichever_is_sooner_is_shorter_than_the_preset() -> None:
    preset = NHS_RECORDS_CODE_2021["mental_health"]
    sooner = preset.model_copy(update={"combine": "earliest"})
    assert is_shorter_than(sooner, preset)
    assert not is_shorter_than(preset, sooner)


def test_a_child_rule_ignoring_the_26th_birthday_is_shorter() -> None:
    preset = NHS_RECORDS_CODE_2021["child"]
    only_25 = RetentionRule(
        clauses=(
            UntilBirthday(age=25, age_at=("end_of_treatment", "last_treatment")),
            AfterEvents(period="P8Y", events=("date_of_death",)),
        ),
        requires=("date_of_birth",),
    )
    assert is_shorter_than(only_25, preset)
    always_26 = only_25.model_copy(
        update={"clauses": (UntilBirthday(age=26, age_at=("end_of_treatment", "last_treatment")),)}
    )
    # without the death clause, a child who dies at 20 would be due at 26, not 28
    assert is_shorter_than(always_26, preset)
    assert not is_shorter_than(
        always_26.model_copy(update={"clauses": (*always_26.clauses, *preset.clauses[1:])}), preset
    )


def test_a_rule_computable_where_the_minimum_still_awaits_an_event_is_shorter() -> None:
    preset = NHS_RECORDS_CODE_2021["adult"]
    stricter = preset.model_copy(update={"requires": ("end_of_treatment",)})
    assert is_shorter_than(preset, stricter)
    assert not is_shorter_than(stricter, preset)


def test_histories_always_record_a_date_of_birth_so_requiring_it_changes_nothing() -> None:
    preset = NHS_RECORDS_CODE_2021["child"]
    assert not is_shorter_than(preset.model_copy(update={"requires": ()}), preset)


def test_a_non_standard_trigger_that_can_fire_alone_is_counted_as_shorter() -> None:
    with_last_used = RetentionRule.after("P10Y", *ADULT_TRIGGERS, "last_used")
    assert is_shorter_than(with_last_used, NHS_RECORDS_CODE_2021["adult"])
    only_with_standard = with_last_used.model_copy(update={"requires": ("end_of_treatment",)})
    assert not is_shorter_than(only_with_standard, NHS_RECORDS_CODE_2021["adult"])


@pytest.mark.parametrize(
    ("category", "longer"),
    [
        ("adult_social_care", RetentionRule.after("P9Y", "end_of_support", "last_seen")),
        ("maternity", RetentionRule.after("P30Y", "end_of_care")),
        (
            "oncology",
            RetentionRule(
                clauses=(
                    AfterEvents(period="P30Y1D", events=("diagnosis",)),
                    AfterEvents(period="P10Y", events=("date_of_death",)),
                )
            ),
        ),
    ],
)
def test_lengthening_a_preset_period_is_not_shorter(category: str, longer: RetentionRule) -> None:
    assert not is_shorter_than(longer, NHS_RECORDS_CODE_2021[category])


# --- Coarse months for storage ----------------------------------------------------------------


def test_storage_buckets_are_zero_padded_months() -> None:
    assert due_bucket(D(2027, 6, 1)) == "2027-06"
    assert due_bucket(D(999, 12, 31)) == "0999-12"
    assert due("adult", last_seen=D(2015, 3, 10)).bucket == "2023-03"


def test_the_bucket_bound_includes_the_whole_current_month_and_needs_the_exact_check() -> None:
    bound = bucket_upper_bound(D(2023, 3, 9))
    result = due("adult", last_seen=D(2015, 3, 10))
    assert bound == "2023-03"
    assert result.bucket is not None and result.bucket <= bound  # a candidate...
    assert not result.is_due(D(2023, 3, 9))  # ...but not yet due
    assert result.is_due(D(2023, 3, 10))


def test_buckets_refuse_datetimes() -> None:
    with pytest.raises(InvalidInputError):
        due_bucket(datetime(2020, 1, 1))


@given(days, days)
def test_bucket_order_follows_date_order(a: date, b: date) -> None:
    earlier, later = sorted((a, b))
    assert due_bucket(earlier) <= due_bucket(later)


@given(days, days)
def test_everything_due_by_a_day_lies_within_its_bucket_bound(due_day: date, as_of: date) -> None:
    if due_day <= as_of:
        assert due_bucket(due_day) <= bucket_upper_bound(as_of)


# --- Properties of the preset -----------------------------------------------------------------

TRIGGERS = sorted(STANDARD_EVENTS - {"date_of_birth"})


@st.composite
def histories(draw: st.DrawFn) -> dict[str, date]:
    events = draw(st.dictionaries(st.sampled_from(sorted(STANDARD_EVENTS)), days))
    born, died = events.get("date_of_birth"), events.get("date_of_death")
    if born is not None and died is not None and died < born:
        events["date_of_birth"], events["date_of_death"] = died, born
    return events


@given(
    st.sampled_from(sorted(NHS_RECORDS_CODE_2021)),
    histories(),
    st.sampled_from(TRIGGERS),
    st.integers(0, 30000),
)
def test_in_every_preset_a_newer_or_added_event_never_brings_the_due_date_forward(
    category: str, events: dict[str, date], name: str, shift: int
) -> None:
    rule = NHS_RECORDS_CODE_2021[category]
    before = compute_retain_until(rule, events)
    base = events.get(name, events.get("date_of_birth", D(1900, 1, 1)))
    after = compute_retain_until(rule, {**events, name: base + timedelta(days=shift)})
    if before.retain_until is not None:
        assert after.status != "awaiting_events"
        if after.retain_until is not None:
            assert after.retain_until >= before.retain_until


@given(st.sampled_from(sorted(NHS_RECORDS_CODE_2021)), histories())
def test_every_preset_gives_an_answer_for_any_consistent_history(
    category: str, events: dict[str, date]
) -> None:
    result = compute_retain_until(NHS_RECORDS_CODE_2021[category], events)
    assert (result.status == "due") == (result.retain_until is not None)
    if result.retain_until is not None:
        assert result.retain_until > min(events.values())


@given(
    st.dates(min_value=D(1900, 1, 1), max_value=D(2100, 12, 31)),
    st.integers(0, 40 * 366),
)
def test_a_child_record_always_falls_due_on_the_25th_or_26th_birthday_while_alive(
    born: date, age_in_days: int
) -> None:
    events = {"date_of_birth": born, "end_of_treatment": born + timedelta(days=age_in_days)}
    result = compute_retain_until(NHS_RECORDS_CODE_2021["child"], events)
    assert result.retain_until in {add_duration(born, "P25Y"), add_duration(born, "P26Y")}
