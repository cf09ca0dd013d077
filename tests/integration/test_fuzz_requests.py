"""Hostile subject-request input, against a real Azurite: ``processor.requests.receive``
and the controller's lifecycle calls on ``scope.requests`` (pause, extend, refuse).

Every bad input raises a MizaicError subclass (InvalidInputError, its ClockError, or
AccessDeniedError for the wrong actor) before the first request to Azure: the processor's
request count does not move and every container's blob names and etags are the same before
and after. The message is short printable ASCII and never repeats the input (no subject
identifier, contact detail, free text or reason, however huge, NUL-laden, RTL or
path-like). Valid input, including identifiers as odd as a requester may give them, is
accepted and stored as given: the examples assert that some of them go all the way to a
stored request, so the properties are never vacuous.

One world per module (a module's own Azurite, a controller, a fixed clock); each test
draws its examples inside its body with an inner ``@given``.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from azure.storage.blob import BlobServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    ControllerScope,
    InvalidInputError,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    Processor,
)
from mizaic_processor._core.deadlines import uk_day
from mizaic_processor.requests import (
    Channel,
    ContactDetails,
    Receipt,
    RequestKind,
    RequestStatus,
    WaitingFor,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
ADMIN = Actor.controller_admin("dpo@trust.example")
SERVICE = Actor.service("svc-epr")
NHS = "9434765919"
NOW = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # the processor's (fixed) clock
TODAY = uk_day(NOW)
LONDON = ZoneInfo("Europe/London")

FUZZ = settings(
    max_examples=50, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SOME = settings(FUZZ, max_examples=30)

# An error message is one short line of printable ASCII: nothing of the input (NUL, RTL
# marks, megabytes of text) can ride along in it.
SAFE_MESSAGE = re.compile(r"[ -~]{1,300}")
PLAIN_WORDS = re.compile(r"[a-z _]*")  # what a message's own words are made of


# -- the world ---------------------------------------------------------------------------


def storage(conn: str) -> dict[str, str]:
    """Every blob of every container: name -> etag."""
    with BlobServiceClient.from_connection_string(conn) as service:
        return {
            f"{container.name}/{blob.name}": str(blob.etag)
            for container in service.list_containers()
            for blob in service.get_container_client(container.name).list_blobs()
        }


@dataclass
class World:
    proc: Processor
    conn: str
    cid: str
    admin: ControllerScope
    open_request: str  # an acknowledged request the refused calls aim at
    accepted: list[Receipt] = field(default_factory=list)

    def snapshot(self) -> dict[str, str]:
        return storage(self.conn)

    def settle(self) -> None:
        """Let every audit writer commit and seal, so no checkpoint lands later, in the
        middle of a refused example's before/after comparison."""
        for writer in list(self.proc._writers.values()):
            writer.flush()

    def receive(self, **changes: Any) -> Receipt:
        args: dict[str, Any] = {
            "kind": "objection", "controller": self.cid, "subject": NHS,
            "contact": {"email": "aurelia.quenby@example.org"},
            "received_at": NOW - dt.timedelta(days=3), "channel": "post",
            "text": "I object to my knee surgery notes being kept", "actor": OPERATOR,
        }
        args.update(changes)
        receipt = self.proc.requests.receive(**args)
        self.accepted.append(receipt)
        return receipt

    def acknowledged(self) -> str:
        request_id = self.receive().request_id
        self.admin.requests.acknowledge(request_id)
        return request_id


@pytest.fixture(scope="module")
def fuzz_azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """This module's own Azurite: its triage list and registry keys are this module's."""
    server = AzuriteServer(tmp_path_factory.mktemp("azurite-fuzz-requests"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def world(fuzz_azurite: AzuriteServer) -> Iterator[World]:
    conn = fuzz_azurite.connection_string
    with Processor.from_connection_string(
        conn, region="uksouth", keyring=LocalKeyring.generate(), retry_total=1,
        retry_backoff=0.1, clock=lambda: NOW,
    ) as proc:
        cid = "fq" + uuid.uuid4().hex[:10]
        proc.register_controller(cid, name="Fuzz Trust", actor=OPERATOR)
        admin = proc.tenant(cid, actor=ADMIN)
        proc.tenant(cid, actor=SERVICE).create_record(
            NHSNumber(NHS), category="adult", fields={"note": "seen"})
        made = World(proc, conn, cid, admin, "")
        made.open_request = made.acknowledged()
        made.receive(controller="A Trust nobody registered")  # the triage keys exist too
        made.settle()
        yield made


def message_of(exc: BaseException) -> str:
    return f"{exc!s} {exc!r}"


def assert_safe(exc: BaseException, *inputs: object) -> None:
    """A library error whose message is one short ASCII line repeating no input."""
    assert isinstance(exc, MizaicError), repr(exc)
    assert SAFE_MESSAGE.fullmatch(str(exc)), repr(str(exc)[:400])
    text = message_of(exc)
    for value in inputs:
        for piece in _strings(value):
            # a piece made only of the message's own words ("identity") proves nothing
            if len(piece.strip()) >= 6 and not PLAIN_WORDS.fullmatch(piece.strip()):
                assert piece not in text and piece.strip() not in text


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def refused(world: World, call: Callable[[], object], *inputs: object,
            kinds: type[MizaicError] = InvalidInputError) -> MizaicError:
    """``call`` is refused with ``kinds`` before any request, leaving storage as it was."""
    before = world.snapshot()
    requests = world.proc.request_count
    with pytest.raises(MizaicError) as caught:
        call()
    assert isinstance(caught.value, kinds), repr(caught.value)
    assert world.proc.request_count == requests, "a refused input reached Azure"
    assert_safe(caught.value, *inputs)
    assert world.snapshot() == before, "a refused input changed storage"
    return caught.value


# -- strategies --------------------------------------------------------------------------

UTC_PLUS_14 = dt.timezone(dt.timedelta(hours=14))
UTC_MINUS_12 = dt.timezone(dt.timedelta(hours=-12))
ZONES = st.sampled_from([dt.UTC, LONDON, UTC_PLUS_14, UTC_MINUS_12,
                         dt.timezone(dt.timedelta(hours=5, minutes=30))])

# Characters a requester may well type: letters of several scripts, digits, punctuation,
# path-ish characters, RTL and zero-width marks (but no control characters).
ODD = "../\\%2F\u202e\u200f\u200b\uff0f\u2215\u00e9\u0430\u05d0\u0645\u4e2d\U0001f600'\"<>&;:#?*"
SAFE_CHARS = st.characters(
    codec="utf-8", exclude_categories=["Cc", "Cs", "Zl", "Zp", "Zs"],
    exclude_characters="\u0085",
)


def line(max_size: int) -> st.SearchStrategy[str]:
    """A valid one-line field (1..max_size characters after stripping outer spaces):
    starts and ends with a visible character, spaces and odd characters inside."""
    inner = st.text(alphabet=st.one_of(SAFE_CHARS, st.sampled_from(list(ODD + " "))),
                    max_size=max(0, max_size - 2))
    core = st.builds(lambda a, mid, b: a + mid + b, SAFE_CHARS, inner, SAFE_CHARS)
    single = SAFE_CHARS
    padded = st.builds(lambda left, text, right: " " * left + text + " " * right,
                       st.integers(0, 3), st.one_of(core, single), st.integers(0, 3))
    return padded.filter(lambda s: 0 < len(s.strip(" ")) <= max_size)


PATH_LIKE = st.sampled_from([
    "../../mzc-other-trust/records", "..%2f..%2fkeys%2fcontroller.json", "/etc/passwd",
    "C:\\Windows\\System32", "subjects/aaaaaaaaaaaaaaaaaaaaaaaaaa", "%00", "\u202eevil.pdf",
    "NHS: 943 476 5919", "943-476-5919", "RJ1/0042731", "\uff0e\uff0e\uff0fhome",
])


def inner_control(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``base`` with a control character strictly inside it (never stripped away)."""
    return st.builds(lambda text, c: "A" + c + text + "z", base,
                     st.sampled_from(["\x00", "\n", "\r", "\t", "\x1b", "\x7f", "\x1f", "\x08"]))


def too_long(limit: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.integers(limit + 1, limit + 300).map(lambda n: ("Aurelia Quenby " * n)[:n - 1] + "x"),
        st.just("\u202e" * (limit + 1)),
        st.just("9434765919" * 100_000),  # a megabyte
    )


NON_STRINGS = st.one_of(st.none(), st.integers(), st.floats(allow_nan=True),
                        st.just(["rj1"]), st.just({"id": "rj1"}), st.just(object()))

valid_kinds = st.one_of(st.sampled_from(list(RequestKind)),
                        st.sampled_from([k.value for k in RequestKind]))
bad_kinds = st.one_of(
    st.sampled_from(["ACCESS", " access", "access\x00", "Erasure", "subject_access", "",
                     "../access", "acc\u0435ss", "erasure;complaint"]),
    st.text(max_size=20).filter(lambda s: s not in {k.value for k in RequestKind}),
    NON_STRINGS,
)
valid_channels = st.one_of(st.sampled_from(list(Channel)),
                           st.sampled_from([c.value for c in Channel]))
bad_channels = st.one_of(
    st.sampled_from(["fax", "EMAIL", "e-mail", "", "web\x00", "carrier pigeon", " post"]),
    st.text(max_size=20).filter(lambda s: s not in {c.value for c in Channel}),
    NON_STRINGS,
)
valid_lines = st.one_of(line(200), PATH_LIKE)
bad_lines = st.one_of(
    st.sampled_from(["", "   ", "\t\n", "9434\x005919", "943 476\n5919"]),
    inner_control(line(40)),
    too_long(200),
    NON_STRINGS,
)

EMAILS = st.one_of(st.just("aurelia.quenby@example.org"),
                   st.builds(lambda a, b: f"{a}@{b}.example",
                             st.text(alphabet="abcxyz.+_-0123", min_size=1, max_size=20),
                             st.text(alphabet="abcdef", min_size=1, max_size=10)))
PHONES = st.one_of(st.just("+44 113 496 0000"),
                   st.text(alphabet="0123456789 ()-", min_size=3, max_size=38)
                   .filter(lambda s: len(s.strip()) >= 3))


@st.composite
def valid_contacts(draw: st.DrawFn) -> dict[str, str] | ContactDetails:
    reachable = draw(st.sets(st.sampled_from(["email", "phone", "postal_address"]),
                             min_size=1))
    details: dict[str, str] = {}
    if draw(st.booleans()):
        details["name"] = draw(line(200))
    if "email" in reachable:
        details["email"] = draw(EMAILS)
    if "phone" in reachable:
        details["phone"] = draw(PHONES)
    if "postal_address" in reachable:
        details["postal_address"] = draw(st.one_of(line(500), st.just("1 Lantern Yard\nLeeds")))
    if draw(st.booleans()):
        return ContactDetails(**details)
    return details


bad_contacts = st.one_of(
    st.sampled_from([
        {}, {"name": "Aurelia Quenby"}, {"email": None, "phone": None},
        {"email": "aurelia.quenby"}, {"email": "aurelia@quenby"}, {"email": "a b@example.org"},
        {"email": "aurelia@@example.org"}, {"phone": "call me maybe"}, {"phone": "12"},
        {"phone": "+44 " + "1" * 40}, {"postal_address": "   "},
        {"postal_address": "1 Lantern Yard, Leeds " * 30},
        {"email": "aurelia.quenby@example.org", "nhs_number": "9434765919"},
        {"email": "aurelia.quenby@example.org", "name": "Aurelia\x00Quenby"},
        {"email": "aurelia.quenby@example.org", "name": "Aurelia Quenby " * 20},
        {"email": 9434765919}, {"phone": ["+44 113 496 0000"]},
    ]),
    st.sampled_from(["aurelia.quenby@example.org", ["aurelia.quenby@example.org"], None, 42,
                     b"aurelia.quenby@example.org"]),
)
valid_times = st.one_of(
    st.datetimes(min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2026, 3, 1),
                 timezones=ZONES),
    st.just(NOW), st.just(NOW + dt.timedelta(minutes=9)),  # within the clock skew
    st.builds(lambda d: d.isoformat(),
              st.datetimes(min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2026, 3, 1),
                           timezones=ZONES)),
)
bad_times = st.one_of(
    st.datetimes(),  # naive: the day would be a guess
    st.builds(lambda d: d.isoformat(), st.datetimes()),
    st.dates(),
    st.sampled_from(["yesterday", "", "2026-03-02", "02/03/2026 10:00", "2026-13-01T00:00Z",
                     "now", True]),
    st.datetimes(min_value=dt.datetime(2026, 3, 4), max_value=dt.datetime(9000, 1, 1),
                 timezones=ZONES),  # in the future
    st.just(NOW + dt.timedelta(minutes=11)),
    st.none(), st.just(object()), st.just([NOW]),
)
valid_texts = st.one_of(st.text(max_size=300), st.just(""), st.just("\x00\u202e" * 5_000),
                        st.just("Please send everything. " * 800))  # 19 200 characters
bad_texts = st.one_of(too_long(20_000), st.sampled_from([None, 5, ["a"], b"\xff\xfe"]))

VALID = {
    "kind": valid_kinds, "controller": st.just("<cid>"), "subject": valid_lines,
    "contact": valid_contacts(), "received_at": valid_times, "channel": valid_channels,
    "text": valid_texts,
}
BAD = {
    "kind": bad_kinds, "controller": bad_lines, "subject": bad_lines, "contact": bad_contacts,
    "received_at": bad_times, "channel": bad_channels, "text": bad_texts,
}


def payload(world: World, values: dict[str, Any]) -> dict[str, Any]:
    if values.get("controller") == "<cid>":
        values = {**values, "controller": world.cid}
    return values


# -- intake ------------------------------------------------------------------------------


def test_a_bad_field_in_an_otherwise_valid_request_is_refused_before_any_request(
    world: World,
) -> None:
    @FUZZ
    @given(st.sampled_from(sorted(BAD)).flatmap(
        lambda name: st.tuples(st.just(name), BAD[name], st.fixed_dictionaries(VALID))))
    def check(case: tuple[str, Any, dict[str, Any]]) -> None:
        name, bad, valid = case
        values = payload(world, {**valid, name: bad})
        refused(world, lambda: world.proc.requests.receive(**values, actor=OPERATOR),
                *values.values())

    check()


def test_anyone_but_a_processor_operator_is_refused_before_any_request(world: World) -> None:
    @SOME
    @given(st.fixed_dictionaries(VALID),
           st.one_of(st.sampled_from([ADMIN, SERVICE, Actor.controller_admin("x@other.example")]),
                     st.sampled_from([None, "ops@mizaic.example", OPERATOR.id, object()])))
    def check(valid: dict[str, Any], actor: Any) -> None:
        values = payload(world, valid)
        kinds = AccessDeniedError if isinstance(actor, Actor) else InvalidInputError
        refused(world, lambda: world.proc.requests.receive(**values, actor=actor),
                *values.values(), kinds=kinds)

    check()


def test_contact_details_built_from_bad_values_are_refused_without_repeating_them() -> None:
    @FUZZ
    @given(bad_contacts.filter(lambda c: isinstance(c, dict) and all(
        isinstance(v, str | None) for v in c.values())))
    def check(bad: dict[str, Any]) -> None:
        with pytest.raises(InvalidInputError) as caught:
            ContactDetails(**bad)
        assert_safe(caught.value, bad)

    check()


@pytest.mark.parametrize("control", ["\x00", "\x1b[2J", "\x07"])
def test_an_email_address_with_a_control_character_is_refused(control: str) -> None:
    with pytest.raises(InvalidInputError):
        ContactDetails(email=f"aurelia{control}.quenby@example.org")


def test_valid_requests_are_stored_as_given_or_triaged(world: World) -> None:
    stored: list[tuple[str, dict[str, Any]]] = []
    triaged: dict[str, str] = {}

    @SOME
    @given(st.fixed_dictionaries(VALID),
           st.one_of(st.just("<cid>"), valid_lines))
    def check(valid: dict[str, Any], controller: str) -> None:
        values = payload(world, {**valid, "controller": controller})
        try:
            receipt = world.proc.requests.receive(**values, actor=OPERATOR)
        finally:
            world.settle()
        world.accepted.append(receipt)
        if controller == "<cid>":
            assert (receipt.controller_id, receipt.triaged) == (world.cid, False)
            stored.append((receipt.request_id, values))
        elif receipt.triaged:  # a name that is not a registered controller's id
            triaged[receipt.request_id] = values["controller"].strip(" ")
        else:
            assert receipt.controller_id == world.cid  # the id, however it was spelled

    check()
    assert len(stored) >= 5 and len(triaged) >= 5  # not vacuous
    for request_id, values in stored:
        details = world.admin.requests.get(request_id)
        assert details.kind is RequestKind(values["kind"])
        assert details.channel is Channel(values["channel"])
        assert details.subject == values["subject"].strip(" ")
        assert details.text == values["text"]
        when = values["received_at"]
        when = dt.datetime.fromisoformat(when) if isinstance(when, str) else when
        assert details.received_at == when
        assert details.received_on == uk_day(when)
        contact = values["contact"]
        given_contact = contact.model_dump() if isinstance(contact, ContactDetails) else contact
        for key, value in given_contact.items():
            if value is not None:
                assert getattr(details.contact, key) == value.strip(" ")
        assert details.status in (RequestStatus.RECEIVED, RequestStatus.FORWARDED)
    listed = {t.request_id: t for t in world.proc.requests.list_triage(actor=OPERATOR)}
    for request_id, named in triaged.items():
        assert listed[request_id].named_controller == named


def test_arbitrary_payloads_are_stored_or_refused_with_a_library_error(world: World) -> None:
    anything = st.one_of(st.text(max_size=50), st.integers(), st.floats(), st.none(),
                         st.binary(max_size=10),
                         st.datetimes(min_value=dt.datetime(2, 1, 1), timezones=ZONES))
    outcomes = {"stored": 0, "refused": 0}

    @FUZZ
    @given(st.fixed_dictionaries({
        name: st.one_of(VALID[name], BAD[name], anything) for name in VALID
    }))
    def check(values: dict[str, Any]) -> None:
        values = payload(world, values)
        before = world.snapshot()
        requests = world.proc.request_count
        try:
            receipt = world.proc.requests.receive(**values, actor=OPERATOR)
        except MizaicError as exc:
            assert isinstance(exc, InvalidInputError), repr(exc)
            assert world.proc.request_count == requests
            assert world.snapshot() == before
            assert_safe(exc, *values.values())
            outcomes["refused"] += 1
        else:
            world.settle()
            world.accepted.append(receipt)
            outcomes["stored"] += 1

    check()
    assert outcomes["stored"] > 0 and outcomes["refused"] > 0


@pytest.mark.parametrize("call", ["receive", "pause", "list"])
def test_a_moment_before_the_start_of_the_calendar_is_refused_as_invalid_input(
    world: World, call: str
) -> None:
    dawn = dt.datetime.min.replace(tzinfo=dt.UTC)
    actions: dict[str, Callable[[], object]] = {
        "receive": lambda: world.receive(received_at=dawn),
        "pause": lambda: world.admin.requests.pause(world.open_request, "identity", on=dawn),
        "list": lambda: list(world.admin.requests.list(as_of=dawn)),
    }
    refused(world, actions[call], dawn)


# -- lifecycle ---------------------------------------------------------------------------

REQUEST_ID_TOKENS = ["../", "/", "\\", "%2F", "\x00", "\u202e", "\uff0f", " ", "\n", "*"]
FRESH = "<a fresh acknowledged request>"
bad_request_ids = st.one_of(
    st.builds(lambda i, t: "q" + "a" * i + t + "a" * (25 - i), st.integers(0, 25),
              st.sampled_from(REQUEST_ID_TOKENS)),
    st.sampled_from(["", "q", "q" + "a" * 25, "q" + "a" * 27, "Q" + "A" * 26,
                     "r" + "a" * 52, "../requests/q" + "a" * 26]),
    NON_STRINGS,
)
valid_waiting = st.one_of(st.sampled_from(list(WaitingFor)),
                          st.sampled_from([w.value for w in WaitingFor]))
bad_waiting = st.one_of(
    st.sampled_from(["Identity", "id", "", "fee ", " fee", "clarification\x00", "money",
                     "identity/../fee", None, 1, b"fee"]),
    st.text(max_size=15).filter(lambda s: s not in {w.value for w in WaitingFor}),
)
valid_on = st.sampled_from([None, TODAY, NOW])
bad_on = st.one_of(
    st.dates(min_value=TODAY + dt.timedelta(days=1)),  # in the future
    st.just(NOW + dt.timedelta(days=1)),
    st.datetimes(max_value=dt.datetime(2026, 3, 1)),  # naive
    st.sampled_from(["2026-03-01", "today", 20260301, True, object()]),
)


def reason_ok(value: object, limit: int) -> bool:
    # text: no control characters but tab and line breaks, no lone surrogate; format
    # characters (right-to-left marks, zero-width joiners) are text
    return isinstance(value, str) and 0 < len(value.strip()) <= limit and all(
        c in "\t\n\r" or unicodedata.category(c) not in ("Cc", "Cs") for c in value
    )


def any_reason(limit: int) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.text(max_size=60), st.just(""), st.just(" \n\t "), st.just("\u202e\x00 records"),
        st.just("three sites\ud800"), st.just("three\r\nsites"),
        st.just("three\xa0sites \u200f\u202e"),
        st.integers(limit - 10, limit + 10).map(lambda n: "r" * n),
        st.just("Records on three sites, and the patient's knee surgery notes. " * 20_000),
        st.sampled_from([None, 5, b"busy", ["busy"]]),
    )


def valid_reason(limit: int) -> st.SearchStrategy[Any]:
    return any_reason(limit).filter(lambda r: reason_ok(r, limit))


def bad_reason(limit: int) -> st.SearchStrategy[Any]:
    return any_reason(limit).filter(lambda r: not reason_ok(r, limit))


def cases(valid: dict[str, st.SearchStrategy[Any]], bad: dict[str, st.SearchStrategy[Any]]
          ) -> st.SearchStrategy[tuple[str | None, dict[str, Any]]]:
    """Every argument valid (``None``), or one of them (named) bad."""
    all_valid = st.fixed_dictionaries(valid).map(lambda v: (None, v))
    one_bad = st.sampled_from(sorted(bad)).flatmap(
        lambda name: st.tuples(st.just(name), st.fixed_dictionaries({**valid, name: bad[name]})))
    return st.one_of(all_valid, one_bad)


@dataclass
class Tally:
    done: int = 0
    refused: int = 0


def run_lifecycle(world: World, tally: Tally, case: tuple[str | None, dict[str, Any]],
                  call: Callable[..., Any]) -> Any:
    """A case with a bad argument is refused before any request, leaving storage as it
    was; a valid one is carried out on a fresh acknowledged request."""
    bad, args = case
    if bad is not None:
        if args["request_id"] == FRESH:
            args = {**args, "request_id": world.open_request}
        refused(world, lambda: call(**args), *args.values())
        tally.refused += 1
        return None
    try:
        result = call(**{**args, "request_id": world.acknowledged()})
    finally:
        world.settle()
    tally.done += 1
    return result


def test_pause_inputs(world: World) -> None:
    tally = Tally()

    def pause(request_id: Any, waiting_for: Any, on: Any) -> Any:
        return world.admin.requests.pause(request_id, waiting_for, on=on)

    @SOME
    @given(cases(
        {"request_id": st.just(FRESH), "waiting_for": valid_waiting, "on": valid_on},
        {"request_id": bad_request_ids, "waiting_for": bad_waiting, "on": bad_on},
    ))
    def check(case: tuple[str | None, dict[str, Any]]) -> None:
        summary = run_lifecycle(world, tally, case, pause)
        if summary is not None:
            waiting = WaitingFor(case[1]["waiting_for"])
            assert summary.waiting_for == (waiting,)
            assert summary.status.value == f"awaiting_{waiting.value}"

    check()
    assert tally.done > 0 and tally.refused > 0


def test_extend_inputs(world: World) -> None:
    tally = Tally()

    def extend(request_id: Any, months: Any, reason: Any, on: Any) -> Any:
        return world.admin.requests.extend(request_id, months=months, reason=reason, on=on)

    @SOME
    @given(cases(
        {"request_id": st.just(FRESH), "months": st.sampled_from([1, 2]),
         "reason": valid_reason(1000), "on": valid_on},
        {"request_id": bad_request_ids,
         "months": st.sampled_from([0, 3, -1, 12, True, 1.0, 2.0, "1", None, 2**64]),
         "reason": bad_reason(1000), "on": bad_on},
    ))
    def check(case: tuple[str | None, dict[str, Any]]) -> None:
        summary = run_lifecycle(world, tally, case, extend)
        if summary is not None:
            assert summary.extension_months == case[1]["months"]

    check()
    assert tally.done > 0 and tally.refused > 0


def test_refuse_inputs(world: World) -> None:
    tally = Tally()
    done: dict[str, str] = {}

    def refuse(request_id: Any, reason: Any) -> Any:
        return world.admin.requests.refuse(request_id, reason=reason)

    @SOME
    @given(cases({"request_id": st.just(FRESH), "reason": valid_reason(4000)},
                 {"request_id": bad_request_ids, "reason": bad_reason(4000)}))
    def check(case: tuple[str | None, dict[str, Any]]) -> None:
        summary = run_lifecycle(world, tally, case, refuse)
        if summary is not None:
            assert summary.status is RequestStatus.REFUSED
            done[summary.request_id] = case[1]["reason"].strip()

    check()
    assert tally.done > 0 and tally.refused > 0
    for request_id, reason in done.items():  # the reason is kept, sealed, as given
        assert world.admin.requests.get(request_id).refusal_reason == reason
