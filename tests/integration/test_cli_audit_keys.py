"""The real ``mizaic-processor`` console script, run in a subprocess against Azurite: the
``audit`` commands (verify, verify --json, export and the exported stand-alone verifier,
a tampered event named by chain and sequence number) and the ``keys rotate`` commands
(KEK, controller key, index key; ``--retire`` refused while other processes may still hold
the old keys, and refused outright for the KEK). The controller and its records are set up
in-process with ``Processor.from_settings()`` under the same ``MIZAIC_*`` environment,
and read back through the library afterwards."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import Actor, HospitalNumber, NHSNumber, Processor
from mizaic_processor._core import envelope
from mizaic_processor.models import SubjectId
from mizaic_processor.testing import AzuriteServer

SCRIPT = Path(sys.executable).with_name("mizaic-processor")
ADMIN_ID = "dpo@trust.example"
OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
NHS = "9434765919"
HOSPITAL = "RJ1-0042731"
PDF = "application/pdf"


@dataclass
class Trust:
    controller: str
    env: dict[str, str]
    raw: ContainerClient
    records: dict[str, tuple[SubjectId, dict[str, object], bytes]]
    outputs: list[str] = field(default_factory=list)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(SCRIPT), *args], env=self.env, capture_output=True, text=True, timeout=120,
            check=False,
        )
        self.outputs += [result.stdout, result.stderr]
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def read_back(self) -> None:
        """Every record, through a new library Processor built from the settings."""
        with Processor.from_settings() as processor:
            scope = processor.tenant(self.controller, actor=SERVICE)
            for record_id, (subject, fields, content) in self.records.items():
                assert scope.get_record(record_id).fields == fields
                with scope.open_content(record_id) as reader:
                    assert reader.read() == content
                assert record_id in set(scope.list_records(subject))

    def controller_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(
            self.raw.download_blob("keys/controller.json").readall())
        return doc


@pytest.fixture
def trust(
    azurite: AzuriteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Trust]:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run .venv/bin/pip install -e .")
    controller = "ak" + uuid.uuid4().hex[:10]
    for name in list(os.environ):
        if name.startswith("MIZAIC_"):
            monkeypatch.delenv(name)
    env = {
        "MIZAIC_CONNECTION_STRING": azurite.connection_string,
        "MIZAIC_REGION": "uksouth",
        "MIZAIC_LOCAL_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "MIZAIC_RETRY_TOTAL": "2",
        "MIZAIC_CONTROLLER": controller,
        "MIZAIC_ACTOR": ADMIN_ID,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    records: dict[str, tuple[SubjectId, dict[str, object], bytes]] = {}
    with Processor.from_settings() as processor:
        processor.register_controller(controller, name="CLI Trust", actor=OPERATOR)
        svc = processor.tenant(controller, actor=SERVICE)
        patients: list[SubjectId] = [NHSNumber(NHS), NHSNumber(NHS), HospitalNumber(HOSPITAL)]
        for n, subject in enumerate(patients):
            fields: dict[str, object] = {"n": n, "note": "seen in clinic"}
            content = f"letter {n}".encode()
            ref = svc.create_record(subject, category="adult", fields=fields, content=content,
                                    content_type=PDF)
            svc.get_record(ref.record_id)
            records[ref.record_id] = (subject, fields, content)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        made = Trust(controller, {**os.environ, **env},
                     service.get_container_client(f"mzc-{controller}"), records)
        yield made
    for text in made.outputs:  # no command printed a patient identifier or a key
        assert NHS not in text and "943 476 5919" not in text and HOSPITAL not in text
        assert "seen in clinic" not in text


def test_audit_verify_export_and_a_tampered_event(trust: Trust, tmp_path: Path) -> None:
    shown = trust.ok("audit", "verify")
    match = re.fullmatch(r"intact: (\d+) chains, (\d+) events, (\d+) checkpoints verified\n",
                         shown)
    assert match, shown
    assert int(match[1]) >= 1 and int(match[2]) >= 7 and int(match[3]) >= 1

    report = json.loads(trust.ok("audit", "verify", "--json"))
    assert report["intact"] is True
    assert report["chains"] >= int(match[1]) and report["events"] > int(match[2])
    assert set(report) == {"intact", "chains", "events", "checkpoints"}

    target = tmp_path / "export"
    exported = trust.ok("audit", "export", str(target))
    assert str(target) in exported and "verify_audit.py" in exported
    assert {p.name for p in target.iterdir()} >= {
        "chains", "checkpoints.json", "auditevents.json", "verify_audit.py", "audit_chain.py",
        "audit_key.hex"}
    # the stand-alone verifier, isolated from this environment (and, with -S, from every
    # installed package: the standard library only)
    key = (target / "audit_key.hex").read_text().strip()
    for flags, extra in ((["-I"], []), (["-I"], ["--key", key]), (["-I", "-S"], ["--key", key])):
        offline = subprocess.run(
            [sys.executable, *flags, str(target / "verify_audit.py"), str(target), *extra],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
            env={"PATH": os.environ.get("PATH", "")},
        )
        assert offline.returncode == 0, offline.stdout + offline.stderr
        assert offline.stdout.startswith("OK: ") and "checkpoints verified" in offline.stdout
    bundle = json.loads((target / "auditevents.json").read_text())
    assert bundle["resourceType"] == "Bundle"
    ops = {entry["resource"]["subtype"][0]["code"] for entry in bundle["entry"]}
    assert {"controller.register", "record.create", "record.read", "audit.verify"} <= ops
    assert {entry["resource"]["resourceType"] for entry in bundle["entry"]} == {"AuditEvent"}

    # tamper with one event of the set-up process's (closed, sealed) chain
    segments = sorted(trust.raw.list_blob_names(name_starts_with="audit/"))
    setup_segment = next(
        name for name in segments
        if b'"record.create"' in trust.raw.download_blob(name).readall())
    chain = setup_segment.split("/")[1]
    lines = trust.raw.download_blob(setup_segment).readall().splitlines()
    victim = next(i for i, line in enumerate(lines) if b'"record.read"' in line)
    event = json.loads(lines[victim])
    assert event["seq"] == victim + 1
    event["actor"] = "someone-innocent"
    lines[victim] = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
    blob = trust.raw.get_blob_client(setup_segment)
    blob.delete_blob()
    blob.create_append_blob()
    blob.append_block(b"".join(line + b"\n" for line in lines))

    broken = trust.run("audit", "verify")
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert broken.stdout == (
        f"BROKEN: audit trail broken: chain {chain}, event #{victim + 1}: altered\n")
    as_json = trust.run("audit", "verify", "--json")
    assert as_json.returncode == 1
    assert json.loads(as_json.stdout) == {
        "intact": False, "chain": chain, "seq": victim + 1, "kind": "altered"}
    refused = trust.run("audit", "export", str(tmp_path / "second"))
    assert refused.returncode == 1  # nothing is exported from a broken trail
    assert refused.stderr.count("\n") == 1 and "AuditTamperedError" in refused.stderr
    assert not (tmp_path / "second" / "chains").exists()


def _wrapped_versions(trust: Trust) -> set[int]:
    versions = set()
    for name in trust.raw.list_blob_names(name_starts_with="subjects/"):
        doc = json.loads(trust.raw.download_blob(name).readall())
        versions.add(envelope.wrapped_key_version(base64.b64decode(doc["wrapped"])))
    return versions


def test_keys_rotate_commands_and_retire_refusals(trust: Trust) -> None:
    records_before = {
        b.name: b.etag for prefix in ("records/", "content/")
        for b in trust.raw.list_blobs(name_starts_with=prefix)}

    kek = trust.ok("keys", "rotate", "kek")
    assert kek == f"new KEK version: local:mizaic-{trust.controller}/2\n"
    doc = trust.controller_doc()
    assert doc["versions"]["1"]["wrapped"]["key_id"] == (
        f"local:mizaic-{trust.controller}/2")

    rotated = trust.ok("keys", "rotate", "controller-key")
    assert rotated == "controller key v2: 2 of 2 subject keys re-wrapped\n"
    assert _wrapped_versions(trust) == {2}
    again = trust.ok("keys", "rotate", "controller-key")  # resumable: nothing left, no v3
    assert again == "controller key v2: 0 of 2 subject keys re-wrapped\n"

    reindexed = trust.ok("keys", "rotate", "index-key")
    assert reindexed == "index key v2: 2 of 2 entries re-indexed (0 without records)\n"

    for which in ("controller-key", "index-key"):
        early = trust.run("keys", "rotate", which, "--retire")
        assert early.returncode == 1, early.stderr
        assert early.stdout == ""
        assert early.stderr.count("\n") == 1, early.stderr
        assert early.stderr.startswith("mizaic-processor: failed: ConflictError: too soon")
        assert "3600 s" in early.stderr

    kek_retire = trust.run("keys", "rotate", "kek", "--retire")
    assert kek_retire.returncode == 2
    assert kek_retire.stdout == ""
    assert kek_retire.stderr == (
        "mizaic-processor: error: --retire does not apply to the KEK: disable its old "
        "version in the vault\n")

    doc = trust.controller_doc()
    assert set(doc["versions"]) == {"1", "2"}
    assert (doc["current"], doc["index_current"]) == (2, 2)
    assert set(doc["subkeys"]) == {"audit", "data", "index-1", "index-2"}
    records_after = {
        b.name: b.etag for prefix in ("records/", "content/")
        for b in trust.raw.list_blobs(name_starts_with=prefix)}
    assert records_after == records_before  # nothing re-encrypted
    trust.read_back()

    verified = trust.ok("audit", "verify")
    assert verified.startswith("intact: ")
    with Processor.from_settings() as processor:
        events = processor.tenant(
            trust.controller, actor=Actor.controller_admin(ADMIN_ID)).audit.query()
    steps = [(e.operation, e.outcome) for e in events if e.operation.startswith("key.")]
    assert steps.count(("key.rotate_kek", "success")) == 1
    assert steps.count(("key.rotate_controller_key", "success")) == 1
    assert steps.count(("key.rotate_index_key", "success")) == 1
    assert {e.actor for e in events if e.operation.startswith("key.")} == {ADMIN_ID}


def test_keys_verify_index_puts_back_a_lost_entry_and_says_so(trust: Trust) -> None:
    sound = trust.ok("keys", "verify-index")
    assert sound == ("2 subject keys examined (0 without records): 0 index entries put back, "
                     "0 split subjects, 0 damaged\n")

    (lost, *_rest) = sorted(trust.raw.list_blob_names(name_starts_with="index/"))
    trust.raw.delete_blob(lost)
    found = trust.run("keys", "verify-index", "--json")
    assert found.returncode == 1, found.stderr  # something was wrong: a script can tell
    assert json.loads(found.stdout) == {
        "examined": 2, "restored": 1, "split": [], "damaged": [], "without_records": 0}
    assert lost in set(trust.raw.list_blob_names(name_starts_with="index/"))
    trust.read_back()  # every record found by its patient's identifier again
    assert trust.ok("keys", "verify-index", "--json") == (
        '{"examined": 2, "restored": 0, "split": [], "damaged": [], "without_records": 0}\n')
