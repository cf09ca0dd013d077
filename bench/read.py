"""(3) Read of small records: get all fields and get one field, vs raw download_blob.

Single-threaded, ours is one ``get_record`` after another; concurrent, ours is the bulk
``get_records(..., max_concurrency=N)`` and raw is a thread pool of the same size.
The records (12 fields, ~2 KiB of JSON, 10 per subject) are written once before timing,
through the library and, for the baseline, as raw blobs of the same JSON bytes. Reads run
with the library's key caches warm (a service's steady state). Raw ``download_blob`` reads
the whole JSON blob in both comparisons: raw storage cannot read one field. Streaming a
document's content is measured with the documents, in ``documents.py``.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ._common import (
    EVENTS,
    AuditFloor,
    Config,
    ScenarioResult,
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
from .small import target_for

KEY = "read"
TITLE = "Read, small records (get all fields, get one field)"
ONE_FIELD = "diagnosis"


def run(cfg: Config) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    with azurite() as server:
        conn = server.connection_string
        lib = library(conn, "read")
        scope = lib.scope
        raw = raw_service(conn)
        raw_container = raw.get_container_client("bench-raw-read")
        raw_container.create_container()
        n = cfg.small_concurrent - cfg.small_concurrent % cfg.per_subject
        fields = [record_fields(i) for i in range(n)]
        log(f"  … writing {n} records through the library and {n} raw blobs")

        def create(group: Any) -> list[str]:
            subject = new_subject()
            return [
                scope.create_record(subject, category="adult", fields=f, events=EVENTS).record_id
                for f in group
            ]

        with ThreadPoolExecutor(max_workers=32) as pool:
            record_ids = [rid for ids in pool.map(create, chunked(fields, cfg.per_subject))
                          for rid in ids]
            names = [f"raw/{os.getpid()}/{i // cfg.per_subject:06d}/{i % cfg.per_subject:03d}"
                     for i in range(n)]

            def upload(i: int) -> None:
                data = record_json(fields[i])
                raw_container.get_blob_client(names[i]).upload_blob(data, length=len(data))

            list(pool.map(upload, range(n)))
        result.note(
            "ours = get_record (decrypt + verify, audit event committed before the result "
            "is returned); raw = download_blob(...).readall() of the same JSON, unencrypted"
        )

        audit_floor = AuditFloor(conn, "bench-raw-read")

        def raw_get(name: str) -> None:
            raw_container.download_blob(name).readall()

        for label, wanted in (("all fields", None), ("one field", [ONE_FIELD])):
            for concurrency in (1, *cfg.concurrency):
                count = cfg.small_single if concurrency == 1 else n
                ids_now = record_ids[:count]
                names_now = names[:count]

                requests: list[float] = []

                def ours(rep: int, ids_now: list[str] = ids_now, concurrency: int = concurrency,
                         wanted: list[str] | None = wanted,
                         requests: list[float] = requests) -> float:
                    def get(rid: str) -> None:
                        record = scope.get_record(rid, fields=wanted)
                        if wanted is not None and set(record.fields) != set(wanted):
                            raise AssertionError("wrong fields read")

                    before = lib.processor.request_count
                    if concurrency == 1:
                        rate = len(ids_now) / run_tasks(get, ids_now, concurrency)
                    else:
                        start = time.perf_counter()
                        records = scope.get_records(ids_now, fields=wanted,
                                                    max_concurrency=concurrency)
                        rate = len(ids_now) / (time.perf_counter() - start)
                        if wanted is not None and any(
                            set(r.fields) != set(wanted) for r in records
                        ):
                            raise AssertionError("wrong fields read")
                    requests.append((lib.processor.request_count - before) / len(ids_now))
                    return rate

                def baseline(rep: int, names_now: list[str] = names_now,
                             concurrency: int = concurrency) -> float:
                    return len(names_now) / run_tasks(raw_get, names_now, concurrency)

                def floor(rep: int, names_now: list[str] = names_now) -> float:
                    start = time.perf_counter()
                    for name in names_now:
                        audit_floor.read(name)
                    return len(names_now) / (time.perf_counter() - start)

                where = "single-threaded" if concurrency == 1 else f"{concurrency} in flight"
                log(f"  … get {label}, {where} ({count} records per repetition)")
                ours_s, base_s, floor_s, note = measure_with_floor(
                    cfg, concurrency, (ours, baseline, floor), requests
                )
                result.add(throughput_line(
                    KEY, f"get {label}, {where}", "records/s", ours_s, base_s,
                    "raw download_blob", target_for(concurrency), note=note,
                ))
                if floor_s is not None:
                    result.add(throughput_line(
                        KEY, f"get {label}, {where}, vs the write-ahead floor", "records/s",
                        ours_s, floor_s, "raw download_blob with append_block alongside",
                        None, note=AuditFloor.NOTE,
                    ))
        audit_floor.close()
        lib.close()
        raw.close()
    return result
