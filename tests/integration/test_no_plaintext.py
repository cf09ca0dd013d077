"""No plaintext patient data at rest, in repr() or in exception messages.

One scenario writes, updates, reads, lists and deletes records holding known identifying
and clinical values on a dedicated Azurite. Then every container, blob name, metadata
entry, index tag, property and byte (and every queue message) is read back through the raw
SDK, and every file Azurite keeps on disk is read after it stopped, and searched for those
values in plain, case-folded, UTF-16, hex, base64 (all alignments), base32 and as unkeyed
SHA-256 hashes.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from mizaic_processor import (
    Actor,
    ConflictError,
    HospitalNumber,
    InvalidInputError,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    Processor,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")

NHS = "9434765919"
NHS_FORMS = ("9434765919", "943 476 5919", "943-476-5919")
NHS_OTHER = "4010232137"
HOSPITAL = "RJ1/QZ-778812"
NAME = "Aurelia Quenby-Fothergill"
DIAGNOSIS = "Kawasaki disease with coronary aneurysm"
HIV_VALUE = "HIV-1 antibody reactive Zanzibar"
DOB = dt.date(1983, 11, 27)
DOB_FORMS = ("1983-11-27", "19831127", "27/11/1983", "27-11-1983", "27.11.1983")
CONTENT = b"%PDF-1.7 DISTINCTIVE-CASE-NOTE Zebedee-Marchbanks-71 \x00\x01\xfe" * 40
CLINICAL_FIELDS = ("hiv_status", "mental_health_section_136", "termination_of_pregnancy")
BAD_NHS = "943 476 5918"  # wrong check digit: still a patient's typed identifier

TEXT_SECRETS: tuple[str, ...] = (
    *NHS_FORMS,
    NHS_OTHER,
    "401 023 2137",
    HOSPITAL,
    NAME,
    "Quenby-Fothergill",
    DIAGNOSIS,
    HIV_VALUE,
    *DOB_FORMS,
    *CLINICAL_FIELDS,
    "9434765918",
    "Zebedee-Marchbanks",
    "DISTINCTIVE-CASE-NOTE",
)
BYTE_SECRETS: tuple[bytes, ...] = (
    CONTENT[:64],
    # Unkeyed hashes of identifiers and content (a blind index must be keyed).
    hashlib.sha256(NHS.encode()).digest(),
    hashlib.sha256(NHS_OTHER.encode()).digest(),
    hashlib.sha256(HOSPITAL.encode()).digest(),
)
HEX_HASHES: tuple[str, ...] = tuple(s.hex() for s in BYTE_SECRETS[1:])
# An unkeyed fingerprint of a document: lets anyone holding a candidate document confirm it.
CONTENT_SHA256 = hashlib.sha256(CONTENT).digest()


def _b64_cores(secret: bytes, encode: type[object] | None = None) -> set[bytes]:
    """Substrings that any base64 encoding containing ``secret`` must contain, at each of
    the three alignments (the first and last 4-character groups may mix in other bytes)."""
    cores: set[bytes] = set()
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        for pad in range(3):
            text = enc(b"\x00" * pad + secret)
            core = text[4 if pad else 0 : -4]
            if len(core) >= 8:
                cores.add(core.rstrip(b"="))
    return cores


def _b32_cores(secret: bytes) -> set[bytes]:
    cores: set[bytes] = set()
    for pad in range(5):
        text = base64.b32encode(b"\x00" * pad + secret)
        core = text[8 if pad else 0 : -8]
        if len(core) >= 8:
            cores.add(core.lower())
            cores.add(core)
    return cores


def needles(
    texts: tuple[str, ...], raw_bytes: tuple[bytes, ...], hex_hashes: tuple[str, ...]
) -> dict[bytes, str]:
    """Every encoded form to look for, mapped to a description (never printed in full)."""
    out: dict[bytes, str] = {}
    raw_forms: list[tuple[bytes, str]] = [(s.encode(), f"text#{i}") for i, s in
                                          enumerate(texts)]
    raw_forms += [(b, f"bytes#{i}") for i, b in enumerate(raw_bytes)]
    raw_forms += [(h.encode(), f"sha256hex#{i}") for i, h in enumerate(hex_hashes)]
    for raw, label in raw_forms:
        out[raw] = label
        out[raw.hex().encode()] = label + "/hex"
        out[raw.hex().upper().encode()] = label + "/HEX"
        for core in _b64_cores(raw):
            out[core] = label + "/base64"
        for core in _b32_cores(raw):
            out[core] = label + "/base32"
    for i, s in enumerate(texts):
        out[s.encode("utf-16-le")] = f"text#{i}/utf-16-le"
        out[s.encode("utf-16-be")] = f"text#{i}/utf-16-be"
    return out


NEEDLES = needles(TEXT_SECRETS, BYTE_SECRETS, HEX_HASHES)
LOWER_TEXT = tuple(s.lower().encode() for s in TEXT_SECRETS)
CONTENT_HASH_NEEDLES = needles((), (CONTENT_SHA256,), (CONTENT_SHA256.hex(),))


def find_leaks(
    haystacks: Iterable[tuple[str, bytes]], wanted: dict[bytes, str] | None = None
) -> list[str]:
    """Where any secret shows up, as ``location: form`` (no secret values in the report)."""
    leaks = []
    for where, data in haystacks:
        for needle, label in (NEEDLES if wanted is None else wanted).items():
            if needle in data:
                leaks.append(f"{where}: {label}")
        if wanted is not None:
            continue
        folded = data.lower()
        for i, needle in enumerate(LOWER_TEXT):
            if needle in folded:
                leaks.append(f"{where}: text#{i}/case-folded")
    return sorted(set(leaks))


def text_leaks(
    texts: Iterable[tuple[str, str]], wanted: dict[bytes, str] | None = None
) -> list[str]:
    return find_leaks(
        ((where, text.encode("utf-8", "surrogatepass")) for where, text in texts), wanted
    )


# -- the scenario ----------------------------------------------------------------------------


@dataclass
class Scenario:
    storage: list[tuple[str, bytes]] = field(default_factory=list)
    disk: list[tuple[str, bytes]] = field(default_factory=list)
    blob_names: list[str] = field(default_factory=list)
    exceptions: list[tuple[str, BaseException]] = field(default_factory=list)
    objects: list[tuple[str, object]] = field(default_factory=list)
    values_seen: dict[str, object] = field(default_factory=dict)


def _expect(scenario: Scenario, label: str, exc_type: type[BaseException], call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except exc_type as exc:
        scenario.exceptions.append((label, exc))
    else:
        raise AssertionError(f"{label}: expected {exc_type.__name__}")


def run_scenario(proc: Processor, scenario: Scenario) -> None:
    ids = ["t" + os.urandom(5).hex(), "t" + os.urandom(5).hex()]
    for cid in ids:
        scenario.objects.append(
            ("controller", proc.register_controller(cid, name="Test Trust", actor=OPERATOR))
        )
    svc = proc.tenant(ids[0], actor=SERVICE)
    admin = proc.tenant(ids[0], actor=ADMIN)
    other = proc.tenant(ids[1], actor=SERVICE)
    scenario.objects += [("processor", proc), ("scope", svc), ("scope", admin)]

    refs = []
    for i, form in enumerate(NHS_FORMS):
        subject = NHSNumber(form)
        scenario.objects.append(("nhs", subject))
        refs.append(
            svc.create_record(
                subject,
                category="adult",
                fields={
                    "patient_name": NAME,
                    "diagnosis": DIAGNOSIS,
                    "hiv_status": HIV_VALUE,
                    "nested": {"name": NAME, "codes": [NHS, HOSPITAL], "n": i},
                },
                events={"date_of_birth": DOB, "diagnosis": DOB},
                content=CONTENT if i == 0 else io.BytesIO(CONTENT),
                content_type="application/pdf",
            )
        )
    local = HospitalNumber(HOSPITAL.lower())
    scenario.objects.append(("hospital", local))
    refs.append(svc.create_record(
        local, category="mental_health",
        fields={"mental_health_section_136": DIAGNOSIS, "termination_of_pregnancy": NAME},
        events={"date_of_birth": DOB},
    ))
    refs.append(other.create_record(
        NHSNumber(NHS), category="adult", fields={"patient_name": NAME}, content=CONTENT,
        content_type="application/pdf",
    ))
    refs.append(other.create_record(NHSNumber(NHS_OTHER), category="adult",
                                    fields={"hiv_status": HIV_VALUE}))
    scenario.objects += [("ref", r) for r in refs]

    # Updates: set, remove, replace content; and a stale one.
    up = svc.update_record(
        refs[0].record_id, etag=refs[0].etag, fields={"termination_of_pregnancy": DIAGNOSIS},
        remove_fields=["nested"], events={"last_treatment": DOB}, content=CONTENT[::-1] + CONTENT,
        content_type="application/pdf",
    )
    scenario.objects.append(("ref", up))
    _expect(scenario, "stale update", ConflictError, lambda: svc.update_record(
        refs[0].record_id, etag=refs[0].etag, fields={"hiv_status": HIV_VALUE}))

    # Reads, so that their objects can be checked.
    record = svc.get_record(refs[0].record_id)
    scenario.values_seen["fields"] = record.fields
    scenario.objects += [("record", record), ("subject", record.subject),
                         ("content-info", record.content)]
    scenario.objects.append(("record", svc.get_record(refs[3].record_id, fields=["hiv_status"])))
    with svc.open_content(refs[1].record_id) as reader:
        scenario.values_seen["content"] = reader.read()
        scenario.objects.append(("reader", reader))
    # Deletion on a documented instruction whose free-text note names the patient.
    note = f"Patient {NAME} ({NHS_FORMS[1]}), {DIAGNOSIS}: delete duplicate scan"
    instruction = admin.create_instruction(
        "deletion", subject=NHSNumber(NHS), record_ids=[refs[2].record_id], note=note
    )
    scenario.objects.append(("instruction", instruction))
    scenario.objects.append(
        ("evidence", admin.delete_record(refs[2].record_id,
                                         instruction_id=instruction.instruction_id))
    )
    scenario.values_seen["listed"] = sorted(svc.list_records(NHSNumber(NHS_FORMS[2])))
    scenario.values_seen["exists"] = svc.subject_exists(HospitalNumber(HOSPITAL))

    # Failures whose messages must not echo what was passed in.
    bad_calls = {
        "bad nhs check digit": lambda: NHSNumber(BAD_NHS),
        "bad nhs length": lambda: NHSNumber(NHS + "1"),
        "hospital number with a name": lambda: HospitalNumber(NAME),
        "category holding a diagnosis": lambda: svc.create_record(
            NHSNumber(NHS), category=DIAGNOSIS),
        "clinical field name with a space": lambda: svc.create_record(
            NHSNumber(NHS), category="adult", fields={"hiv status": HIV_VALUE}),
        "event name holding a name": lambda: svc.create_record(
            NHSNumber(NHS), category="adult", events={NAME: DOB}),
        "datetime event": lambda: svc.create_record(
            NHSNumber(NHS), category="adult",
            events={"date_of_birth": dt.datetime(1983, 11, 27, 9, 30)}),
        "event not a date": lambda: svc.create_record(
            NHSNumber(NHS), category="adult", events={"date_of_birth": "27/11/1983"}),
        "str content": lambda: svc.create_record(
            NHSNumber(NHS), category="adult", content=DIAGNOSIS, content_type="text/plain"),
        "bad content type": lambda: svc.create_record(
            NHSNumber(NHS), category="adult", content=CONTENT, content_type=DIAGNOSIS),
        "subject as a plain string": lambda: svc.create_record(NHS, category="adult"),
        "get with a bad field name": lambda: svc.get_record(
            refs[0].record_id, fields=[f"{NAME}"]),
        "remove a bad field name": lambda: svc.update_record(
            refs[0].record_id, etag=up.etag, remove_fields=[DIAGNOSIS]),
        "record id holding an nhs number": lambda: svc.get_record("r" + NHS * 5),
    }
    for label, call in bad_calls.items():
        _expect(scenario, label, MizaicError, call)
    _expect(scenario, "record of another controller", MizaicError,
            lambda: other.get_record(refs[0].record_id))


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    result = Scenario()
    location = tmp_path_factory.mktemp("azurite-plaintext")
    server = AzuriteServer(location)
    server.start()
    try:
        with Processor.from_connection_string(
            server.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
            chunk_size=1024, retry_total=1,
        ) as proc:
            run_scenario(proc, result)
        result.storage = inventory(server.connection_string, result.blob_names)
    finally:
        server.stop()  # SIGTERM: Azurite saves its metadata before exiting
    for path in sorted(Path(location).rglob("*")):
        if path.is_file():
            result.disk.append((str(path.relative_to(location)), path.read_bytes()))
    return result


def inventory(conn: str, names: list[str]) -> list[tuple[str, bytes]]:
    """Everything storage holds, each piece labelled by where it came from."""
    out: list[tuple[str, bytes]] = []
    with BlobServiceClient.from_connection_string(conn) as service:
        for container in service.list_containers(include_metadata=True):
            cname = container.name
            out.append((f"container {cname}", cname.encode()))
            out.append((f"container {cname} metadata", repr(container.metadata).encode()))
            client = service.get_container_client(cname)
            for blob in client.list_blobs(include=["metadata", "tags"]):
                where = f"{cname}/{blob.name}"
                names.append(where)
                blob_client = client.get_blob_client(blob.name)
                props = blob_client.get_blob_properties()
                settings = props.content_settings
                out += [
                    (f"{where} name", blob.name.encode()),
                    (f"{where} metadata", repr(props.metadata).encode()),
                    (f"{where} listed tags", repr(blob.tags).encode()),
                    (f"{where} tags", repr(blob_client.get_blob_tags()).encode()),
                    (f"{where} content settings", repr(
                        (settings.content_type, settings.content_disposition,
                         settings.content_encoding, settings.content_language,
                         settings.cache_control)).encode()),
                    (f"{where} bytes", blob_client.download_blob().readall()),
                ]
    with QueueServiceClient.from_connection_string(conn) as queues:
        for queue in queues.list_queues(include_metadata=True):
            out.append((f"queue {queue.name}", f"{queue.name} {queue.metadata}".encode()))
            with queues.get_queue_client(queue.name) as q:
                for message in q.peek_messages(max_messages=32):
                    out.append((f"queue {queue.name} message", str(message.content).encode()))
    return out


# -- the scanner finds what it looks for ------------------------------------------------------


@pytest.mark.parametrize("secret", [NHS, NAME, "hiv_status", DOB_FORMS[0]])
@pytest.mark.parametrize("prefix", [b"", b"x", b"xy", b"xyz", b"wxyz"])
def test_the_scanner_finds_every_encoded_form(secret: str, prefix: bytes) -> None:
    raw = prefix + secret.encode() + b"tail!"
    forms = {
        "plain": raw,
        "upper": raw.upper(),
        "hex": raw.hex().encode(),
        "base64": base64.b64encode(raw),
        "urlsafe": base64.urlsafe_b64encode(raw),
        "base32": base64.b32encode(raw).lower(),
        "utf16": (prefix.decode() + secret).encode("utf-16-le"),
    }
    for form, data in forms.items():
        assert find_leaks([(form, b"noise " + data + b" noise")]), form
    assert find_leaks([("hash", hashlib.sha256(NHS.encode()).hexdigest().encode())])
    assert not find_leaks([("clean", os.urandom(4096))])


# -- the scenario happened ----------------------------------------------------------------------


def test_the_scenario_round_tripped_its_values(scenario: Scenario) -> None:
    assert scenario.values_seen["fields"] == {
        "patient_name": NAME, "diagnosis": DIAGNOSIS, "hiv_status": HIV_VALUE,
        "termination_of_pregnancy": DIAGNOSIS,
    }
    assert scenario.values_seen["content"] == CONTENT
    assert len(scenario.values_seen["listed"]) == 2  # three created, one deleted
    assert scenario.values_seen["exists"] is True


def test_the_inventory_covers_every_kind_of_blob(scenario: Scenario) -> None:
    kinds = {name.split("/")[1] for name in scenario.blob_names}
    assert {"controllers", "keys", "subjects", "index", "records", "content"} <= kinds
    total = sum(len(data) for where, data in scenario.storage if where.endswith(" bytes"))
    assert total > 5 * len(CONTENT)
    assert sum(len(data) for _, data in scenario.disk) > total
    # The disk scan sees both blob bodies and Azurite's saved metadata (blob names).
    record_name = next(n for n in scenario.blob_names if "/records/" in n).split("/", 1)[1]
    assert any(b"Test Trust" in data for _, data in scenario.disk)
    assert any(record_name.encode() in data for _, data in scenario.disk)


# -- no plaintext at rest -------------------------------------------------------------------------


def test_no_patient_value_in_any_container_or_blob_name(scenario: Scenario) -> None:
    assert find_leaks((n, n.encode()) for n in scenario.blob_names) == []


def test_no_patient_value_in_metadata_tags_properties_or_bytes_of_any_blob(
    scenario: Scenario,
) -> None:
    assert find_leaks(scenario.storage) == []


def test_no_patient_value_in_any_file_azurite_keeps_on_disk(scenario: Scenario) -> None:
    assert find_leaks(scenario.disk) == []


# -- no plaintext in repr(), str() or exception messages ----------------------------------------


def test_no_patient_value_in_repr_or_str_of_library_objects(scenario: Scenario) -> None:
    kinds = {kind for kind, _ in scenario.objects}
    assert {"processor", "scope", "nhs", "hospital", "ref", "record", "subject",
            "content-info", "reader", "controller"} <= kinds
    texts: list[tuple[str, str]] = []
    for kind, obj in scenario.objects:
        texts += [(f"repr({kind})", repr(obj)), (f"str({kind})", str(obj)),
                  (f"format({kind})", f"{obj}")]
    assert text_leaks(texts) == []


def _chain(exc: BaseException, *, suppressed: bool = False) -> Iterator[BaseException]:
    """The exception and those chained to it as a traceback shows them (``__cause__``, and
    ``__context__`` unless ``raise ... from None`` suppressed it); with ``suppressed``, the
    suppressed contexts too (still reachable by any code that holds the exception)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        todo.append(current.__cause__)
        if suppressed or not current.__suppress_context__:
            todo.append(current.__context__)


def test_no_patient_value_in_exception_messages_or_their_chains(scenario: Scenario) -> None:
    assert len(scenario.exceptions) >= 15
    texts: list[tuple[str, str]] = []
    for label, exc in scenario.exceptions:
        for link in _chain(exc):
            texts += [(f"{label}: str", str(link)), (f"{label}: repr", repr(link)),
                      (f"{label}: args", repr(link.args))]
    assert text_leaks(texts) == []


def _message(call: object, *, suppressed: bool = False) -> str:
    try:
        call()  # type: ignore[operator]
    except InvalidInputError as exc:
        return " | ".join(str(link) for link in _chain(exc, suppressed=suppressed))
    raise AssertionError("expected InvalidInputError")


def test_an_invalid_nested_value_error_does_not_echo_the_nested_keys(
    processor: Processor,
) -> None:
    cid = "t" + os.urandom(5).hex()
    processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
    svc = processor.tenant(cid, actor=SERVICE)
    message = _message(lambda: svc.create_record(
        NHSNumber(NHS), category="adult", fields={"contacts": {NAME: {"mother"}}}))
    assert text_leaks([("message", message)]) == []


def test_an_invalid_field_value_error_does_not_echo_the_field_name(
    processor: Processor,
) -> None:
    cid = "t" + os.urandom(5).hex()
    processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
    svc = processor.tenant(cid, actor=SERVICE)
    message = _message(lambda: svc.create_record(
        NHSNumber(NHS), category="adult", fields={"hiv_status": {"reactive"}}))
    assert text_leaks([("message", message)]) == []


def test_a_refused_field_value_holds_no_patient_value_even_in_a_suppressed_context(
    processor: Processor,
) -> None:
    cid = "t" + os.urandom(5).hex()
    processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
    svc = processor.tenant(cid, actor=SERVICE)
    message = _message(
        lambda: svc.create_record(
            NHSNumber(NHS), category="adult", fields={"hiv_status": {NAME: {"mother"}}}
        ),
        suppressed=True,
    )
    assert text_leaks([("message", message)]) == []


def test_no_unkeyed_hash_of_a_document_is_kept_in_storage_or_repr(scenario: Scenario) -> None:
    texts = [(f"repr({kind})", repr(obj)) for kind, obj in scenario.objects]
    assert find_leaks(scenario.storage, CONTENT_HASH_NEEDLES) == []
    assert find_leaks(scenario.disk, CONTENT_HASH_NEEDLES) == []
    assert text_leaks(texts, CONTENT_HASH_NEEDLES) == []
