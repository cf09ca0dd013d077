"""UK residency and input validation at the edge, against a real Azurite.

A region other than ``uksouth`` / ``ukwest`` is refused before a byte is written; bad input
raises InvalidInputError before any request to Azure, so the account is unchanged and the
processor's request counter does not move.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    ConfigurationError,
    ControllerScope,
    HospitalNumber,
    InvalidInputError,
    LocalKeyring,
    NewRecord,
    NHSNumber,
    Processor,
    RecordRef,
    ResidencyError,
    Settings,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
NHS = "9434765919"
PDF = "application/pdf"
BAD_REGIONS: list[Any] = [
    "westeurope", "northeurope", "UKSOUTH ", "UKSouth", "uksouth\n", " ukwest", "uk-south",
    "uksouth2", "", None, 0, ["uksouth"],
]


def new_controller_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


def account_state(conn: str, containers: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Container names, and every blob (name, etag, size) of the named containers or all."""
    state: dict[str, Any] = {}
    with BlobServiceClient.from_connection_string(conn) as service:
        names = sorted(c.name for c in service.list_containers())
        state["containers"] = names
        for name in containers if containers is not None else names:
            client = service.get_container_client(name)
            if client.exists():
                state[name] = sorted(
                    (b.name, b.etag, b.size) for b in client.list_blobs()
                )
    return state


# -- residency --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """An Azurite of this module's own, so that "nothing written" covers the whole account
    (every test here asserts that it stays empty)."""
    with AzuriteServer(tmp_path_factory.mktemp("azurite-residency")) as server:
        yield server


@pytest.mark.parametrize("region", BAD_REGIONS)
def test_a_non_uk_region_is_refused_when_connecting_and_nothing_is_written(
    fresh: AzuriteServer, region: Any
) -> None:
    before = account_state(fresh.connection_string)
    with pytest.raises(ResidencyError):
        Processor.from_connection_string(
            fresh.connection_string, region=region, keyring=LocalKeyring.generate(),
            retry_total=0,
        )
    with pytest.raises(ResidencyError):
        Processor(
            fresh.blob_endpoint, "not-a-real-credential", region=region,
            keyring=LocalKeyring.generate(), retry_total=0,
        )
    assert account_state(fresh.connection_string) == before == {"containers": []}


@pytest.mark.parametrize("region", [r for r in BAD_REGIONS if r is not None])
def test_a_non_uk_region_is_refused_when_registering_a_controller_and_nothing_is_written(
    fresh: AzuriteServer, region: Any
) -> None:
    keyring = LocalKeyring.generate()
    with Processor.from_connection_string(
        fresh.connection_string, region="uksouth", keyring=keyring, retry_total=0
    ) as proc:
        before = account_state(fresh.connection_string)
        cid = new_controller_id()
        with pytest.raises(ResidencyError):
            proc.register_controller(cid, name="Test Trust", actor=OPERATOR, region=region)
        assert proc.request_count == 0
        assert account_state(fresh.connection_string) == before == {"containers": []}
        assert repr(keyring) == "LocalKeyring(keys=0)"  # no KEK was created either
        assert list(proc.list_controllers()) == []


def test_a_non_uk_region_is_refused_before_the_actor_or_id_are_even_checked(
    fresh: AzuriteServer,
) -> None:
    with Processor.from_connection_string(
        fresh.connection_string, region="ukwest", keyring=LocalKeyring.generate(), retry_total=0
    ) as proc:
        with pytest.raises(ResidencyError):
            proc.register_controller("bad id!", name="", actor=SERVICE, region="westeurope")
        assert proc.request_count == 0
    assert account_state(fresh.connection_string) == {"containers": []}


@pytest.mark.parametrize("region", ["uksouth", "ukwest"])
def test_both_uk_regions_are_accepted_and_recorded(azurite: AzuriteServer, region: str) -> None:
    with Processor.from_connection_string(
        azurite.connection_string, region=region, keyring=LocalKeyring.generate(), retry_total=1
    ) as proc:
        assert proc.region == region
        default = proc.register_controller(new_controller_id(), name="T", actor=OPERATOR)
        named = proc.register_controller(
            new_controller_id(), name="T", actor=OPERATOR, region=region
        )
        assert default.region == named.region == region
        assert proc.get_controller(named.controller_id).region == region


@pytest.mark.parametrize("region", ["uksouth", "ukwest"])
def test_a_controller_in_the_other_uk_region_is_refused_by_this_account_and_nothing_written(
    fresh: AzuriteServer, region: str
) -> None:
    other = "ukwest" if region == "uksouth" else "uksouth"
    keyring = LocalKeyring.generate()
    with Processor.from_connection_string(
        fresh.connection_string, region=region, keyring=keyring, retry_total=0
    ) as proc:
        with pytest.raises(ResidencyError):
            proc.register_controller(new_controller_id(), name="T", actor=OPERATOR, region=other)
        assert proc.request_count == 0
    assert account_state(fresh.connection_string) == {"containers": []}
    assert repr(keyring) == "LocalKeyring(keys=0)"


@pytest.mark.parametrize("region", ["westeurope", "UKSOUTH", ""])
def test_settings_refuse_a_non_uk_region(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any, region: str
) -> None:
    for name in ("MIZAIC_CONNECTION_STRING", "MIZAIC_ACCOUNT_URL", "MIZAIC_KEYRING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MIZAIC_REGION", region)
    monkeypatch.setenv("MIZAIC_LOCAL_KEYRING_PATH", str(tmp_path / "ring.json"))
    with pytest.raises(ResidencyError):
        Settings.load()
    with pytest.raises(ResidencyError):
        Processor.from_settings()
    assert not (tmp_path / "ring.json").exists()


@pytest.mark.parametrize(
    "values",
    [{"region": "uksouth", "retry_total": "lots"}, {"region": "uksouth", "bogus": 1},
     {"region": "uksouth", "connection_string": 5}, {"region": "uksouth", "keyring": "hsm"}],
    ids=["retry-total", "unknown", "connection-string", "keyring"],
)
def test_settings_built_directly_raise_the_librarys_own_errors(
    monkeypatch: pytest.MonkeyPatch, values: dict[str, object]
) -> None:
    # Settings(...) raised pydantic's ValidationError (only Settings.load() mapped it)
    for name in ("MIZAIC_CONNECTION_STRING", "MIZAIC_ACCOUNT_URL", "MIZAIC_KEYRING",
                 "MIZAIC_REGION", "MIZAIC_RETRY_TOTAL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigurationError) as caught:
        Settings(**values)  # type: ignore[arg-type]
    assert "lots" not in str(caught.value) and "hsm" not in str(caught.value)
    with pytest.raises(ResidencyError):
        Settings(region="westeurope")
    with pytest.raises(ConfigurationError, match="region"):
        Settings()
    assert Settings(region="uksouth", retry_total=3).retry_total == 3


# -- invalid input changes nothing --------------------------------------------------------------


@dataclass
class Ctx:
    conn: str
    proc: Processor
    cid: str
    svc: ControllerScope
    admin: ControllerScope
    ref: RecordRef


@pytest.fixture(scope="module")
def ctx(azurite: AzuriteServer) -> Iterator[Ctx]:
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
        retry_total=1,
    ) as proc:
        cid = new_controller_id()
        proc.register_controller(cid, name="Test Trust", actor=OPERATOR)
        svc = proc.tenant(cid, actor=SERVICE)
        ref = svc.create_record(
            NHSNumber(NHS), category="adult", fields={"a": 1}, content=b"doc", content_type=PDF
        )
        yield Ctx(azurite.connection_string, proc, cid, svc, proc.tenant(cid, actor=ADMIN), ref)


class _Text:
    """Not a TextIOBase, but a "binary" stream whose read() returns str."""

    def read(self, size: int = -1) -> str:
        return "not bytes"


IID = "i" + "a" * 26  # a well-formed instruction id that is not in the ledger


def _closed_bytes_io() -> io.BytesIO:
    stream = io.BytesIO()
    stream.close()
    return stream


class _NoOffset(dt.tzinfo):
    """A time zone that does not know its offset: such a datetime is naive."""

    def utcoffset(self, when: dt.datetime | None) -> None:
        return None


def _a_file() -> Path:
    handle, name = tempfile.mkstemp()
    os.close(handle)
    return Path(name)


def _with_progress(run: Callable[[Ctx, object], object], progress: object) -> Call:
    return lambda c: run(c, progress)


def _rectify(**changes: Any) -> Call:
    return lambda c: c.admin.rectify_record(
        c.ref.record_id, etag=c.ref.etag, instruction_id=IID, **changes)


def _export_into(make: Callable[[], object]) -> Call:
    return lambda c: c.admin.export_subject(NHSNumber(NHS), make(), instruction_id=IID)


class _Unrewindable(io.BytesIO):
    """Seeks to its end, but cannot seek back (it would read as an empty document)."""

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            raise OSError("cannot rewind")
        return super().seek(offset, whence)


def _released() -> memoryview:
    view = memoryview(b"a document")
    view.release()
    return view


D = dt.date(2024, 1, 1)
BAD_RECORD_IDS: list[Any] = [
    "../x", "r" + "%2F" * 52, "", "r", "r" + "a" * 51, "r" + "a" * 53, "R" + "a" * 52,
    "r" + "1" * 52, "r" + "a" * 51 + "/", "r" + "a" * 26 + "/" + "a" * 25, " r" + "a" * 52,
    "r" + "a" * 52 + "\n", None, 5, b"r" + b"a" * 52,
]
Call = Callable[[Ctx], object]


def _create(**kwargs: Any) -> Call:
    def call(c: Ctx) -> object:
        kwargs.setdefault("category", "adult")
        subject = kwargs.pop("subject", NHSNumber(NHS))
        return c.svc.create_record(subject, **kwargs)

    return call


def _update(**kwargs: Any) -> Call:
    def call(c: Ctx) -> object:
        rid = kwargs.pop("record_id", c.ref.record_id)
        kwargs.setdefault("etag", c.ref.etag)
        return c.svc.update_record(rid, **kwargs)

    return call


def _get(rid: Any) -> Call:
    return lambda c: c.svc.get_record(rid)


def _register(cid: Any = None, name: Any = "T") -> Call:
    """Register ``cid`` (a new valid id when omitted) named ``name``."""

    def call(c: Ctx) -> object:
        return c.proc.register_controller(cid, name=name, actor=OPERATOR)

    def fresh_id(c: Ctx) -> object:
        return c.proc.register_controller(new_controller_id(), name=name, actor=OPERATOR)

    return call if cid is not None else fresh_id


CASES: dict[str, Call] = {
    # subject
    "subject as str": _create(subject=NHS),
    "subject as int": _create(subject=9434765919),
    "subject as None": _create(subject=None),
    "subject as dict": _create(subject={"kind": "nhs", "value": NHS}),
    # category
    "category upper case": _create(category="Adult"),
    "category with space": _create(category="adult care"),
    "category empty": _create(category=""),
    "category too long": _create(category="a" * 41),
    "category path": _create(category="../adult"),
    "category not str": _create(category=5),
    "category None": _create(category=None),
    # field names
    "field name with space": _create(fields={"hiv status": 1}),
    "field name $meta": _create(fields={"$meta": 1}),
    "field name leading digit": _create(fields={"1abc": 1}),
    "field name empty": _create(fields={"": 1}),
    "field name too long": _create(fields={"a" * 129: 1}),
    "field name slash": _create(fields={"a/b": 1}),
    "field name not str": _create(fields={5: 1}),
    "too many fields": _create(fields={f"f{i}": i for i in range(513)}),
    # field values
    "value set": _create(fields={"a": {1, 2}}),
    "value object": _create(fields={"a": object()}),
    "value bytes": _create(fields={"a": b"x"}),
    "value date": _create(fields={"a": D}),
    "value nested set": _create(fields={"a": {"b": [1, {2}]}}),
    "value nested non-str key": _create(fields={"a": {1: "x"}}),
    "fields over 4 MiB": _create(fields={"a": "x" * (4 * 1024 * 1024 + 1)}),
    # events
    "event name upper": _create(events={"Last": D}),
    "event name path": _create(events={"../x": D}),
    "event datetime": _create(events={"last_treatment": dt.datetime(2024, 1, 1, 9, 30)}),
    "event midnight datetime": _create(events={"last_treatment": dt.datetime(2024, 1, 1)}),
    "event aware datetime": _create(events={"e": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}),
    "event text not iso": _create(events={"e": "01/02/2024"}),
    "event None": _create(events={"e": None}),
    "event bool": _create(events={"e": True}),
    # content
    "content str": _create(content="a document", content_type="text/plain"),
    "content text stream": _create(content=io.StringIO("a document"), content_type="text/plain"),
    "content int": _create(content=5, content_type=PDF),
    "content list": _create(content=[b"a"], content_type=PDF),
    "content without type": _create(content=b"doc"),
    "type without content": _create(content_type=PDF),
    "content type malformed": _create(content=b"doc", content_type="pdf"),
    "content type with params": _create(content=b"doc", content_type="text/plain; charset=x"),
    "content type not str": _create(content=b"doc", content_type=5),
    "content released view": lambda c: _create(content=_released(), content_type=PDF)(c),
    "content stream that cannot be rewound": lambda c: _create(
        content=_Unrewindable(b"a scanned page"), content_type=PDF)(c),
    "update stream that cannot be rewound": lambda c: _update(
        content=_Unrewindable(b"a scanned page"), content_type=PDF)(c),
    # update
    **{f"update record id {i}": _update(record_id=rid, fields={"a": 2})
       for i, rid in enumerate(BAD_RECORD_IDS)},
    "update etag empty": _update(etag=""),
    "update etag None": _update(etag=None),
    "update etag int": _update(etag=5),
    "update etag too long": _update(etag="x" * 129),
    "update etag newline": _update(etag='"0x1"\n'),
    "update remove_fields str": _update(remove_fields="a"),
    "update remove_fields int": _update(remove_fields=5),
    "update remove bad name": _update(remove_fields=["bad name"]),
    "update bad field name": _update(fields={"bad name": 1}),
    "update bad value": _update(fields={"a": {1}}),
    "update datetime event": _update(events={"e": dt.datetime(2024, 1, 1, 1)}),
    "update str content": _update(content="x", content_type="text/plain"),
    "update content without type": _update(content=b"x"),
    "update released view": lambda c: _update(content=_released(), content_type=PDF)(c),
    # reads and deletes
    **{f"get record id {i}": _get(rid) for i, rid in enumerate(BAD_RECORD_IDS)},
    "get fields str": lambda c: c.svc.get_record(c.ref.record_id, fields="a"),
    "get fields int": lambda c: c.svc.get_record(c.ref.record_id, fields=5),
    "get bad field name": lambda c: c.svc.get_record(c.ref.record_id, fields=["a", "bad name"]),
    "open bad record id": lambda c: c.svc.open_content("../x"),
    "delete bad record id": lambda c: c.admin.delete_record(
        "r" + "%2F" * 52, instruction_id="i" + "a" * 26),
    "delete path instruction id": lambda c: c.admin.delete_record(
        c.ref.record_id, instruction_id="../x"),
    "delete no instruction id": lambda c: c.admin.delete_record(
        c.ref.record_id, instruction_id=None),
    # instruction ids and changes are checked before the audit event and the ledger read
    **{f"{op} instruction id {iid!r}": call(iid)
       for op, call in {
           "erase": lambda iid: lambda c: c.admin.erase_subject(
               NHSNumber(NHS), instruction_id=iid),
           "restrict": lambda iid: lambda c: c.admin.set_restriction(
               NHSNumber(NHS), True, instruction_id=iid),
           "export": lambda iid: lambda c: c.admin.export_subject(
               NHSNumber(NHS), io.BytesIO(), instruction_id=iid),
           "rectify": lambda iid: lambda c: c.admin.rectify_record(
               c.ref.record_id, etag=c.ref.etag, instruction_id=iid, fields={"a": 2}),
       }.items()
       for iid in (None, "../x", 5)},
    **{f"rectify {name}": _rectify(**changes)
       for name, changes in {
           "bad field name": {"fields": {"bad name": 1}},
           "remove_fields int": {"remove_fields": 5},
           "event datetime": {"events": {"seen": dt.datetime(2026, 1, 1)}},
           "fields str": {"fields": "ab"},
       }.items()},
    **{f"export destination {name}": _export_into(make)
       for name, make in {
           "text": io.StringIO, "none": lambda: None, "object": object,
           "closed": _closed_bytes_io,
       }.items()},
    "update fields empty str": _update(fields=""),
    "destroy shard False of True": lambda c: c.admin.retention.destroy(
        "a" + "a" * 26, shard=False, shards=True),
    "audit since without offset": lambda c: c.admin.audit.query(
        since=dt.datetime(2026, 1, 1, tzinfo=_NoOffset())),
    "audit export NUL path": lambda c: c.admin.audit.export("/tmp/mizaic\x00export"),
    "audit export under a file": lambda c: c.admin.audit.export(_a_file() / "export"),
    "audit export surrogate path": lambda c: c.admin.audit.export("/tmp/mizaic-\ud800"),
    "instruction action list": lambda c: c.admin.create_instruction(
        ["deletion"]),  # type: ignore[arg-type]
    "instruction record_ids int": lambda c: c.admin.create_instruction(
        "deletion", record_ids=5),
    "instruction record_ids None": lambda c: c.admin.create_instruction(
        "deletion", record_ids=None),
    "instruction record_ids mapping": lambda c: c.admin.create_instruction(
        "deletion", record_ids={c.ref.record_id: 1}),
    "instruction note int, unknown subject": lambda c: c.admin.create_instruction(
        "erasure", subject=HospitalNumber("NOBODY-1"), note=5),
    "hold whole_controller 'no'": lambda c: c.admin.retention.place_hold(
        "legal", reason="claim", whole_controller="no"),
    "hold whole_controller 1": lambda c: c.admin.retention.place_hold(
        "legal", reason="claim", whole_controller=1),
    "hold record_ids int": lambda c: c.admin.retention.place_hold(
        "legal", reason="claim", record_ids=5),
    "hold record_ids None": lambda c: c.admin.retention.place_hold(
        "legal", reason="claim", record_ids=None),
    "approve record_ids int": lambda c: c.admin.retention.approve(
        "a" + "a" * 26, record_ids=5),
    "approve record_ids str": lambda c: c.admin.retention.approve(
        "a" + "a" * 26, record_ids=c.ref.record_id),
    "approve note int": lambda c: c.admin.retention.approve("a" + "a" * 26, note=5),
    # a progress callback that cannot be called used to fail after the first writes
    **{f"{name} progress {bad!r}": _with_progress(run, bad)
       for name, run in {
           "create_records": lambda c, p: c.svc.create_records(
               [NewRecord(NHSNumber(NHS), category="adult", fields={"a": 1})], progress=p),
           "get_records": lambda c, p: c.svc.get_records([c.ref.record_id], progress=p),
           "appraise": lambda c, p: c.admin.retention.appraise(D, progress=p),
           "recompute_due_dates": lambda c, p: c.admin.retention.recompute_due_dates(
               "adult", progress=p),
           "rotate_controller_key": lambda c, p: c.admin.keys.rotate_controller_key(
               progress=p),
           "rotate_index_key": lambda c, p: c.admin.keys.rotate_index_key(progress=p),
           "retire_old_controller_keys": lambda c, p: (
               c.admin.keys.retire_old_controller_keys(progress=p)),
           "retire_old_index_keys": lambda c, p: c.admin.keys.retire_old_index_keys(
               progress=p),
       }.items()
       for bad in (5, "bar")},
    "instruction for a bad record id": lambda c: c.admin.create_instruction(
        "deletion", record_ids=["../x"]),
    "instruction record_ids str": lambda c: c.admin.create_instruction(
        "deletion", record_ids=c.ref.record_id),
    "instruction unknown action": lambda c: c.admin.create_instruction(
        "shred", record_ids=[c.ref.record_id]),
    "instruction subject as str": lambda c: c.admin.create_instruction(
        "deletion", subject=NHS),
    "list subject as str": lambda c: c.svc.list_records(NHS),
    "exists subject as str": lambda c: c.svc.subject_exists(NHS),
    # controllers and scopes
    "tenant bad id": lambda c: c.proc.tenant("../x", actor=SERVICE),
    "tenant upper underscore": lambda c: c.proc.tenant("A_B", actor=SERVICE),
    "tenant actor not Actor": lambda c: c.proc.tenant(c.cid, actor="svc-epr"),
    "get_controller bad id": lambda c: c.proc.get_controller("x"),
    **{f"register id {cid!r}": _register(cid)
       for cid in ["x", "-ab", "ab-", "ab--c", "a" * 41, "ab_c", "../ab", "ab/c", "", 5]},
    **{f"register name {name!r}": _register(name=name)
       for name in ["", "   ", "x" * 201, "a\nb", None, 5]},
}


KNOWN_BUGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case]))
     if case in KNOWN_BUGS else case for case in CASES],
)
def test_invalid_input_is_refused_before_any_request_and_changes_nothing(
    ctx: Ctx, case: str
) -> None:
    containers = (f"mzc-{ctx.cid}", "mizaic-registry")
    before = account_state(ctx.conn, containers)
    requests = ctx.proc.request_count
    with pytest.raises(InvalidInputError):
        CASES[case](ctx)
    assert ctx.proc.request_count == requests
    assert account_state(ctx.conn, containers) == before
    record = ctx.svc.get_record(ctx.ref.record_id)
    assert (record.version, record.fields) == (1, {"a": 1})


def test_a_valid_call_does_move_the_request_counter(ctx: Ctx) -> None:
    # The counter the test above relies on really counts this processor's requests.
    before = ctx.proc.request_count
    ctx.svc.get_record(ctx.ref.record_id)
    assert ctx.proc.request_count > before


@pytest.mark.parametrize(
    "actor", [SERVICE, ADMIN, None, "ops@mizaic.example"], ids=["service", "admin", "none", "str"]
)
def test_only_a_processor_operator_registers_controllers(ctx: Ctx, actor: Any) -> None:
    cid = new_controller_id()
    before = account_state(ctx.conn, ("mizaic-registry",))
    requests = ctx.proc.request_count
    with pytest.raises(AccessDeniedError):
        ctx.proc.register_controller(cid, name="T", actor=actor)
    assert ctx.proc.request_count == requests
    assert account_state(ctx.conn, ("mizaic-registry",)) == before
    assert f"mzc-{cid}" not in account_state(ctx.conn, ())["containers"]


@pytest.mark.parametrize(
    "options",
    [
        {"retry_total": -1}, {"retry_total": 21}, {"retry_total": "5"},
        {"key_cache_ttl": 0}, {"key_cache_ttl": 3601}, {"key_cache_ttl": "300"},
        {"chunk_size": 15}, {"chunk_size": 16 * 1024 * 1024 + 1}, {"chunk_size": 1024.0},
        {"keyring": object()}, {"keyring": None},
        {"retry_total": True}, {"key_cache_ttl": True}, {"chunk_size": True},
        {"retry_backoff": True}, {"retry_backoff": float("nan")}, {"clock": 5},
    ],
)
def test_invalid_processor_options_are_refused(azurite: AzuriteServer, options: dict) -> None:
    kwargs: dict[str, Any] = {"region": "uksouth", "keyring": LocalKeyring.generate()}
    kwargs.update(options)
    with pytest.raises(InvalidInputError):
        Processor.from_connection_string(azurite.connection_string, **kwargs)


def test_record_ids_may_come_from_any_iterable(ctx: Ctx) -> None:
    # as bulk reads take them: a generator, a set, dict values
    rid = ctx.ref.record_id
    for given in ((r for r in [rid]), {rid}, {"a": rid}.values()):
        instruction = ctx.admin.create_instruction("export", record_ids=given)
        assert instruction.record_ids == (rid,)


def test_breach_counts_take_int_likes_but_not_bools_floats_or_strings() -> None:
    from mizaic_processor._request_models import _count

    class Index:
        def __index__(self) -> int:
            return 12

    assert _count(12) == 12 and _count(Index()) == 12
    for bad in (True, 1.0, "5", b"5", None, object()):
        with pytest.raises(ValueError):
            _count(bad)


@pytest.mark.parametrize("credential", [object(), 5, 2.5])
def test_a_credential_the_sdk_cannot_use_is_invalid_input(credential: object) -> None:
    # it escaped as the SDK's TypeError("Unsupported credential")
    with pytest.raises(InvalidInputError):
        Processor("https://mizaicuks.blob.core.windows.net", credential, region="uksouth",
                  keyring=LocalKeyring.generate())


@pytest.mark.parametrize("conn", ["", None, 5])
def test_a_missing_connection_string_is_refused(conn: Any) -> None:
    with pytest.raises(InvalidInputError):
        Processor.from_connection_string(conn, region="uksouth", keyring=LocalKeyring.generate())


# -- more invalid input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"fields": "ab"}, {"fields": 5}, {"fields": [1, 2]}, {"fields": [("a", 1)]},
     {"events": "ab"}, {"events": 5}, {"events": [("e", D)]}],
    ids=["fields-str", "fields-int", "fields-list", "fields-pairs", "events-str", "events-int",
         "events-pairs"],
)
def test_fields_and_events_that_are_not_mappings_are_invalid_input(
    ctx: Ctx, kwargs: dict[str, Any]
) -> None:
    requests = ctx.proc.request_count
    with pytest.raises(InvalidInputError):
        ctx.svc.create_record(NHSNumber(NHS), category="adult", **kwargs)
    with pytest.raises(InvalidInputError):
        ctx.svc.update_record(ctx.ref.record_id, etag=ctx.ref.etag, **kwargs)
    assert ctx.proc.request_count == requests


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1.0, float("-inf")]],
                         ids=["nan", "inf", "nested-inf"])
def test_non_finite_floats_are_invalid_input(ctx: Ctx, value: Any) -> None:
    with pytest.raises(InvalidInputError):
        ctx.svc.create_record(NHSNumber(NHS), category="adult", fields={"a": value})


@pytest.mark.parametrize("value", [0, 1704067200, b"2024-01-01"], ids=["zero", "ts", "bytes"])
def test_events_that_are_not_dates_are_invalid_input(ctx: Ctx, value: Any) -> None:
    with pytest.raises(InvalidInputError):
        ctx.svc.create_record(
            NHSNumber(NHS), category="adult", events={"last_treatment": value}
        )


def _data_blobs(ctx: Ctx) -> list[tuple[str, str, int]]:
    """Every blob of the controller's container but the audit trail."""
    container = f"mzc-{ctx.cid}"
    state = account_state(ctx.conn, (container,))[container]
    return [blob for blob in state if not blob[0].startswith("audit/")]


def test_a_content_stream_yielding_text_writes_nothing(ctx: Ctx) -> None:
    def data() -> list[tuple[str, str, int]]:
        return _data_blobs(ctx)

    before = data()
    with pytest.raises(InvalidInputError):
        ctx.svc.create_record(
            HospitalNumber("NEW-" + uuid.uuid4().hex[:8].upper()), category="adult",
            content=_Text(), content_type="text/plain",
        )
    assert data() == before  # no subjects/<skid>, no index/<blind index> for the new subject


class _Pieces:
    """A binary stream that yields the given pieces, one per read (after the probe)."""

    def __init__(self, *pieces: object) -> None:
        self._pieces = list(pieces)

    def read(self, size: int = -1) -> object:
        return self._pieces.pop(0) if size and self._pieces else b""


def test_a_stream_of_views_that_are_not_contiguous_is_stored_as_the_bytes_they_show(
    ctx: Ctx,
) -> None:
    whole = bytes(range(256)) * 64
    pieces = (memoryview(whole)[::2], memoryview(whole)[::-3])
    ref = ctx.svc.create_record(
        HospitalNumber("NEW-" + uuid.uuid4().hex[:8].upper()), category="adult",
        content=_Pieces(*pieces), content_type=PDF,
    )
    with ctx.svc.open_content(ref.record_id) as reader:
        assert reader.read() == b"".join(bytes(p) for p in pieces)


def test_a_content_stream_yielding_a_released_view_writes_nothing(ctx: Ctx) -> None:
    def data() -> list[tuple[str, str, int]]:
        return _data_blobs(ctx)

    before = data()
    with pytest.raises(InvalidInputError, match="must yield bytes"):
        ctx.svc.create_record(
            NHSNumber(NHS), category="adult", content=_Pieces(b"a page", _released()),
            content_type=PDF,
        )
    with pytest.raises(InvalidInputError, match="must yield bytes"):
        ctx.svc.update_record(
            ctx.ref.record_id, etag=ctx.ref.etag, content=_Pieces(_released()),
            content_type=PDF,
        )
    assert data() == before
    record = ctx.svc.get_record(ctx.ref.record_id)
    assert (record.version, record.fields) == (1, {"a": 1})
