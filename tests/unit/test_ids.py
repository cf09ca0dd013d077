"""Identifier validation: NHS numbers (Modulus 11), hospital numbers, controller ids and
record ids. Nothing that is not of the safe form may pass, because ids become blob names."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from mizaic_processor import HospitalNumber, InvalidInputError, NHSNumber
from mizaic_processor._core import ids

# -- an independent Modulus 11 oracle ------------------------------------------------------------


def check_digit(first_nine: str) -> int:
    """NHS Modulus 11: weights 10..2, 11 - (sum mod 11); 11 -> 0; 10 means no valid number."""
    total = sum(int(d) * w for d, w in zip(first_nine, range(10, 1, -1), strict=True))
    check = 11 - total % 11
    return 0 if check == 11 else check


nine_digits = st.text(alphabet="0123456789", min_size=9, max_size=9)


# -- NHS numbers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["9434765919", "4010232137", "1000000060"])
def test_valid_nhs_numbers_pass(value: str) -> None:
    assert ids.nhs_number(value) == value
    assert check_digit(value[:9]) == int(value[9])


@pytest.mark.parametrize("last", "0123456789")
def test_a_number_whose_check_digit_would_be_10_is_never_valid(last: str) -> None:
    assert check_digit("100000001") == 10
    with pytest.raises(InvalidInputError):
        ids.nhs_number("100000001" + last)


def test_a_check_value_of_11_means_check_digit_0() -> None:
    assert check_digit("100000006") == 0
    assert ids.nhs_number("1000000060") == "1000000060"
    with pytest.raises(InvalidInputError):
        ids.nhs_number("1000000061")


@pytest.mark.parametrize("wrong", "012345678")
def test_every_wrong_check_digit_is_refused(wrong: str) -> None:
    with pytest.raises(InvalidInputError):
        ids.nhs_number("943476591" + wrong)


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        ("943 476 5919", "9434765919"),
        ("943-476-5919", "9434765919"),
        (" 9434765919 ", "9434765919"),
        (123456789, "0123456789"),  # an int loses a leading zero: it is padded back
        ("\t943 476 5919\n", "9434765919"),
        (9434765919, "9434765919"),
        ("401 023 2137", "4010232137"),
    ],
)
def test_nhs_numbers_are_normalised_to_ten_digits(value: str | int, normalised: str) -> None:
    assert ids.nhs_number(value) == normalised
    assert NHSNumber(value).value == normalised


@pytest.mark.parametrize(
    "value",
    [
        "", "943476591", "94347659190", "943 476 591", "943.476.5919", "943/476/5919",
        "943_476_5919", "94347659l9", "+449434765919",
        "\uff19\uff14\uff13\uff14\uff17\uff16\uff15\uff19\uff11\uff19",
        "\u0669\u0664\u0663\u0664\u0667\u0666\u0665\u0669\u0661\u0669",
        "9434765919\x00", None, True, 9434765919.0, b"9434765919", ["9434765919"],
        10**10, 94347659190,
    ],
)
def test_malformed_nhs_numbers_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        ids.nhs_number(value)
    with pytest.raises(InvalidInputError):
        NHSNumber(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [-9434765919, "-9434765919", "9434765919-", "--9434765919"])
def test_nhs_numbers_with_a_sign_or_dangling_hyphen_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        ids.nhs_number(value)


@given(nine_digits)
def test_modulus_11_agrees_with_the_oracle_for_every_prefix(prefix: str) -> None:
    expected = check_digit(prefix)
    for last in "0123456789":
        number = prefix + last
        if expected != 10 and int(last) == expected:
            assert ids.nhs_number(number) == number
            assert ids.nhs_number(f"{number[:3]} {number[3:6]} {number[6:]}") == number
        else:
            with pytest.raises(InvalidInputError):
                ids.nhs_number(number)


def test_nhs_number_objects_compare_by_normalised_value_and_hide_it() -> None:
    a, b, c = NHSNumber("943 476 5919"), NHSNumber("943-476-5919"), NHSNumber(9434765919)
    assert a == b == c
    assert len({a, b, c}) == 1
    assert NHSNumber("4010232137") != a
    for text in (repr(a), str(a), f"{a}"):
        assert "943" not in text and "5919" not in text
    assert a.kind == "nhs"


# -- hospital numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "normalised"),
    [
        (" rj1/0042 ", "RJ1/0042"),
        ("mrn-1", "MRN-1"),
        ("A", "A"),
        ("9434765919", "9434765919"),
        ("A" * 32, "A" * 32),
        ("k1/2-3", "K1/2-3"),
    ],
)
def test_hospital_numbers_are_stripped_and_upper_cased(value: str, normalised: str) -> None:
    assert ids.hospital_number(value) == normalised
    assert HospitalNumber(value) == HospitalNumber(normalised)


@pytest.mark.parametrize(
    "value",
    ["", "   ", "A B", "A_B", "A.B", "-A", "A-", "/A", "A/", "A" * 33, "../A", "A\nB", "A\x00",
     None, 12345, b"A1"],
)
def test_malformed_hospital_numbers_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        ids.hospital_number(value)


def test_hospital_and_nhs_numbers_of_the_same_digits_are_different_subjects() -> None:
    assert HospitalNumber("9434765919") != NHSNumber("9434765919")
    assert HospitalNumber("9434765919").kind != NHSNumber("9434765919").kind


@pytest.mark.parametrize("value", ["\u00df1", "\u0131123", "\ufb019"])
def test_non_ascii_hospital_numbers_are_refused_not_folded_to_ascii(value: str) -> None:
    with pytest.raises(InvalidInputError):
        ids.hospital_number(value)


# -- controller ids --------------------------------------------------------------------------------

# Azure container names: 3-63 characters; lower-case letters, digits and hyphens; start and
# end with a letter or digit; no two hyphens in a row.
AZURE_CONTAINER = re.compile(r"(?=.{3,63}\Z)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*")
SAFE_CONTROLLER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){1,39}")


@pytest.mark.parametrize(
    ("value", "normalised"),
    [("rj1", "rj1"), ("RJ1", "rj1"), ("ab", "ab"), ("a" * 40, "a" * 40),
     ("nhs-trust-1", "nhs-trust-1"), ("0-0", "0-0")],
)
def test_valid_controller_ids_are_lower_cased(value: str, normalised: str) -> None:
    assert ids.controller_id(value) == normalised
    assert ids.container_name(value) == "mzc-" + normalised
    assert AZURE_CONTAINER.fullmatch(ids.container_name(value))


@pytest.mark.parametrize(
    "value",
    ["", "a", "a" * 41, "-ab", "ab-", "a--b", "a_b", "a.b", "a b", "../ab", "ab/c", "ab\n",
     " ab", "ab\x00", "mizaic registry", None, 12, b"ab", "\u00e91"],
)
def test_malformed_controller_ids_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        ids.controller_id(value)
    with pytest.raises(InvalidInputError):
        ids.container_name(value)  # type: ignore[arg-type]


@given(st.from_regex(SAFE_CONTROLLER, fullmatch=True))
def test_every_valid_controller_id_makes_a_valid_azure_container_name(value: str) -> None:
    name = ids.container_name(value)
    assert AZURE_CONTAINER.fullmatch(name)
    assert name != ids.REGISTRY_CONTAINER


@given(st.text(max_size=60))
def test_arbitrary_text_passes_as_a_controller_id_only_in_the_safe_form(text: str) -> None:
    try:
        result = ids.controller_id(text)
    except InvalidInputError:
        if text.isascii():
            assert SAFE_CONTROLLER.fullmatch(text.lower()) is None
        return
    assert SAFE_CONTROLLER.fullmatch(result)
    assert result.isascii()
    assert result == text.lower()


@given(st.from_regex(r"[a-zA-Z0-9-]{0,45}", fullmatch=True))
def test_ascii_text_passes_as_a_controller_id_exactly_when_it_is_safe(text: str) -> None:
    safe = SAFE_CONTROLLER.fullmatch(text.lower()) is not None
    try:
        ids.controller_id(text)
    except InvalidInputError:
        assert not safe
    else:
        assert safe


def test_non_ascii_controller_ids_are_refused() -> None:
    with pytest.raises(InvalidInputError):
        ids.controller_id("\u212a1")


# -- record ids ------------------------------------------------------------------------------------

SAFE_RECORD = re.compile(r"r[a-z2-7]{52}")


def test_issued_record_ids_are_valid_and_carry_the_subject_key_id() -> None:
    skid, suffix = bytes(range(16)), bytes(range(16, 32))
    rid = ids.make_record_id(skid, suffix)
    assert ids.record_id(rid) == rid
    assert SAFE_RECORD.fullmatch(rid)
    assert ids.skid_of_record(rid) == ids.b32(skid)


@pytest.mark.parametrize(
    "value",
    [
        "../x", "r" + "%2F" * 52, "r" + "a" * 26 + "/" + "a" * 25, "r" + "a" * 51 + "/",
        "r" + "a" * 51 + ".", "r" + "a" * 50 + "..", "", "r", "r" + "a" * 51, "r" + "a" * 53,
        "R" + "a" * 52, "r" + "A" * 52, "r" + "1" * 52, "r" + "8" * 52, "s" + "a" * 52,
        "r" + "a" * 52 + "\n", "\nr" + "a" * 52, " r" + "a" * 52, "r" + "a" * 51 + "\x00",
        "r" + "a" * 51 + "\u00e9", "r" + "\uff41" * 52, None, 5, b"r" + b"a" * 52,
    ],
)
def test_malformed_record_ids_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        ids.record_id(value)


@given(st.text(max_size=60))
def test_arbitrary_text_never_passes_as_a_record_id_unless_safe(text: str) -> None:
    try:
        result = ids.record_id(text)
    except InvalidInputError:
        assert SAFE_RECORD.fullmatch(text) is None
    else:
        assert result == text
        assert SAFE_RECORD.fullmatch(text)


@given(st.from_regex(SAFE_RECORD, fullmatch=True), st.integers(0, 52), st.characters())
def test_any_single_character_change_to_a_record_id_is_refused_unless_still_safe(
    rid: str, index: int, char: str
) -> None:
    changed = rid[:index] + char + rid[index + 1 :]
    assume(changed != rid)
    if SAFE_RECORD.fullmatch(changed):
        assert ids.record_id(changed) == changed
    else:
        with pytest.raises(InvalidInputError):
            ids.record_id(changed)


# -- other names that reach storage ------------------------------------------------------------


@pytest.mark.parametrize("value", ["$meta", "$content", "", "1a", "a b", "a/b", "a" * 129, None])
def test_reserved_or_malformed_field_names_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        ids.field_name(value)


@pytest.mark.parametrize("value", ["hiv_status", "A.b-c_d", "_x", "a" * 128])
def test_field_names_of_the_safe_form_pass(value: str) -> None:
    assert ids.field_name(value) == value


@pytest.mark.parametrize("value", ["Adult", "adult care", "", "a" * 41, "1adult", "../x", None])
def test_malformed_category_codes_are_refused(value: object) -> None:
    with pytest.raises(InvalidInputError):
        ids.category(value)
