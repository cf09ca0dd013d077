"""(2) Ingest of documents and (3) streaming them back: MB/s vs raw and vs the SDK's CSE v2.

Ours: ``create_record`` with the 12 fields plus the document as content (encrypted in
chunks, audit on), for subjects that already exist (concurrent: the bulk
``create_records(..., max_concurrency=N)``); read back with ``open_content`` (decrypt and
verify while streaming; concurrent: a thread pool, there is no bulk streaming read).
Baselines, same concurrency, same Azurite:

- raw: ``upload_blob`` of the document bytes (no fields, no encryption), read back with
  ``download_blob(...).chunks()``;
- CSE v2: the Azure SDK's client-side encryption (``require_encryption=True``,
  ``encryption_version='2.0'``, a local AES-key-wrap KEK), same calls.

MB/s counts document bytes only (1 MB = 10^6 bytes). Each repetition writes new blobs
with all three (in rotating order), then reads back what it wrote (rotating again).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from mizaic_processor import NewRecord

from ._common import (
    BULK_NOTE,
    EVENTS,
    MB,
    THREAD_POOL_NOTE,
    Config,
    ScenarioResult,
    Target,
    azurite,
    cse_service,
    human_bytes,
    library,
    log,
    new_subject,
    raw_service,
    record_fields,
    run_tasks,
    throughput_line,
)

KEY = "documents"
TITLE = "Documents: ingest and streaming read (MB/s)"
CONTENT_TYPE = "application/pdf"
SUBJECTS = 16


def blob_put(
    container: Any, tag: str, data: bytes, count: int, concurrency: int,
    written: dict[str, list[Any]], run_id: Iterator[int],
) -> Callable[[int], float]:
    """A measurement: upload ``count`` new blobs of ``data``; returns MB/s."""

    def put(name: str) -> None:
        container.get_blob_client(name).upload_blob(data, length=len(data))

    def put_all(rep: int) -> float:
        prefix = f"{tag}/{os.getpid()}-{next(run_id)}"
        names = [f"{prefix}/{i:06d}" for i in range(count)]
        seconds = run_tasks(put, names, concurrency)
        written[tag] = names
        return count * len(data) / MB / seconds

    return put_all


def blob_get(
    container: Any, tag: str, size: int, concurrency: int, written: dict[str, list[Any]]
) -> Callable[[int], float]:
    """A measurement: stream back the blobs the last put wrote; returns MB/s."""

    def get(name: str) -> None:
        got = 0
        for piece in container.download_blob(name).chunks():
            got += len(piece)
        if got != size:
            raise AssertionError("short read")

    def get_all(rep: int) -> float:
        names = written[tag]
        return len(names) * size / MB / run_tasks(get, names, concurrency)

    return get_all


def run(cfg: Config) -> ScenarioResult:
    result = ScenarioResult(KEY, TITLE)
    with azurite() as server:
        conn = server.connection_string
        lib = library(conn, "docs")
        scope = lib.scope
        raw = raw_service(conn)
        raw_container = raw.get_container_client("bench-raw-docs")
        raw_container.create_container()
        cse = cse_service(conn)
        cse_container = cse.get_container_client("bench-cse-docs")
        cse_container.create_container()
        fields = record_fields(0)
        subjects = [new_subject() for _ in range(SUBJECTS)]
        for subject in subjects:  # the subjects exist: this measures documents, not new keys
            scope.create_record(subject, category="adult", fields={"x": 1}, events=EVENTS)
        result.note(
            "ours = create_record(fields + content) / open_content streaming, encryption and "
            "audit on; raw = upload_blob / download_blob().chunks() of the document only; "
            "CSE v2 = the same raw calls on a client with require_encryption=True, "
            "encryption_version='2.0'"
        )
        run_id = itertools.count()

        for size in cfg.doc_sizes:
            data = os.urandom(size)
            for concurrency in (1, cfg.doc_concurrency):
                count = cfg.doc_count(size, concurrency)
                total_mb = count * size / MB
                written: dict[str, list[Any]] = {}

                def ours_put(rep: int, count: int = count, concurrency: int = concurrency,
                             data: bytes = data, written: dict[str, list[Any]] = written
                             ) -> float:
                    out: list[str] = []
                    lock = threading.Lock()

                    def put(i: int) -> None:
                        ref = scope.create_record(
                            subjects[i % SUBJECTS], category="adult", fields=fields,
                            events=EVENTS, content=data, content_type=CONTENT_TYPE,
                        )
                        with lock:
                            out.append(ref.record_id)

                    if concurrency == 1:
                        seconds = run_tasks(put, range(count), concurrency)
                    else:
                        items = [
                            NewRecord(subjects[i % SUBJECTS], category="adult", fields=fields,
                                      events=EVENTS, content=data, content_type=CONTENT_TYPE)
                            for i in range(count)
                        ]
                        start = time.perf_counter()
                        out = [ref.record_id for ref in scope.create_records(
                            items, max_concurrency=concurrency)]
                        seconds = time.perf_counter() - start
                    written["ours"] = out
                    return count * len(data) / MB / seconds

                def ours_get(rep: int, concurrency: int = concurrency, size: int = size,
                             written: dict[str, list[Any]] = written) -> float:
                    ids = written["ours"]

                    def get(rid: str) -> None:
                        got = 0
                        with scope.open_content(rid) as reader:
                            for piece in reader:
                                got += len(piece)
                        if got != size:
                            raise AssertionError("short read")

                    return len(ids) * size / MB / run_tasks(get, ids, concurrency)

                run = (data, count, concurrency, written, run_id)
                puts = {"ours": ours_put, "raw": blob_put(raw_container, "raw", *run),
                        "cse": blob_put(cse_container, "cse", *run)}
                gets = {"ours": ours_get, "raw": blob_get(raw_container, "raw", size,
                                                          concurrency, written),
                        "cse": blob_get(cse_container, "cse", size, concurrency, written)}
                where = "single-threaded" if concurrency == 1 else f"{concurrency} in flight"
                log(f"  … {human_bytes(size)} documents, {where}: {count} per repetition "
                    f"({total_mb:,.0f} MB)")
                put_s: dict[str, list[float]] = {k: [] for k in puts}
                get_s: dict[str, list[float]] = {k: [] for k in gets}
                order = list(puts)
                reps = range(-1 if cfg.warmup else 0, cfg.reps)
                for rep in reps:
                    rotated = order[rep % 3:] + order[: rep % 3] if rep >= 0 else order
                    for name in rotated:
                        figure = puts[name](rep)
                        if rep >= 0:
                            put_s[name].append(figure)
                    for name in rotated:
                        figure = gets[name](rep)
                        if rep >= 0:
                            get_s[name].append(figure)
                for direction, stats in (("ingest", put_s), ("stream read", get_s)):
                    note = "" if concurrency == 1 else (
                        BULK_NOTE if direction == "ingest" else THREAD_POOL_NOTE
                    )
                    result.add(throughput_line(
                        KEY, f"{direction} {human_bytes(size)}, {where}", "MB/s",
                        stats["ours"], stats["raw"], "raw blob", Target(">=", 0.9), note=note,
                    ))
                    result.add(throughput_line(
                        KEY, f"{direction} {human_bytes(size)}, {where} vs CSE v2", "MB/s",
                        stats["ours"], stats["cse"], "SDK CSE v2", Target(">=", 1.0),
                        note=note,
                    ))
        lib.close()
        raw.close()
        cse.close()
    return result
