"""Hostile input at every public entry point, against a real Azurite (DESIGN §2.8, §4;
issue 5 item 6).

Every bad input raises a MizaicError subclass (InvalidInputError, ResidencyError,
ConfigurationError) whose message does not repeat the input, and changes nothing: for
validation that must happen before any I/O the processor sends no request at all, and the
whole storage account (every container, every blob name and etag) is identical before and
after each test's examples. Path-like identifiers (``../``, ``%2F``, ``..%2f``, fullwidth
solidus, U+2215, RTL marks, NUL, case-folding look-alikes, very long names) cannot reach a
blob name, so they cannot escape the controller's container.

Each test draws its examples inside the test body (an inner ``@given`` function), so the
function-scoped ``processor`` fixture and the storage snapshot wrap all of them.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mizaic_processor import (
    Actor,
    ConfigurationError,
    ControllerScope,
    HospitalNumber,
    InvalidInputError,
    KeyManagementError,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    Processor,
    RecordRef,
    ResidencyError,
    Settings,
    StorageError,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
NHS = "9434765919"
PDF = "application/pdf"

FUZZ = settings(
    max_examples=50, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Tokens no identifier may contain. Each is outside every identifier alphabet, so any
# string holding one is invalid whatever it is spliced into.
PATH_TOKENS = [
    "../", "..\\", "/", "\\", "%2F", "%2f", "..%2f", "%2e%2e%2f", "%00", "?", "#", "*", ":",
]
UNICODE_TOKENS = [
    "\uff0f",  # fullwidth solidus
    "\u2215",  # division slash
    "\u2044",  # fraction slash
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u200b",  # zero-width space
    "\x00",  # NUL
    "\u0430",  # Cyrillic a
    "\uff41",  # fullwidth a
    "\u212a",  # Kelvin sign: lower() is an ASCII k
    "\u0131",  # dotless i: upper() is an ASCII I
    "\u017f",  # long s: upper() is an ASCII S
    "\u00df",  # sharp s: upper() is SS
    "\ufb01",  # fi ligature: upper() is FI
    "\u0130",  # I with dot above
]
INNER_SPACE_TOKENS = ["\n", "\t", " ", "\r\n"]
TOKENS = PATH_TOKENS + UNICODE_TOKENS + INNER_SPACE_TOKENS


def spliced(base: st.SearchStrategy[str], tokens: list[str]) -> st.SearchStrategy[str]:
    """``base`` with one hostile token inserted somewhere inside it."""
    return st.builds(
        lambda text, token, where: text[: where % (len(text) + 1)] + token
        + text[where % (len(text) + 1):],
        base, st.sampled_from(tokens), st.integers(min_value=0, max_value=200),
    )


def hostile(alphabet: str, max_len: int, tokens: list[str] = TOKENS) -> st.SearchStrategy[str]:
    """Invalid identifiers over a valid ``alphabet``: a token spliced in, or too long."""
    base = st.text(alphabet=alphabet, min_size=1, max_size=12)
    too_long = st.integers(min_value=max_len + 1, max_value=max_len + 5000).map(
        lambda n: (alphabet * (n // len(alphabet) + 1))[:n]
    )
    return st.one_of(spliced(base, tokens), too_long, st.just(""))


LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
controller_ids = hostile(LOWER + "ABC", 40)
actor_ids = hostile(LOWER + "ABC._@-", 128)
categories = hostile("abcdefghij_0123", 40)
event_names = hostile("abcdefghij_0123", 40)
field_names = hostile(LOWER + "ABC_.-", 128)
record_ids = st.one_of(
    spliced(st.just("r" + "a" * 52), TOKENS),
    st.just("r" + "a" * 51), st.just("r" + "a" * 53), st.just("R" + "A" * 52),
    st.just("r" + "a" * 51 + "1"), st.text(max_size=60).filter(lambda s: len(s) != 53),
)
non_strings = st.one_of(
    st.none(), st.integers(), st.floats(), st.binary(max_size=8), st.just(["abc"]),
    st.just(("abc",)), st.just({"abc"}), st.just(object()),
)


def deep(levels: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(levels):
        value = [value]
    return value


bad_values = st.one_of(
    st.binary(min_size=1, max_size=16),
    st.frozensets(st.integers(), min_size=1, max_size=3),
    st.sets(st.integers(), min_size=1, max_size=3),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.just(10**5000),
    st.just(-(10**4400)),
    st.just(deep(100_000)),
    st.just(object()),
    st.just(1j),
    st.just(dt.date(2020, 1, 1)),
    st.just({"nested": {"deeper": b"bytes"}}),
    st.just({"nested": [1, 2, {3: "non-string key"}]}),
    st.just({"nested": [1, math.nan]}),
    st.just(io.BytesIO(b"not a value")),
)
bad_content = st.one_of(
    st.text(min_size=1, max_size=20),
    st.integers(),
    st.floats(allow_nan=False),
    st.just(object()),
    st.just([b"chunk"]),
    st.just(io.StringIO("text, not bytes")),
    st.just({"read": b"a dict is not a stream"}),
)


def message_of(exc: BaseException) -> str:
    return f"{exc!s} {exc!r}"


def assert_refused(
    call: Callable[[], object], bad: object, kinds: type[MizaicError] = InvalidInputError
) -> None:
    """``call`` raises ``kinds`` (a MizaicError) and the message does not repeat ``bad``."""
    with pytest.raises(MizaicError) as caught:
        call()
    assert isinstance(caught.value, kinds), repr(caught.value)
    # (shorter inputs can be words of the message itself: "pdf" in "application/pdf")
    if isinstance(bad, str) and len(bad) >= 6:
        assert bad not in message_of(caught.value)


@dataclass
class World:
    proc: Processor
    cid: str
    service: ControllerScope
    admin: ControllerScope
    ref: RecordRef
    snapshot: Callable[[], dict[str, str]]
    io_expected: bool = False  # set by a test whose refusal legitimately needs I/O


def storage_snapshot(conn: str) -> dict[str, str]:
    with BlobServiceClient.from_connection_string(conn) as service:
        return {
            f"{container.name}/{blob.name}": str(blob.etag)
            for container in service.list_containers()
            for blob in service.get_container_client(container.name).list_blobs()
        }


@pytest.fixture
def world(processor: Processor, azurite: AzuriteServer) -> Iterator[World]:
    cid = "fz" + uuid.uuid4().hex[:12]
    processor.register_controller(cid, name="Fuzz Trust", actor=OPERATOR)
    service = processor.tenant(cid, actor=SERVICE)
    admin = processor.tenant(cid, actor=ADMIN)
    ref = service.create_record(NHSNumber(NHS), category="adult", fields={"bp": 120},
                                content=b"doc", content_type=PDF)
    processor.tenant(cid, actor=ADMIN).audit.verify()  # seal: no checkpoint lands later
    conn = azurite.connection_string
    world = World(processor, cid, service, admin, ref, lambda: storage_snapshot(conn))
    before = world.snapshot()
    yield world
    if not world.io_expected:
        assert world.snapshot() == before, "a refused input changed storage"


def no_io(world: World, call: Callable[[], object], bad: object,
          kinds: type[MizaicError] = InvalidInputError) -> None:
    """Refused before the first request to Azure."""
    requests = world.proc.request_count
    assert_refused(call, bad, kinds)
    assert world.proc.request_count == requests


# -- identifiers ----------------------------------------------------------------------------


def test_hostile_controller_ids_are_refused_before_any_request(world: World) -> None:
    @FUZZ
    @given(controller_ids)
    def check(bad: str) -> None:
        no_io(world, lambda: world.proc.register_controller(bad, name="X", actor=OPERATOR), bad)
        no_io(world, lambda: world.proc.tenant(bad, actor=SERVICE), bad)
        no_io(world, lambda: world.proc.get_controller(bad), bad)

    check()


def test_hostile_actor_ids_are_refused(world: World) -> None:
    @FUZZ
    @given(actor_ids)
    def check(bad: str) -> None:
        for make in (Actor.service, Actor.controller_admin, Actor.processor_operator):
            no_io(world, lambda make=make: make(bad), bad)

    check()


def test_constructing_an_actor_directly_with_a_bad_id_raises_invalid_input_error() -> None:
    bad = "../../mzc-other-trust"
    with pytest.raises(InvalidInputError) as caught:
        Actor(id=bad, role="service")
    assert bad not in str(caught.value)


def test_hostile_record_ids_are_refused_by_every_record_operation(world: World) -> None:
    @FUZZ
    @given(st.one_of(record_ids, non_strings))
    def check(bad: Any) -> None:
        no_io(world, lambda: world.service.get_record(bad), bad)
        no_io(world, lambda: world.service.get_record(bad, fields=["bp"]), bad)
        no_io(world, lambda: world.service.open_content(bad), bad)
        no_io(world, lambda: world.service.update_record(bad, etag=world.ref.etag), bad)
        no_io(world, lambda: world.admin.delete_record(bad, instruction_id="i" + "a" * 26),
              bad)
        no_io(world, lambda: world.admin.create_instruction("deletion", record_ids=[bad]),
              bad)

    check()


def test_hostile_instruction_ids_are_refused_before_any_request(world: World) -> None:
    @FUZZ
    @given(st.one_of(hostile(LOWER, 27), non_strings))
    def check(bad: Any) -> None:
        no_io(world, lambda: world.admin.delete_record(world.ref.record_id,
                                                      instruction_id=bad), bad)

    check()


def test_hostile_field_names_are_refused_by_create_read_and_update(world: World) -> None:
    @FUZZ
    @given(st.one_of(field_names, st.just("$where"), non_strings.filter(
        lambda v: isinstance(v, str | int | float | type(None)))))
    def check(bad: Any) -> None:
        rid, etag = world.ref.record_id, world.ref.etag
        if isinstance(bad, str):
            no_io(world, lambda: world.service.create_record(
                NHSNumber(NHS), category="adult", fields={bad: 1}), bad)
            no_io(world, lambda: world.service.update_record(rid, etag=etag, fields={bad: 1}),
                  bad)
        no_io(world, lambda: world.service.get_record(rid, fields=[bad]), bad)
        no_io(world, lambda: world.service.update_record(rid, etag=etag, remove_fields=[bad]),
              bad)

    check()


def test_hostile_categories_and_event_names_are_refused(world: World) -> None:
    @FUZZ
    @given(categories, event_names)
    def check(category: str, event: str) -> None:
        no_io(world, lambda: world.service.create_record(NHSNumber(NHS), category=category),
              category)
        no_io(world, lambda: world.service.create_record(
            NHSNumber(NHS), category="adult", events={event: dt.date(2024, 1, 1)}), event)
        no_io(world, lambda: world.service.update_record(
            world.ref.record_id, etag=world.ref.etag, events={event: dt.date(2024, 1, 1)}),
              event)

    check()


def test_event_values_that_are_not_dates_are_refused(world: World) -> None:
    @FUZZ
    @given(st.one_of(
        st.datetimes(timezones=st.just(dt.UTC)), st.text(max_size=12), st.integers(),
        st.none(), st.just("2024-01-01"),
    ))
    def check(bad: Any) -> None:
        no_io(world, lambda: world.service.create_record(
            NHSNumber(NHS), category="adult", events={"last_seen": bad}), bad)

    check()


def test_hostile_subject_identifiers_are_refused(world: World) -> None:
    nhs_like = spliced(st.text(alphabet="0123456789", min_size=1, max_size=10),
                       PATH_TOKENS + UNICODE_TOKENS + ["+", "-", "--"])
    hospital_like = spliced(st.text(alphabet="ABC123/-", min_size=1, max_size=12),
                            [t for t in TOKENS if t not in ("/", " ", "\n", "\t", "\r\n")])

    @FUZZ
    @given(st.one_of(nhs_like, st.just("9434765918"), st.just("943476591"),
                     st.just("\uff19434765919"), st.just("943 476 591 9")),
           st.one_of(hospital_like, st.just("A" * 33), st.just(""), st.just("-A")),
           st.one_of(st.text(max_size=12), st.integers(), st.none()))
    def check(nhs: str, hospital: str, raw: Any) -> None:
        no_io(world, lambda: NHSNumber(nhs), nhs)
        no_io(world, lambda: HospitalNumber(hospital), hospital)
        # a plain string or number is not a subject identifier
        no_io(world, lambda: world.service.create_record(raw, category="adult"), raw)
        no_io(world, lambda: world.service.list_records(raw), raw)
        no_io(world, lambda: world.service.subject_exists(raw), raw)

    check()


# -- values and content ---------------------------------------------------------------------


def test_field_values_that_are_not_json_are_refused_before_any_request(world: World) -> None:
    @FUZZ
    @given(bad_values)
    def check(bad: Any) -> None:
        no_io(world, lambda: world.service.create_record(
            NHSNumber(NHS), category="adult", fields={"value": bad}), bad)
        no_io(world, lambda: world.service.update_record(
            world.ref.record_id, etag=world.ref.etag, fields={"value": bad}), bad)

    check()


def test_a_refused_field_value_is_not_repeated_in_the_error_message(world: World) -> None:
    secret = "penicillin-anaphylaxis"

    @FUZZ
    @given(st.sampled_from([
        {secret: b"x"}, {"a": {secret: object()}}, [secret, math.nan], {secret: {1, 2}},
        {"a": [{secret: 1j}]}, {"a": {secret: 10**5000}},
    ]))
    def check(bad: Any) -> None:
        with pytest.raises(InvalidInputError) as caught:
            world.service.create_record(
                NHSNumber(NHS), category="adult", fields={"allergy_note": bad})
        assert secret not in message_of(caught.value)
        assert "allergy_note" not in message_of(caught.value)

    check()


def test_content_that_is_not_bytes_or_a_binary_stream_is_refused(world: World) -> None:
    @FUZZ
    @given(bad_content)
    def check(bad: Any) -> None:
        no_io(world, lambda: world.service.create_record(
            NHSNumber(NHS), category="adult", content=bad, content_type=PDF), bad)
        no_io(world, lambda: world.service.update_record(
            world.ref.record_id, etag=world.ref.etag, content=bad, content_type=PDF), bad)

    check()


def test_hostile_content_types_are_refused(world: World) -> None:
    tokens = [t for t in TOKENS if t != "\u212a"]  # see the next test

    @FUZZ
    @given(st.one_of(spliced(st.just("application/pdf"), tokens), st.just("pdf"),
                     st.just(""), st.just("a" * 200 + "/pdf"), non_strings))
    def check(bad: Any) -> None:
        no_io(world, lambda: world.service.create_record(
            NHSNumber(NHS), category="adult", content=b"doc", content_type=bad), bad)

    check()


def test_a_content_type_with_a_case_folding_look_alike_is_refused(world: World) -> None:
    no_io(world, lambda: world.service.create_record(
        NHSNumber(NHS), category="adult", content=b"doc", content_type="application/pd\u212af"),
        "application/pd\u212af")


class _TurnsToText(io.RawIOBase):
    """A stream that passes a probe, then yields text."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> Any:
        self.calls += 1
        return b"" if size == 0 else "text, not bytes"


def test_a_stream_that_turns_out_to_yield_text_leaves_no_record_or_content(
    world: World,
) -> None:
    world.io_expected = True  # the stream is only found out while uploading
    before = {n for n in world.snapshot() if "/records/" in n or "/content/" in n}

    with pytest.raises(InvalidInputError):
        world.service.create_record(NHSNumber(NHS), category="adult", content=_TurnsToText(),
                                    content_type=PDF)

    after = {n for n in world.snapshot() if "/records/" in n or "/content/" in n}
    assert after == before
    assert list(world.service.list_records(NHSNumber(NHS))) == [world.ref.record_id]
    world.admin.audit.verify()  # the refused attempt is recorded and sealed like any other


# -- processor options and settings ----------------------------------------------------------


def test_non_uk_regions_are_refused_with_residency_error_before_any_request(
    world: World, azurite: AzuriteServer
) -> None:
    regions = st.one_of(
        st.sampled_from(["eastus", "westeurope", "UKSOUTH", "uksouth ", " ukwest", "uk-south",
                         "uksouth\x00", "ukso\u0445th", "northeurope", "global", ""]),
        st.text(max_size=12).filter(lambda r: r not in ("uksouth", "ukwest")),
        non_strings.filter(lambda r: r is not None),  # None means "the processor's region"
    )

    @FUZZ
    @given(regions)
    def check(bad: Any) -> None:
        # the message names the allowed regions, so an input that holds one is not checked
        shown = None if isinstance(bad, str) and ("uksouth" in bad or "ukwest" in bad) else bad
        assert_refused(lambda: Processor.from_connection_string(
            azurite.connection_string, region=bad, keyring=LocalKeyring.generate()),
            shown, ResidencyError)
        assert_refused(lambda: Processor("https://example.invalid", object(), region=bad,
                                         keyring=LocalKeyring.generate()), shown,
                       ResidencyError)
        no_io(world, lambda: world.proc.register_controller(
            "fz" + uuid.uuid4().hex[:12], name="X", actor=OPERATOR, region=bad),
              shown, ResidencyError)

    check()


def test_out_of_range_processor_options_are_refused(azurite: AzuriteServer) -> None:
    options = st.one_of(
        st.fixed_dictionaries({"retry_total": st.one_of(
            st.integers(max_value=-1), st.integers(min_value=21), st.floats(), st.text(max_size=3),
            st.none())}),
        st.fixed_dictionaries({"retry_backoff": st.one_of(
            st.floats(max_value=-0.001), st.floats(min_value=61), st.sampled_from(
                [math.nan, math.inf]), st.text(max_size=3), st.none())}),
        st.fixed_dictionaries({"key_cache_ttl": st.one_of(
            st.floats(max_value=0), st.floats(min_value=3601), st.just(math.nan),
            st.text(max_size=3))}),
        st.fixed_dictionaries({"chunk_size": st.one_of(
            st.integers(max_value=0), st.integers(min_value=2**40), st.floats(),
            st.text(max_size=3))}),
        st.fixed_dictionaries({"keyring": st.one_of(non_strings, st.text(max_size=3))}),
    )

    @FUZZ
    @given(options)
    def check(option: dict[str, Any]) -> None:
        kwargs: dict[str, Any] = {"region": "uksouth", "keyring": LocalKeyring.generate()}
        kwargs.update(option)
        with pytest.raises(InvalidInputError):
            Processor.from_connection_string(azurite.connection_string, **kwargs)

    check()


def test_malformed_connection_strings_are_refused_with_a_library_error() -> None:
    # (a well-formed string with a bad key is only found out at the first request, where
    # it is a StorageError: see the next test)
    @FUZZ
    @given(st.one_of(st.text(max_size=40), non_strings))
    def check(bad: Any) -> None:
        with pytest.raises(MizaicError) as caught:
            Processor.from_connection_string(bad, region="uksouth",
                                             keyring=LocalKeyring.generate())
        if isinstance(bad, str) and len(bad) >= 6:
            assert bad not in message_of(caught.value)

    check()


def test_a_connection_string_with_a_malformed_key_fails_its_first_request_with_storage_error(
) -> None:
    proc = Processor.from_connection_string(
        "DefaultEndpointsProtocol=http;AccountName=x;AccountKey=%%%;"
        "BlobEndpoint=http://127.0.0.1:9/x;", region="uksouth",
        keyring=LocalKeyring.generate(), retry_total=0,
    )
    with proc, pytest.raises(StorageError) as caught:
        proc.get_controller("rj1")
    assert "%%%" not in message_of(caught.value)


# ConfigurationError (incl. ResidencyError) for settings; InvalidInputError where a value
# parses but is out of range for the Processor; KeyManagementError for a keyring file that
# is not a keyring.
_SETTINGS_ERRORS = (ConfigurationError, InvalidInputError, KeyManagementError)


def test_bad_settings_from_the_environment_give_configuration_errors(tmp_path: Path) -> None:
    envs = st.one_of(
        st.fixed_dictionaries({"MIZAIC_REGION": st.one_of(
            st.sampled_from(["eastus", "UKSOUTH", "uk south", "westeurope"]),
            st.text(alphabet="abcdefuksothw%/.", max_size=10).filter(
                lambda r: r not in ("uksouth", "ukwest")))}),
        st.fixed_dictionaries({
            "MIZAIC_REGION": st.just("uksouth"),
            "MIZAIC_CONNECTION_STRING": st.just("UseDevelopmentStorage=true"),
            "MIZAIC_LOCAL_KEYRING_PATH": st.just(str(tmp_path / "ring.json")),
            "MIZAIC_RETRY_TOTAL": st.sampled_from(["-1", "21", "many", "1e9", "../"]),
        }),
        st.fixed_dictionaries({
            "MIZAIC_REGION": st.just("uksouth"),
            "MIZAIC_CONNECTION_STRING": st.just("UseDevelopmentStorage=true"),
            "MIZAIC_LOCAL_KEYRING_PATH": st.just(str(tmp_path / "ring.json")),
            "MIZAIC_RETRY_BACKOFF": st.sampled_from(["-1", "nan", "inf", "soon", "%2F"]),
        }),
        st.fixed_dictionaries({
            "MIZAIC_REGION": st.just("uksouth"),
            "MIZAIC_CONNECTION_STRING": st.just("UseDevelopmentStorage=true"),
            "MIZAIC_LOCAL_KEYRING_PATH": st.just(str(tmp_path / "ring.json")),
            "MIZAIC_KEY_CACHE_TTL": st.sampled_from(["0", "-5", "nan", "99999", "later"]),
        }),
        st.fixed_dictionaries({
            "MIZAIC_REGION": st.just("uksouth"),
            "MIZAIC_KEYRING": st.sampled_from(["vault", "LOCAL", "../local", "keyvault"]),
            "MIZAIC_CONNECTION_STRING": st.just("UseDevelopmentStorage=true"),
        }),
        st.fixed_dictionaries({"MIZAIC_REGION": st.just("uksouth")}),  # no endpoint, no ring
        st.fixed_dictionaries({
            "MIZAIC_REGION": st.just("uksouth"),
            "MIZAIC_CONNECTION_STRING": st.just("UseDevelopmentStorage=true"),
            "MIZAIC_LOCAL_KEYRING_PATH": st.just(str(tmp_path / "not-a-ring.json")),
        }),
    )
    (tmp_path / "not-a-ring.json").write_text('{"format": "something else"}')

    @FUZZ
    @given(envs)
    def check(env: dict[str, str]) -> None:
        with pytest.MonkeyPatch.context() as mp:
            for name in list(os.environ):
                if name.startswith("MIZAIC_"):
                    mp.delenv(name)
            for name, value in env.items():
                mp.setenv(name, value)
            with pytest.raises(MizaicError) as caught:
                Processor.from_settings(Settings.load())
        assert isinstance(caught.value, _SETTINGS_ERRORS)
        for value in env.values():
            if len(value) >= 6 and value not in (
                "uksouth", "keyvault", "UseDevelopmentStorage=true"
            ):
                assert value not in message_of(caught.value)

    check()


# -- audit queries --------------------------------------------------------------------------


def test_malformed_audit_query_filters_are_refused(world: World) -> None:
    @FUZZ
    @given(st.one_of(
        st.fixed_dictionaries({"since": st.one_of(st.datetimes(), st.dates(), st.text(max_size=5),
                                                  st.integers())}),
        st.fixed_dictionaries({"until": st.one_of(st.datetimes(), st.text(max_size=5))}),
        st.fixed_dictionaries({"actor": st.one_of(st.integers(), st.binary(max_size=3),
                                                  st.just(["a"]))}),
        st.fixed_dictionaries({"record_id": st.one_of(st.integers(), st.just(["r"]))}),
        st.fixed_dictionaries({"subject": st.one_of(st.text(min_size=1, max_size=10),
                                                    st.integers(min_value=0))}),
    ))
    def check(filters: dict[str, Any]) -> None:
        assert_refused(lambda: list(world.admin.audit.query(**filters)), None)

    check()


def test_a_malformed_audit_query_filter_is_refused_when_query_is_called(world: World) -> None:
    with pytest.raises(InvalidInputError):
        world.admin.audit.query(since=dt.datetime(2026, 1, 1))  # naive: no time zone
