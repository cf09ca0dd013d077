"""(5) Lookup scaling: time to find one subject's records as the controller's store grows.

One probe subject with 10 records is written first; the controller is then filled through
the library's own bulk API (``create_records``, 10 records per subject, small records to
keep the fill quick: the count of blobs is what matters) up to each level, and
``list_records(probe)`` is timed at each level. Baseline: a raw prefix listing
(``list_blob_names(name_starts_with=...)``) of the probe subject's record blobs in the same
container, i.e. the listing step alone, without the blind-index lookup and the audit event.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections.abc import Mapping
from typing import Any

from mizaic_processor import NewRecord

from ._common import (
    EVENTS,
    Config,
    Line,
    ScenarioResult,
    Stats,
    Target,
    azurite,
    library,
    log,
    measure_pair,
    new_subject,
    raw_service,
    record_fields,
)

# Where the store keeps a subject's record blobs (records/<subject key id>/<suffix>): the
# raw baseline lists the same prefix. Checked on every call (it must list 10 blobs).
RECORD_PREFIX = "records/"
KEY = "lookup"
TITLE = "Lookup scaling (list_records of one subject)"
PER_SUBJECT = 10
FILL_RECORD_BYTES = 512


def levels_for(cfg: Config) -> tuple[list[int], bool]:
    levels = sorted(cfg.lookup_levels)
    if cfg.max_records is None or cfg.max_records >= levels[-1]:
        return levels, False
    capped = [level for level in levels if level < cfg.max_records]
    capped.append(cfg.max_records)
    return capped, True


def _fmt_eta(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s"


def populate(
    scope: Any, have: int, want: int, concurrency: int,
    events: Mapping[str, dt.date] = EVENTS, what: str = "records",
) -> int:
    """Create records (10 per new subject) until the controller holds ``want``."""
    todo = want - have
    if todo <= 0:
        return have
    groups = [min(PER_SUBJECT, todo - i) for i in range(0, todo, PER_SUBJECT)]
    fields = record_fields(1, FILL_RECORD_BYTES)
    done = 0
    start = time.monotonic()
    last = start

    def report(count: int, total: int | None) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= 5.0:
            last = now
            rate = (done + count) / (now - start)
            eta = (todo - done - count) / rate if rate else 0.0
            log(f"    populated {have + done + count:,}/{want:,} {what} "
                f"({rate:,.0f} records/s, ETA {_fmt_eta(eta)})")

    # through the library's bulk API, in batches (a case-note archive: 10 per subject)
    for batch in range(0, len(groups), 500):
        items = [
            NewRecord(subject, category="adult", fields=fields, events=events)
            for count in groups[batch:batch + 500]
            for subject in [new_subject()]
            for _ in range(count)
        ]
        scope.create_records(items, max_concurrency=concurrency, progress=report)
        done += len(items)
    elapsed = time.monotonic() - start
    log(f"    populated {want:,} {what} ({todo:,} in {elapsed:,.0f} s, "
        f"{todo / elapsed:,.0f} records/s)")
    return want


def run(cfg: Config) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    levels, capped = levels_for(cfg)
    if capped:
        result.status = "partial"
        result.note(
            f"CAPPED by --max-records={cfg.max_records:,}: levels {levels} instead of "
            f"{sorted(cfg.lookup_levels)}"
        )
    with azurite() as server:
        conn = server.connection_string
        lib = library(conn, "lookup")
        scope = lib.scope
        raw = raw_service(conn)
        raw_container = raw.get_container_client(lib.processor.get_controller(
            lib.controller_id).container)
        probe = new_subject()
        probe_ids = [
            scope.create_record(probe, category="adult", fields=record_fields(i),
                                events=EVENTS).record_id
            for i in range(PER_SUBJECT)
        ]
        prefix = f"{RECORD_PREFIX}{probe_ids[0][1:27]}/"
        have = PER_SUBJECT
        per_level: dict[int, tuple[list[float], list[float]]] = {}

        for level in levels:
            log(f"  … filling the controller to {level:,} records")
            have = populate(scope, have, level, cfg.populate_concurrency)

            def ours(rep: int) -> float:
                times = []
                for _ in range(cfg.lookup_calls):
                    start = time.perf_counter()
                    found = list(scope.list_records(probe))
                    times.append(time.perf_counter() - start)
                    if len(found) != PER_SUBJECT:
                        raise AssertionError(f"found {len(found)} records")
                return statistics.median(times) * 1000

            def baseline(rep: int) -> float:
                times = []
                for _ in range(cfg.lookup_calls):
                    start = time.perf_counter()
                    found = list(raw_container.list_blob_names(name_starts_with=prefix))
                    times.append(time.perf_counter() - start)
                    if len(found) != PER_SUBJECT:
                        raise AssertionError(f"listed {len(found)} blobs")
                return statistics.median(times) * 1000

            ours_s, base_s = measure_pair(cfg.reps, ours, baseline, warmup=True)
            per_level[level] = (ours_s, base_s)
            o, b = Stats.of(ours_s), Stats.of(base_s)
            result.add(Line(
                KEY, f"list_records with {level:,} records stored", "ms", o, b,
                "raw prefix listing", b.median / o.median, "baseline-time/our-time",
                note=f"per repetition: median of {cfg.lookup_calls} calls",
            ))

        if len(levels) >= 2:
            small, large = levels[0], levels[-1]
            ours_ratios = [
                a / b for a, b in zip(per_level[large][0], per_level[small][0], strict=True)
            ]
            base_ratios = [
                a / b for a, b in zip(per_level[large][1], per_level[small][1], strict=True)
            ]
            ratio = Stats.of(per_level[large][0]).median / Stats.of(per_level[small][0]).median
            result.add(Line(
                KEY, f"time at {large:,} / time at {small:,} records", "x",
                Stats.of(ours_ratios), Stats.of(base_ratios), "raw prefix listing", ratio,
                "largest/smallest", Target("<=", 1.5), chart="lower",
                note=f"store grew {large // small}x" + (" (capped)" if capped else ""),
            ))
            above = [
                (o - b) for o, b in zip(per_level[large][0], per_level[large][1], strict=True)
            ]
            above_small = [
                (o - b) for o, b in zip(per_level[small][0], per_level[small][1], strict=True)
            ]
            result.add(Line(
                KEY, f"our time above the raw listing, at {large:,} records", "ms",
                Stats.of(above), Stats.of(above_small), f"the same at {small:,} records",
                Stats.of(above).median / Stats.of(above_small).median, "largest/smallest",
                None, chart="lower",
                note="what the library adds on top of Azurite's listing (blind-index "
                     "lookup, audit event, checks)",
            ))
            result.note(
                "Azurite lists a prefix by scanning the container, so even the raw listing "
                "grows with the store (see the baseline column); Azure's listing is indexed"
            )
        lib.close()
        raw.close()
    return result
