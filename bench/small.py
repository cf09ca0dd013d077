"""(1) Ingest of small records: ~2 KiB of JSON in 12 fields, vs raw upload_blob of the same bytes.

Ours is ``ControllerScope.create_record`` with encryption and audit on (the defaults), for a
new subject each (1 record per subject) or for subjects of 10 records (a case-note archive).
Single-threaded, ours is one ``create_record`` after another. Concurrent, ours is the
library's bulk API, ``create_records(..., max_concurrency=N)`` (a subject's first record
creates its key, then its other records run concurrently); the raw baseline uploads the
same JSON bytes from a thread pool of the same size, a pool task being one subject's
records one after another. Each repetition uses new subjects.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from mizaic_processor import NewRecord

from ._common import (
    EVENTS,
    AuditFloor,
    Config,
    ScenarioResult,
    Target,
    azurite,
    chunked,
    library,
    log,
    measure_with_floor,
    new_subject,
    raw_service,
    record_fields,
    record_json,
    run_tasks,
    throughput_line,
)

KEY = "small"
TITLE = "Ingest, small records (12 fields, ~2 KiB JSON)"


def target_for(concurrency: int) -> Target | None:
    if concurrency == 1:
        return Target(">=", 0.5)
    if concurrency >= 32:
        return Target(">=", 0.85)
    return None


def run(cfg: Config) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    with azurite() as server:
        conn = server.connection_string
        lib = library(conn, "small")
        raw = raw_service(conn)
        raw_container = raw.get_container_client("bench-raw-small")
        raw_container.create_container()
        most = max(cfg.small_count(c, p) for c in (1, *cfg.concurrency) for p in (1, 10))
        payload_fields = [record_fields(i) for i in range(most)]
        payload_json = [record_json(f) for f in payload_fields]
        result.note(
            f"record JSON {min(map(len, payload_json))}-{max(map(len, payload_json))} bytes, "
            "12 fields; ours = create_record with encryption and audit on; "
            "raw = upload_blob of the same JSON bytes, unencrypted, no audit"
        )
        run_id = itertools.count()
        scope = lib.scope
        audit_floor = AuditFloor(conn, "bench-raw-small")

        for per_subject in (cfg.per_subject, 1):
            for concurrency in (1, *cfg.concurrency):
                n = cfg.small_count(concurrency, per_subject)
                fields = payload_fields[:n]
                blobs = payload_json[:n]

                requests: list[float] = []

                def ours(rep: int, fields: list[dict[str, Any]] = fields,
                         per_subject: int = per_subject, concurrency: int = concurrency,
                         requests: list[float] = requests) -> float:
                    tasks = [(new_subject(), group) for group in chunked(fields, per_subject)]
                    before = lib.processor.request_count

                    def task(item: tuple[Any, Any]) -> None:
                        subject, group = item
                        for f in group:
                            scope.create_record(
                                subject, category="adult", fields=f, events=EVENTS
                            )

                    if concurrency == 1:
                        rate = len(fields) / run_tasks(task, tasks, concurrency)
                    else:
                        batch = [
                            NewRecord(subject, category="adult", fields=f, events=EVENTS)
                            for subject, group in tasks for f in group
                        ]
                        start = time.perf_counter()
                        scope.create_records(batch, max_concurrency=concurrency)
                        rate = len(fields) / (time.perf_counter() - start)
                    requests.append((lib.processor.request_count - before) / len(fields))
                    return rate

                def baseline(rep: int, blobs: list[bytes] = blobs,
                             per_subject: int = per_subject, concurrency: int = concurrency
                             ) -> float:
                    prefix = f"raw/{os.getpid()}-{next(run_id)}"
                    tasks = list(enumerate(chunked(blobs, per_subject)))

                    def task(item: tuple[int, Any]) -> None:
                        index, group = item
                        for k, data in enumerate(group):
                            raw_container.get_blob_client(
                                f"{prefix}/{index:06d}/{k:03d}"
                            ).upload_blob(data, length=len(data))

                    return len(blobs) / run_tasks(task, tasks, concurrency)

                def floor(rep: int, blobs: list[bytes] = blobs) -> float:
                    prefix = f"floor/{os.getpid()}-{next(run_id)}"
                    start = time.perf_counter()
                    for k, data in enumerate(blobs):
                        audit_floor.write(f"{prefix}/{k:06d}", data)
                    return len(blobs) / (time.perf_counter() - start)

                label = (
                    f"{per_subject} record{'s' if per_subject > 1 else ''}/subject, "
                    + ("single-threaded" if concurrency == 1 else f"{concurrency} in flight")
                )
                log(f"  … ingest {label} ({n} records per repetition)")
                ours_s, base_s, floor_s, note = measure_with_floor(
                    cfg, concurrency, (ours, baseline, floor), requests
                )
                result.add(throughput_line(
                    KEY, f"ingest {label}", "records/s", ours_s, base_s, "raw upload_blob",
                    target_for(concurrency), note=note,
                ))
                if floor_s is not None:
                    result.add(throughput_line(
                        KEY, f"ingest {label}, vs the write-ahead floor", "records/s",
                        ours_s, floor_s, "raw append_block, then upload_blob", None,
                        note=f"{AuditFloor.NOTE}; floor 2 requests/record",
                    ))
        audit_floor.close()
        lib.close()
        raw.close()
    return result
