"""The real ``mizaic-processor`` console script, run in a subprocess against Azurite: the
``retention`` commands a records manager uses (instructions, holds, appraisal, approval,
destruction with a progress bar on a terminal, evidence) and bad input (exit status 2, one
line on stderr, no traceback). The controller and its records are set up in-process with
``Processor.from_settings()`` under the same ``MIZAIC_*`` environment."""

from __future__ import annotations

import datetime as dt
import json
import os
import pty
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mizaic_processor import Actor, HospitalNumber, NHSNumber, Processor
from mizaic_processor.testing import AzuriteServer

SCRIPT = Path(sys.executable).with_name("mizaic-processor")
ADMIN_ID = "records.manager@trust.example"
NHS = "9434765919"
HOSPITAL = "RJ1-0042731"
OLD = {"last_treatment": dt.date(2012, 1, 1)}


@dataclass
class Trust:
    controller: str
    held: str  # a due record of the NHS-number patient
    due: list[str]  # due records of the hospital-number patient
    orphan: str  # a record whose category has no instruction
    outputs: list[str]  # everything the commands printed, to check for identifiers

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
            input=input, check=False,
        )
        self.outputs += [result.stdout, result.stderr]
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))


@pytest.fixture
def trust(
    azurite: AzuriteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Trust]:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is missing: run .venv/bin/pip install -e .")
    controller = "t" + uuid.uuid4().hex[:10]
    for name in list(os.environ):
        if name.startswith("MIZAIC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MIZAIC_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("MIZAIC_REGION", "uksouth")
    monkeypatch.setenv("MIZAIC_LOCAL_KEYRING_PATH", str(tmp_path / "keyring.json"))
    monkeypatch.setenv("MIZAIC_RETRY_TOTAL", "2")
    monkeypatch.setenv("MIZAIC_CONTROLLER", controller)
    monkeypatch.setenv("MIZAIC_ACTOR", ADMIN_ID)
    with Processor.from_settings() as processor:
        processor.register_controller(
            controller, name="Test Trust", actor=Actor.processor_operator("ops@mizaic.example")
        )
        svc = processor.tenant(controller, actor=Actor.service("svc-epr"))
        held = svc.create_record(NHSNumber(NHS), category="adult", fields={"n": 0}, events=OLD)
        due = [
            svc.create_record(HospitalNumber(HOSPITAL), category="adult", fields={"n": n},
                              events=OLD).record_id
            for n in range(3)
        ]
        orphan = svc.create_record(HospitalNumber(HOSPITAL), category="research_cohort",
                                   events=OLD)
    trust = Trust(controller, held.record_id, due, orphan.record_id, [])
    yield trust
    for text in trust.outputs:  # no command ever printed a patient identifier
        assert NHS not in text and "943 476 5919" not in text and HOSPITAL not in text


def test_instructions_show_set_adopt_preset_history_and_recompute(
    trust: Trust, tmp_path: Path
) -> None:
    adopted = trust.ok("retention", "adopt-preset")
    assert "adopted nhs-records-code-2021: 8 categories" in adopted
    assert "until 25th birthday (26th if aged 17+" in adopted
    shown = {i["category"]: i for i in trust.json("retention", "show")}
    assert set(shown) == {"adult", "adult_social_care", "child", "maternity", "mental_health",
                          "gp", "oncology", "inquiry"}
    assert shown["adult"]["version"] == 1 and shown["adult"]["issued_by"] == ADMIN_ID

    refused = trust.run("retention", "set", "adult", "--period", "P5Y",
                        "--trigger", "last_treatment")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "minimum" in refused.stderr
    flagged = trust.ok("retention", "set", "adult", "--period", "P6Y", "--trigger",
                       "last_treatment", "--trigger", "last_seen",
                       "--override-reason", "Board minute 2024/17")
    assert "version 2" in flagged and "FLAGGED" in flagged
    assert "retention recompute adult" in flagged

    rule = {"clauses": [{"kind": "after_events", "period": "P10Y",
                         "events": ["end_of_treatment", "last_treatment", "last_seen",
                                    "date_of_death"]}],
            "on_expiry": "appraise"}
    (tmp_path / "rule.json").write_text(json.dumps(rule))
    third = trust.json("retention", "set", "adult", "--rule-json", str(tmp_path / "rule.json"))
    assert (third["version"], third["below_minimum"]) == (3, False)
    assert third["summary"] == (
        "P10Y after latest of (end_of_treatment, last_treatment, last_seen, date_of_death)"
    )

    history = trust.json("retention", "history", "adult")
    assert [(h["version"], h["below_minimum"], h["preset"]) for h in history] == [
        (1, False, "nhs-records-code-2021"), (2, True, None), (3, False, None)
    ]
    assert history[1]["override_reason"] == "Board minute 2024/17"
    table = trust.ok("retention", "show")
    assert "BELOW CODE MINIMUM (override)" not in table  # version 3 is current
    assert table.count("preset nhs-records-code-2021") == 7 and "\nadult  " in table

    recomputed = trust.ok("retention", "recompute", "adult")
    assert "recomputed the due dates of 4 records" in recomputed


def test_holds_appraise_approve_destroy_and_evidence(trust: Trust) -> None:
    with Processor.from_settings() as processor:  # the preset, adopted in-process
        processor.tenant(trust.controller, actor=Actor.controller_admin(ADMIN_ID)) \
            .retention.adopt_preset()
    placed = trust.json("retention", "holds", "place", "--kind", "legal",
                        "--reason", "Claim 2031/7", "--nhs-number", NHS)
    assert (placed["kind"], placed["placed_by"], placed["released_at"]) == (
        "legal", ADMIN_ID, None)
    assert placed["subject_ref"] == trust.held[1:27]  # pseudonymous, never the number
    listed = trust.ok("retention", "holds", "list")
    assert placed["hold_id"] in listed and "Claim 2031/7" in listed and "in force" in listed

    appraisal = trust.json("retention", "appraise", "--as-of", "2033-03-01")
    assert {i["record_id"] for i in appraisal["due"]} == set(trust.due)
    assert [(i["record_id"], i["hold_ids"]) for i in appraisal["held"]] == [
        (trust.held, [placed["hold_id"]])
    ]
    assert [i["record_id"] for i in appraisal["no_instruction"]] == [trust.orphan]
    assert {i["retain_until"] for i in appraisal["due"]} == {"2020-01-01"}
    table = trust.ok("retention", "appraise", "--as-of", "2033-03-01")
    assert "Due for destruction: 3" in table and "Held (kept: a hold is in force): 1" in table
    assert "No instruction (kept, never due): 1" in table

    appraisal_id = appraisal["appraisal_id"]
    approved = trust.ok("retention", "approve", appraisal_id, "--record", trust.due[0],
                        "--record", trust.due[1], "--note", "Records committee 12 March")
    assert "approved destroying 2 of 3 due records" in approved

    destroyed = run_on_terminal(["retention", "destroy", appraisal_id])
    trust.outputs.append(destroyed)
    assert "destroying [" in destroyed  # the progress bar, on a terminal
    summary = destroyed[destroyed.index("appraisal " + appraisal_id):]
    assert "destroyed now:          2" in summary
    assert "kept, not approved:     2" in summary  # the third due record, and the held one
    assert "subjects crypto-shredded: 0" in summary  # both patients still have records

    evidence = trust.json("retention", "evidence")
    assert sorted(e["record_id"] for e in evidence) == sorted(trust.due[:2])
    assert {(e["status"], e["appraisal_id"], e["approved_by"], e["category"],
             e["instruction_version"]) for e in evidence} == {
        ("destroyed", appraisal_id, ADMIN_ID, "adult", 1)
    }
    again = trust.json("retention", "destroy", appraisal_id)  # no terminal: no bar
    assert again["counts"]["destroyed"] == 0 and again["counts"]["already_destroyed"] == 2

    released = trust.ok("retention", "holds", "release", placed["hold_id"],
                        "--reason", "Claim withdrawn")
    assert f"released hold {placed['hold_id']}" in released
    holds = trust.json("retention", "holds", "list", "--all")
    assert [(h["hold_id"], h["released_by"], h["release_reason"]) for h in holds] == [
        (placed["hold_id"], ADMIN_ID, "Claim withdrawn")
    ]


def run_on_terminal(args: list[str]) -> str:
    """Run the console script with stdout and stderr on a pseudo-terminal; its output."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(SCRIPT), *args], stdout=follower, stderr=follower, stdin=subprocess.DEVNULL,
        )
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        assert process.wait(timeout=120) == 0, b"".join(chunks).decode()
    finally:
        os.close(leader)
    return b"".join(chunks).decode().replace("\r\n", "\n")


# 30,000 nested lists: under the 64 KiB file limit, past json's recursion limit
_DEEP_RULE = Path(tempfile.mkdtemp()) / "deep-rule.json"
_DEEP_RULE.write_text("[" * 30_000 + "]" * 30_000)

BAD_INPUT = {
    "deep-rule-file": ["retention", "set", "adult", "--rule-json", str(_DEEP_RULE)],
    "period": ["retention", "set", "adult", "--period", "8 years", "--trigger", "last_seen"],
    "missing-rule-file": ["retention", "set", "adult", "--rule-json", "/nonexistent/rule.json"],
    "date": ["retention", "appraise", "--as-of", "2024-02-30"],
    "nhs-number": ["retention", "holds", "place", "--kind", "legal", "--reason", "x",
                   "--nhs-number", "9434765918"],
    "unknown-appraisal": ["retention", "destroy", "a" + "b" * 26],
    "shard": ["retention", "destroy", "a" + "b" * 26, "--shard", "2", "--shards", "2"],
    "command": ["retention", "shred-everything"],
}


def test_bad_input_exits_2_with_one_line_and_changes_nothing(trust: Trust) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MIZAIC_CONTROLLER"}

    def no_controller() -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), "retention", "show"], capture_output=True,
                              text=True, env=env, timeout=120, check=False)

    with ThreadPoolExecutor(4) as pool:
        pending = {name: pool.submit(trust.run, *args) for name, args in BAD_INPUT.items()}
        pending["no-controller"] = pool.submit(no_controller)
        results = {name: future.result() for name, future in pending.items()}
    for name, result in results.items():
        assert result.returncode == 2, (name, result.stderr)
        assert result.stdout == "", name
        assert result.stderr.count("\n") == 1, (name, result.stderr)
        assert result.stderr.startswith("mizaic-processor: error: "), (name, result.stderr)
        assert "Traceback" not in result.stderr, name
    assert "9434765918" not in results["nhs-number"].stderr  # not even the typed number
    assert "MIZAIC_CONTROLLER" in results["no-controller"].stderr
    # Nothing was written: no instruction and no hold.
    with Processor.from_settings() as processor:
        admin = processor.tenant(trust.controller, actor=Actor.controller_admin(ADMIN_ID))
        assert admin.retention.list_instructions() == []
        assert admin.retention.list_holds(active_only=False) == []
