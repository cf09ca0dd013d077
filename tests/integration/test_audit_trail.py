"""The tamper-evident audit trail against a real Azurite (DESIGN §2.7, §7; issue 5 item 1).

A full scenario leaves a trail that verifies and that ``query`` finds by record, actor,
subject and time. Five kinds of tampering done directly on the raw append blobs with the
Azure SDK (alter, remove, reorder, insert, truncate), plus a deleted chain and a forged
checkpoint, are each named by ``verify()`` with the exact chain, sequence number and kind.
An export verifies offline with the standard library alone, and its FHIR Bundle validates.
No plaintext identifier, field name, field value or content reaches the audit blobs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    Actor,
    ConflictError,
    ControllerScope,
    HospitalNumber,
    LocalKeyring,
    NHSNumber,
    Processor,
)
from mizaic_processor.errors import AuditTamperedError
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
NHS = "9434765919"
NHS_FORMS = ("9434765919", "943 476 5919", "943-476-5919")
HOSPITAL = "RJ1-CASE-77231"
FIELD_NAME = "allergy_note"
FIELD_VALUE = "penicillin anaphylaxis grade IV"
SECOND_FIELD = "systolic_mmhg"
CONTENT = b"%PDF-1.7 scanned case note of a patient with an unusual phrase: zebra-quince"
PDF = "application/pdf"
T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def new_controller_id() -> str:
    return "au" + uuid.uuid4().hex[:12]


class StepClock:
    """An injected clock that stays where a test puts it."""

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            self._now = when


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def ring() -> LocalKeyring:
    return LocalKeyring.generate()


@pytest.fixture
def service_client(azurite: AzuriteServer) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


def open_processor(
    azurite: AzuriteServer, ring: LocalKeyring, clock: StepClock | None = None
) -> Processor:
    return Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=ring, retry_total=1,
        clock=clock or StepClock(T0),
    )


def audit_blobs(raw: ContainerClient) -> dict[str, bytes]:
    return {
        name: raw.download_blob(name).readall()
        for prefix in ("audit/", "audit-checkpoints/")
        for name in raw.list_blob_names(name_starts_with=prefix)
    }


# -- a full scenario ------------------------------------------------------------------------


@dataclass
class Scenario:
    cid: str
    clock: StepClock
    service: ControllerScope
    admin: ControllerScope
    record_id: str
    kept_record_id: str
    other_record_id: str
    instruction_id: str
    raw: ContainerClient


@pytest.fixture
def scenario(
    azurite: AzuriteServer, ring: LocalKeyring, service_client: BlobServiceClient
) -> Iterator[Scenario]:
    """register (t0), create x3 (t1: two records of the NHS number, one of a hospital
    number), get (t2), selective get (t3), list (t4), update (t5), stale update (t6), content
    read by the admin (t7), deletion instruction and delete by the admin (t8); queries run at
    t30. The subject keeps a record, so nothing is erased (no crypto-shredding)."""
    clock = StepClock(at(0))
    with open_processor(azurite, ring, clock) as proc:
        cid = new_controller_id()
        proc.register_controller(cid, name="Audit Trust", actor=OPERATOR)
        service = proc.tenant(cid, actor=SERVICE)
        admin = proc.tenant(cid, actor=ADMIN)
        clock.set(at(1))
        ref = service.create_record(
            NHSNumber(NHS), category="adult",
            fields={FIELD_NAME: FIELD_VALUE, SECOND_FIELD: 142},
            content=CONTENT, content_type=PDF,
        )
        kept = service.create_record(NHSNumber(NHS), category="adult")
        other = service.create_record(HospitalNumber(HOSPITAL), category="maternity")
        clock.set(at(2))
        assert service.get_record(ref.record_id).fields[FIELD_NAME] == FIELD_VALUE
        clock.set(at(3))
        assert service.get_record(ref.record_id, fields=[SECOND_FIELD]).fields == {
            SECOND_FIELD: 142
        }
        clock.set(at(4))
        assert set(service.list_records(NHSNumber(NHS))) == {ref.record_id, kept.record_id}
        clock.set(at(5))
        service.update_record(ref.record_id, etag=ref.etag, fields={SECOND_FIELD: 150})
        clock.set(at(6))
        with pytest.raises(ConflictError):
            service.update_record(ref.record_id, etag=ref.etag, fields={SECOND_FIELD: 1})
        clock.set(at(7))
        with admin.open_content(ref.record_id) as reader:
            assert reader.read() == CONTENT
        clock.set(at(8))
        instruction = admin.create_instruction("deletion", record_ids=[ref.record_id])
        admin.delete_record(ref.record_id, instruction_id=instruction.instruction_id)
        clock.set(at(30))
        yield Scenario(
            cid, clock, service, admin, ref.record_id, kept.record_id, other.record_id,
            instruction.instruction_id,
            service_client.get_container_client(f"mzc-{cid}"),
        )


def test_the_trail_of_a_full_scenario_verifies_with_every_event_counted(
    scenario: Scenario,
) -> None:
    report = scenario.admin.audit.verify()

    # register, 3 creates, 2 reads, find, update, stale update (intent + failure),
    # content read, the deletion instruction, the destruction, and the verification itself
    assert (report.chains, report.events) == (1, 14)
    assert report.checkpoints >= 1


def test_query_by_record_id_lists_its_whole_history_with_outcomes(scenario: Scenario) -> None:
    events = list(scenario.admin.audit.query(record_id=scenario.record_id))

    assert [(e.operation, e.action, e.outcome) for e in events] == [
        ("record.create", "C", "success"),
        ("record.read", "R", "success"),
        ("record.read", "R", "success"),
        ("record.update", "U", "success"),
        ("record.update", "U", "success"),  # the stale update's intent ...
        ("record.update", "U", "failure"),  # ... and its refusal, referring to it
        ("content.read", "R", "success"),
        ("record.destroy", "D", "success"),
    ]
    assert events[5].ref == events[4].id
    assert events[7].policy == scenario.instruction_id
    assert all(e.ref is None for e in events[:5] + events[6:])
    assert [e.actor for e in events] == [SERVICE.id] * 6 + [ADMIN.id] * 2
    assert [e.role for e in events] == ["service"] * 6 + ["controller_admin"] * 2
    assert {e.purpose for e in events[:6]} == {"TREAT"}
    assert {e.purpose for e in events[6:]} == {"HOPERAT"}


def test_query_by_actor_returns_only_that_actors_events(scenario: Scenario) -> None:
    by_service = list(scenario.admin.audit.query(actor=SERVICE.id))
    by_admin = list(scenario.admin.audit.query(actor=ADMIN.id))

    assert {e.actor for e in by_service} == {SERVICE.id}
    assert [e.operation for e in by_service] == [
        "record.create", "record.create", "record.create", "record.read", "record.read",
        "subject.find", "record.update", "record.update", "record.update",
    ]
    assert {e.actor for e in by_admin} == {ADMIN.id}
    assert [e.operation for e in by_admin][:3] == [
        "content.read", "instruction.create", "record.destroy",
    ]
    assert list(scenario.admin.audit.query(actor="nobody-at-all")) == []


def test_query_by_subject_finds_its_events_through_the_pseudonym_only(
    scenario: Scenario,
) -> None:
    nhs_events = list(scenario.admin.audit.query(subject=NHSNumber("943 476 5919")))
    hospital_events = list(scenario.admin.audit.query(subject=HospitalNumber(HOSPITAL)))

    assert [e.operation for e in nhs_events] == [
        "record.create", "record.create", "record.read", "record.read", "subject.find",
        "record.update", "record.update", "record.update", "content.read", "record.destroy",
    ]
    assert scenario.kept_record_id in {e.entity for e in nhs_events}
    assert scenario.other_record_id not in {e.entity for e in nhs_events}
    assert [(e.operation, e.entity) for e in hospital_events] == [
        ("record.create", scenario.other_record_id)
    ]
    assert list(scenario.admin.audit.query(subject=NHSNumber("4010232137"))) == []


def test_query_by_time_window_is_inclusive_and_exact(scenario: Scenario) -> None:
    window = list(scenario.admin.audit.query(since=at(2), until=at(4)))
    combined = list(
        scenario.admin.audit.query(since=at(5), until=at(6), record_id=scenario.record_id)
    )

    assert [(e.operation, e.recorded) for e in window] == [
        ("record.read", at(2)), ("record.read", at(3)), ("subject.find", at(4)),
    ]
    assert [(e.operation, e.outcome) for e in combined] == [
        ("record.update", "success"), ("record.update", "success"),
        ("record.update", "failure"),
    ]


def test_the_raw_audit_blobs_hold_no_plaintext_identifier_field_or_content(
    scenario: Scenario,
) -> None:
    scenario.admin.audit.verify()
    blobs = audit_blobs(scenario.raw)
    secrets = [
        *NHS_FORMS, HOSPITAL, HOSPITAL.lower(), FIELD_NAME, FIELD_VALUE, SECOND_FIELD,
        CONTENT[:20].decode(), "zebra-quince",
    ]

    assert any(name.startswith("audit/") for name in blobs)
    assert any(name.startswith("audit-checkpoints/") for name in blobs)
    for name, data in blobs.items():
        text = name + data.decode("utf-8")
        for secret in secrets:
            assert secret not in text, (name, secret)


# -- export ---------------------------------------------------------------------------------


def run_offline_verifier(
    directory: Path, *, with_key: bool = False
) -> subprocess.CompletedProcess[str]:
    # -I: isolated (no environment, no user site); -S: no site-packages at all, so the
    # verifier can only be using the standard library.
    key = ["--key", (directory / "audit_key.hex").read_text().strip()] if with_key else []
    return subprocess.run(
        [sys.executable, "-I", "-S", str(directory / "verify_audit.py"), str(directory), *key],
        capture_output=True, text=True, timeout=60, check=False, cwd=directory,
    )


def test_an_exported_trail_verifies_offline_with_the_standard_library_alone(
    scenario: Scenario, tmp_path: Path
) -> None:
    out = scenario.admin.audit.export(tmp_path / "export")

    result = run_offline_verifier(out)
    keyed = run_offline_verifier(out, with_key=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("OK:")
    assert keyed.returncode == 0, keyed.stdout + keyed.stderr


def test_the_offline_verifier_with_the_key_exits_1_on_a_forged_exported_checkpoint(
    scenario: Scenario, tmp_path: Path
) -> None:
    out = scenario.admin.audit.export(tmp_path / "export")
    checkpoints = json.loads((out / "checkpoints.json").read_text())
    checkpoints[0]["sig"] = hashlib.sha256(b"not the audit key").hexdigest()
    (out / "checkpoints.json").write_text(json.dumps(checkpoints))

    keyed = run_offline_verifier(out, with_key=True)

    assert keyed.returncode == 1, keyed.stdout + keyed.stderr
    assert "forged checkpoint" in keyed.stdout


def test_the_offline_verifier_exits_1_after_one_exported_line_is_altered(
    scenario: Scenario, tmp_path: Path
) -> None:
    out = scenario.admin.audit.export(tmp_path / "export")
    (chain_file,) = (out / "chains").glob("*.ndjson")
    lines = chain_file.read_bytes().splitlines()
    event = json.loads(lines[3])
    event["actor"] = "someone-else"
    lines[3] = canonical(event)
    chain_file.write_bytes(b"".join(line + b"\n" for line in lines))

    result = run_offline_verifier(out)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "#4" in result.stdout
    assert "altered" in result.stdout


def test_the_exported_fhir_bundle_validates_as_r4_audit_events(
    scenario: Scenario, tmp_path: Path
) -> None:
    # fhir.resources 8 ships R5 as its default package and R4B (whose AuditEvent is R4's)
    # as fhir.resources.R4B; there is no plain R4 package, so R4B is the check used here.
    from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
    from fhir.resources.R4B.bundle import Bundle

    out = scenario.admin.audit.export(tmp_path / "export")
    text = (out / "auditevents.json").read_text()
    bundle = Bundle.model_validate_json(text)
    (chain_file,) = (out / "chains").glob("*.ndjson")
    lines = chain_file.read_bytes().splitlines()

    assert bundle.type == "collection"
    assert bundle.entry is not None and len(bundle.entry) == len(lines)
    resources = [entry.resource for entry in bundle.entry]
    assert all(isinstance(r, FhirAuditEvent) for r in resources)
    by_id = {r.id: r for r in resources}
    for line in lines:
        raw = json.loads(line)
        resource = by_id[raw["id"]]
        assert resource.action == raw["action"]
        assert resource.outcome == {"success": "0", "failure": "8"}[raw["outcome"]]
        assert resource.entity[0].what.identifier.value == raw["entity"]
        assert resource.agent[0].who.identifier.value == raw["actor"]
    for secret in (*NHS_FORMS, HOSPITAL, FIELD_NAME, FIELD_VALUE, "zebra-quince"):
        assert secret not in text


# -- tampering on the raw append blobs ------------------------------------------------------


def canonical(event: dict[str, object]) -> bytes:
    """The exact line encoding a careful forger would use (sorted, compact, ASCII)."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


@dataclass
class SealedChain:
    """A closed writer's chain: one segment, a signed genesis seal, and the final seal of
    close() at its last event."""

    cid: str
    chain: str
    segment: str
    lines: list[bytes]
    checkpoint: str
    raw: ContainerClient
    ring: LocalKeyring
    azurite: AzuriteServer

    def rewrite(self, lines: list[bytes]) -> None:
        """Delete the append blob and re-create it holding ``lines``."""
        blob = self.raw.get_blob_client(self.segment)
        blob.delete_blob()
        blob.create_append_blob()
        if lines:
            blob.append_block(b"".join(line + b"\n" for line in lines))

    def verify_fresh(self) -> None:
        """Verify from another process's point of view: a new processor and scope."""
        with open_processor(self.azurite, self.ring) as proc:
            proc.tenant(self.cid, actor=ADMIN).audit.verify()


@pytest.fixture
def sealed(
    azurite: AzuriteServer, ring: LocalKeyring, service_client: BlobServiceClient
) -> SealedChain:
    cid = new_controller_id()
    with open_processor(azurite, ring) as proc:
        proc.register_controller(cid, name="Tamper Trust", actor=OPERATOR)
        scope = proc.tenant(cid, actor=SERVICE)
        for i in range(3):
            ref = scope.create_record(NHSNumber(NHS), category="adult", fields={"i": i})
            scope.get_record(ref.record_id)
            scope.update_record(ref.record_id, etag=ref.etag, fields={"i": i + 1})
    # 1 + 3 * 3 = 10 events, sealed by close()
    raw = service_client.get_container_client(f"mzc-{cid}")
    (segment,) = raw.list_blob_names(name_starts_with="audit/")
    chain = segment.split("/")[1]
    genesis, checkpoint = sorted(raw.list_blob_names(name_starts_with="audit-checkpoints/"))
    lines = raw.download_blob(segment).readall().splitlines()
    assert len(lines) == 10
    assert genesis == f"audit-checkpoints/{chain}/{0:012d}"
    assert checkpoint == f"audit-checkpoints/{chain}/{10:012d}.final"
    sealed = SealedChain(cid, chain, segment, lines, checkpoint, raw, ring, azurite)
    sealed.verify_fresh()  # intact before any tampering
    return sealed


def broken(sealed: SealedChain) -> tuple[str, int, str]:
    with pytest.raises(AuditTamperedError) as caught:
        sealed.verify_fresh()
    return caught.value.chain, caught.value.seq, caught.value.kind


def altered(line: bytes, **changes: object) -> bytes:
    event = json.loads(line)
    event.update(changes)
    return canonical(event)


def test_an_altered_event_is_named_altered_at_its_sequence_number(sealed: SealedChain) -> None:
    lines = list(sealed.lines)
    lines[3] = altered(lines[3], actor="someone-innocent")  # event #4

    sealed.rewrite(lines)

    assert broken(sealed) == (sealed.chain, 4, "altered")


def test_an_altered_last_event_is_caught_by_the_checkpoint_that_sealed_it(
    sealed: SealedChain,
) -> None:
    lines = list(sealed.lines)
    lines[-1] = altered(lines[-1], outcome="failure")  # event #10, no successor

    sealed.rewrite(lines)

    assert broken(sealed) == (sealed.chain, 10, "altered")


def test_an_event_removed_from_the_middle_is_named_removed_at_its_sequence_number(
    sealed: SealedChain,
) -> None:
    lines = list(sealed.lines)
    del lines[4]  # event #5

    sealed.rewrite(lines)

    assert broken(sealed) == (sealed.chain, 5, "removed")


def test_two_swapped_events_are_detected_at_the_first_swapped_position(
    sealed: SealedChain,
) -> None:
    lines = list(sealed.lines)
    lines[4], lines[5] = lines[5], lines[4]  # events #5 and #6

    sealed.rewrite(lines)

    chain, seq, _ = broken(sealed)
    assert (chain, seq) == (sealed.chain, 5)


def test_two_swapped_events_are_named_reordered(sealed: SealedChain) -> None:
    lines = list(sealed.lines)
    lines[4], lines[5] = lines[5], lines[4]

    sealed.rewrite(lines)

    assert broken(sealed) == (sealed.chain, 5, "reordered")


def forged_after(lines: list[bytes], index: int) -> bytes:
    """A forged event that claims to follow ``lines[index]``, with a valid hash link."""
    genuine = json.loads(lines[index])
    forged = dict(genuine)
    forged.update(
        id="e" + "a" * 26, seq=genuine["seq"] + 1, prev=line_hash(lines[index]),
        actor="svc-epr", op="record.read", action="R", outcome="success",
    )
    return canonical(forged)


def test_a_forged_event_inserted_in_the_middle_is_named_inserted(sealed: SealedChain) -> None:
    lines = list(sealed.lines)
    lines.insert(5, forged_after(lines, 4))  # claims to be event #6, before the real #6

    sealed.rewrite(lines)

    chain, _, kind = broken(sealed)
    assert (chain, kind) == (sealed.chain, "inserted")


def test_a_forged_event_inserted_in_the_middle_is_named_at_its_own_sequence_number(
    sealed: SealedChain,
) -> None:
    lines = list(sealed.lines)
    lines.insert(5, forged_after(lines, 4))

    sealed.rewrite(lines)

    assert broken(sealed) == (sealed.chain, 6, "inserted")


def test_a_forged_event_appended_after_a_closed_chains_final_checkpoint_is_detected(
    sealed: SealedChain,
) -> None:
    lines = [*sealed.lines, forged_after(sealed.lines, len(sealed.lines) - 1)]

    sealed.rewrite(lines)

    assert broken(sealed) == (sealed.chain, 11, "inserted")


def test_a_whole_forged_chain_without_a_signed_checkpoint_is_detected(
    sealed: SealedChain,
) -> None:
    chain = "w" + "b" * 26
    first = json.loads(sealed.lines[2])
    first.update(chain=chain, seq=1, prev="0" * 64, id="e" + "c" * 26, actor="dr-framed")
    blob = sealed.raw.get_blob_client(f"audit/{chain}/00000001")
    blob.create_append_blob()
    blob.append_block(canonical(first) + b"\n")

    with pytest.raises(AuditTamperedError) as caught:
        sealed.verify_fresh()
    assert caught.value.chain == chain


def test_a_truncated_tail_is_named_truncated_at_the_first_missing_event(
    sealed: SealedChain,
) -> None:
    sealed.rewrite(sealed.lines[:7])  # events #8..#10 were sealed by the checkpoint

    assert broken(sealed) == (sealed.chain, 8, "truncated")


def test_a_deleted_chain_whose_checkpoint_exists_is_named_chain_missing(
    sealed: SealedChain,
) -> None:
    sealed.raw.delete_blob(sealed.segment)

    assert broken(sealed) == (sealed.chain, 10, "chain missing")


def test_a_checkpoint_with_a_forged_signature_is_named_forged_checkpoint(
    sealed: SealedChain,
) -> None:
    doc = json.loads(sealed.raw.download_blob(sealed.checkpoint).readall())
    doc["sig"] = hashlib.sha256(b"not the audit key").hexdigest()
    sealed.raw.upload_blob(sealed.checkpoint, json.dumps(doc).encode(), overwrite=True)

    assert broken(sealed) == (sealed.chain, 10, "forged checkpoint")


def test_a_truncation_covered_up_by_a_re_sealed_checkpoint_is_named_forged_checkpoint(
    sealed: SealedChain,
) -> None:
    doc = json.loads(sealed.raw.download_blob(sealed.checkpoint).readall())
    doc["body"].update(seq=7, head=line_hash(sealed.lines[6]))
    sealed.rewrite(sealed.lines[:7])
    sealed.raw.delete_blob(sealed.checkpoint)
    sealed.raw.upload_blob(f"audit-checkpoints/{sealed.chain}/{7:012d}", json.dumps(doc))

    assert broken(sealed) == (sealed.chain, 7, "forged checkpoint")
