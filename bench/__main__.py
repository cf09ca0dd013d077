"""``python -m bench``: run the benchmark scenarios and write bench/results/."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import crypto, documents, due, lookup, memory, read, report, small
from ._common import KIB, MIB, Config, CpuMeter, ScenarioResult, environment, log

SCENARIOS: dict[str, tuple[str, Callable[[Config], ScenarioResult]]] = {
    small.KEY: (small.TITLE, small.run),
    documents.KEY: (documents.TITLE, documents.run),
    read.KEY: (read.TITLE, read.run),
    crypto.KEY: (crypto.TITLE, crypto.run),
    lookup.KEY: (lookup.TITLE, lookup.run),
    due.KEY: (due.TITLE, due.run),
    memory.KEY: (memory.TITLE, memory.run),
}


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+)\s*([KkMmGg]?)i?[Bb]?", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 300K, 20M, 1G)")
    unit = {"": 1, "k": KIB, "m": MIB, "g": 1024 * MIB}[match.group(2).lower()]
    return int(match.group(1)) * unit


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of mizaic_processor vs raw azure-storage-blob and raw AES-GCM, "
        "each scenario against its own throw-away Azurite. Full runs write "
        "bench/results/latest.{json,md} and ratios.png; --quick runs write "
        "bench/results/quick.* so they never replace a full run's figures.",
    )
    parser.add_argument("--quick", action="store_true",
                        help="fast smoke run: small sizes, 2 repetitions")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only this scenario (repeatable, or comma-separated): "
                        + ", ".join(SCENARIOS) + ". Other scenarios' figures in latest.json "
                        "are kept")
    parser.add_argument("--reps", type=int, default=None,
                        help="repetitions per measurement (default 5; 2 with --quick)")
    parser.add_argument("--max-records", type=int, default=None,
                        help="cap the lookup-scaling store size (default 10^5)")
    parser.add_argument("--lookup-levels", type=_ints, default=None,
                        help="store sizes for lookup scaling (default 1000,10000,100000)")
    parser.add_argument("--due-levels", type=_ints, default=None,
                        help="not-due record counts for due-record scaling (default 300,3000; "
                        "Azurite's tag query drops results past ~5000 blobs in a container)")
    parser.add_argument("--memory-size", type=_size, default=None,
                        help="document size for the memory scenario (default 1G)")
    parser.add_argument("--doc-sizes", default=None,
                        help="document sizes, comma-separated (default 300K,20M)")
    parser.add_argument("--concurrency", type=_ints, default=None,
                        help="in-flight levels for small records (default 8,32)")
    parser.add_argument("--small-records", type=int, default=None,
                        help="small records per repetition at concurrency (default 480; "
                        "at least 3 subjects per worker)")
    parser.add_argument("--no-warmup", action="store_true",
                        help="skip the untimed warm-up round")
    args = parser.parse_args(argv)
    only: list[str] = []
    for item in args.only or []:
        only += [x.strip() for x in item.split(",") if x.strip()]
    unknown = [x for x in only if x not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    args.only = only
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    return args


def build_config(args: argparse.Namespace) -> Config:
    cfg = Config.quick_config() if args.quick else Config()
    changes: dict[str, Any] = {}
    if args.reps is not None:
        changes["reps"] = args.reps
    if args.max_records is not None:
        changes["max_records"] = args.max_records
    if args.lookup_levels is not None:
        changes["lookup_levels"] = args.lookup_levels
    if args.due_levels is not None:
        changes["due_not_due_levels"] = args.due_levels
    if args.memory_size is not None:
        changes["memory_bytes"] = args.memory_size
    if args.doc_sizes is not None:
        changes["doc_sizes"] = tuple(_size(x) for x in args.doc_sizes.split(",") if x)
    if args.concurrency is not None:
        changes["concurrency"] = args.concurrency
    if args.small_records is not None:
        changes["small_concurrent"] = args.small_records
    if args.no_warmup:
        changes["warmup"] = False
    return dataclasses.replace(cfg, **changes)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    cfg = build_config(args)
    chosen = args.only or list(SCENARIOS)
    stem = "quick" if cfg.quick else "latest"
    env = environment()
    log(f"mizaic_processor benchmarks — {env['cpu_count']} cores, Python {env['python']}, "
        f"Azurite {env['azurite']}, azure-storage-blob {env['azure-storage-blob']}, "
        f"cryptography {env['cryptography']}; {cfg.reps} repetitions"
        + (" (QUICK)" if cfg.quick else ""))
    doc: dict[str, Any] = {"environment": env, "config": cfg.to_json(), "scenarios": {}}
    previous = report.load(report.RESULTS / f"{stem}.json") if args.only else None
    failed = False
    started = time.monotonic()
    kept = previous.get("scenarios", {}) if previous else {}

    def ordered(done: dict[str, Any]) -> dict[str, Any]:
        """This run's scenarios plus the kept ones from the last run, in suite order."""
        merged = {k: done.get(k, kept.get(k)) for k in SCENARIOS}
        return {k: v for k, v in merged.items() if v is not None}

    done: dict[str, Any] = {}
    paths: dict[str, Any] = {}
    for key in SCENARIOS:
        if key not in chosen:
            continue
        title, fn = SCENARIOS[key]
        log(f"\n[{key}] {title}")
        t0 = time.monotonic()
        with CpuMeter() as cpu:
            try:
                result = fn(cfg)
            except Exception as exc:
                failed = True
                traceback.print_exc()
                result = ScenarioResult(key, title, status=f"failed: {type(exc).__name__}")
        result.seconds = time.monotonic() - t0
        result.note(cpu.text())
        result.cpu = {"bench": cpu.own_share, "azurite": cpu.azurite_share,
                      "other": cpu.other_share}
        entry = result.to_json()
        entry["run_at"] = env["date"]
        entry["git_commit"] = env["git_commit"] + (
            " + uncommitted src changes" if env.get("src_modified_since_commit") else "")
        done[key] = entry
        log(f"  ({result.status}, {result.seconds:.0f} s)")
        doc["scenarios"] = ordered(done)
        doc["not_run"] = [k for k in SCENARIOS if k not in doc["scenarios"]]
        paths = report.write(doc, stem)  # after each scenario, so a long run keeps its parts
    log(f"\nTotal {time.monotonic() - started:.0f} s. Results: "
        + ", ".join(str(p) for p in paths.values()))
    verdicts = [line["verdict"] for s in doc["scenarios"].values() for line in s["lines"]]
    log(f"Targets: {verdicts.count('MET')} met, {verdicts.count('MISSED')} missed; "
        + ", ".join(f"{s['key']}: {s['status']}" for s in doc["scenarios"].values()
                    if s["status"] != "ran"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
