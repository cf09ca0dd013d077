"""``mizaic-processor requests ...``: the real console script in a subprocess, against
Azurite, on a controller set up by a Processor built from the same settings."""

# The fixtures come from requests_support by import; using them as arguments re-binds
# their names, which is what pytest expects.
# ruff: noqa: F811

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from requests_support import ADMIN, NHS, OPERATOR, azurite  # noqa: F401 - fixture

from mizaic_processor import NHSNumber, Processor
from mizaic_processor.testing import AzuriteServer

SCRIPT = str(Path(sys.executable).with_name("mizaic-processor"))


@dataclass
class Setup:
    env: dict[str, str]
    access: str
    objection: str


@pytest.fixture
def setup(
    azurite: AzuriteServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    cid = "c" + uuid.uuid4().hex[:10]
    env = {
        "MIZAIC_CONNECTION_STRING": azurite.connection_string,
        "MIZAIC_REGION": "uksouth",
        "MIZAIC_LOCAL_KEYRING_PATH": str(tmp_path / "keyring.json"),
        "MIZAIC_RETRY_TOTAL": "1",
        "MIZAIC_CONTROLLER": cid,
        "MIZAIC_ACTOR": ADMIN.id,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with Processor.from_settings() as processor:
        processor.register_controller(cid, name="CLI Trust", actor=OPERATOR)
        admin = processor.tenant(cid, actor=ADMIN)
        admin.create_record(NHSNumber(NHS), category="adult", fields={"note": "seen"})
        common = {
            "controller": cid, "subject": NHS, "channel": "post", "actor": OPERATOR,
            "contact": {"email": "aurelia.quenby@example.org"},
            "received_at": dt.datetime.now(dt.UTC), "text": "about my knee surgery",
        }
        access = processor.requests.receive(kind="access", **common)  # type: ignore[arg-type]
        objection = processor.requests.receive(kind="objection", **common)  # type: ignore[arg-type]
        admin.requests.acknowledge(objection.request_id)
    yield Setup({**os.environ, **env}, access.request_id, objection.request_id)


def cli(setup: Setup, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [SCRIPT, "requests", *args], env=setup.env, capture_output=True, text=True,
        timeout=60, check=False,
    )


def test_the_request_commands_work_end_to_end(setup: Setup, tmp_path: Path) -> None:
    listed = cli(setup, "list", "--open", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["request_id"]: row for row in json.loads(listed.stdout)}
    assert set(rows) == {setup.access, setup.objection}
    assert rows[setup.access]["status"] == "received"  # no route yet: not forwarded
    assert rows[setup.objection]["status"] == "acknowledged"
    assert "aurelia" not in listed.stdout and NHS not in listed.stdout

    shown = cli(setup, "show", setup.access)
    assert shown.returncode == 0, shown.stderr
    assert NHS in shown.stdout and "aurelia.quenby@example.org" in shown.stdout
    assert "knee surgery" in shown.stdout

    acknowledged = cli(setup, "acknowledge", setup.access, "--json")
    assert acknowledged.returncode == 0, acknowledged.stderr
    assert json.loads(acknowledged.stdout)["status"] == "acknowledged"

    output = tmp_path / "export.zip"
    exported = cli(setup, "export", setup.access, "--nhs-number", NHS, "--output",
                   str(output))
    assert exported.returncode == 0, exported.stderr
    assert "exported     1 records" in exported.stdout and NHS not in exported.stdout

    paused = cli(setup, "pause", setup.objection, "--waiting-for", "clarification")
    assert paused.returncode == 0, paused.stderr
    assert "awaiting_clarification" in paused.stdout and "paused" in paused.stdout

    extended = cli(setup, "extend", setup.objection, "--months", "2", "--reason",
                   "records on three sites", "--json")
    assert extended.returncode == 0, extended.stderr
    assert json.loads(extended.stdout)["extension_months"] == 2
    with zipfile.ZipFile(output) as archive:
        assert {"records.json", "fhir-bundle.json"} <= set(archive.namelist())


def test_bad_input_exits_2_with_one_line(setup: Setup, tmp_path: Path) -> None:
    for args in (["pause", setup.access, "--waiting-for", "patience"],  # argparse
                 ["export", setup.access, "--nhs-number", "1234567890", "--output",
                  str(tmp_path / "x.zip")]):
        result = cli(setup, *args)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "1234567890" not in result.stderr
    assert not (tmp_path / "x.zip").exists()
