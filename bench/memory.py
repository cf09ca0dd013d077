"""(7) Memory: peak RSS growth while putting and then getting one large document.

The document is a generated, non-seekable stream (never held in memory). Each measurement
runs in a fresh child process (``bench/_memory_child.py``) against this scenario's Azurite:
ours (``create_record(content=stream)`` then ``open_content`` streamed) and the raw
baseline (``upload_blob(stream, length=...)`` then ``download_blob().chunks()``, SDK
defaults). The target is judged on the worst repetition.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ._common import MB, Config, Line, ScenarioResult, Stats, Target, azurite, human_bytes, log

KEY = "memory"
TITLE = "Memory (peak RSS growth, one large document in and out)"


def _child(conn: str, which: str, size: int) -> dict[str, Any]:
    env = dict(os.environ, MIZAIC_BENCH_CONN=conn)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "bench._memory_child", which, str(size)],
        cwd=root, env=env, capture_output=True, text=True, timeout=3600, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child ({which}) failed:\n{proc.stderr[-4000:]}")
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def run(cfg: Config) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    size = cfg.memory_bytes
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {
        who: {"put": [], "get": [], "overall": []} for who in ("ours", "raw")
    }
    with azurite() as server:
        for rep in range(cfg.reps):
            for which in (("ours", "raw") if rep % 2 == 0 else ("raw", "ours")):
                out = _child(server.connection_string, which, size)
                for phase in ("put", "get", "overall"):
                    samples[which][phase].append(out[phase])
                log(f"  … rep {rep + 1}/{cfg.reps} {which}: put +{out['put']['growth_mib']:.1f}"
                    f" MiB in {out['put']['seconds']:.1f} s, get +{out['get']['growth_mib']:.1f}"
                    f" MiB in {out['get']['seconds']:.1f} s")
    label = human_bytes(size)
    target = Target("<", cfg.memory_target_mib, on="ours_max")
    for phase, verb, note in (
        ("overall", "put then get (in and out)", "peak of both phases above the RSS before "
         "the put"),
        ("put", "put (streamed in)", ""),
        ("get", "get (streamed out)", "above the RSS before the get, which may already "
         "hold heap the put freed; the in-and-out line has no such blind spot"),
    ):
        o = Stats.of([s["growth_mib"] for s in samples["ours"][phase]])
        b = Stats.of([s["growth_mib"] for s in samples["raw"][phase]])
        result.add(Line(
            KEY, f"peak RSS growth, {label} {verb}", "MiB", o, b, "raw SDK", None,
            "MiB", target, chart="lower", note=note,
        ))
    for phase in ("put", "get"):
        o = Stats.of([size / MB / s["seconds"] for s in samples["ours"][phase]])
        b = Stats.of([size / MB / s["seconds"] for s in samples["raw"][phase]])
        result.add(Line(
            KEY, f"throughput, {label} {phase} (same runs)", "MB/s", o, b, "raw SDK",
            o.median / b.median, "ours/baseline", None, chart="",
        ))
    result.note("each measurement in a fresh process; growth = peak RSS during the operation "
                "minus RSS just before it (after a tiny warm-up)")
    return result
