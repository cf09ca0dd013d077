"""Every script in examples/ runs to completion against its own throw-away Azurite, exactly as
the README tells a reader to run it:
``python -m mizaic_processor.testing run -- python examples/<name>.py``."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
TIMEOUT = 180  # seconds per example, Azurite's start and stop included


def test_there_are_examples_to_run() -> None:
    assert EXAMPLES, "no examples/*.py found"


@pytest.mark.parametrize("example", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs_cleanly(example: Path) -> None:
    command = [
        sys.executable, "-m", "mizaic_processor.testing", "run", "--",
        sys.executable, str(example.relative_to(ROOT)),
    ]
    # A session of its own, so that a hung example can be stopped with everything it started
    # (SIGTERM first: the run command then stops its Azurite and removes its data folder).
    with subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            stdout, stderr = _stop(process)
            pytest.fail(f"{example.name} did not finish within {TIMEOUT} s:\n"
                        f"{_tail(stdout)}\n{_tail(stderr)}")
    output = stdout + stderr
    assert process.returncode == 0, (
        f"{example.name} exited with {process.returncode}:\n{_tail(stdout)}\n{_tail(stderr)}"
    )
    assert "Traceback" not in output, f"{example.name} printed a traceback:\n{_tail(output)}"


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Stop the example's process group: SIGTERM, then SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            return process.communicate(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return "", ""


def _tail(text: str | None, lines: int = 60) -> str:
    return "\n".join((text or "").splitlines()[-lines:])
