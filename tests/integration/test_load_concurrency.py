"""Concurrent writers on the same controller and the same records (issue 5 item 5).

16 threads in this process and 3 processes (``spawn``, each with its own Processor built
from the connection string and a LocalKeyring loaded from the file this process saved, so
all share the KEK) with 4 threads each:

1. all create a record for the same, new patient at the same moment (the subject key is
   created once; every record lands under it);
2. all update the same 3 records with optimistic concurrency (read the etag, update,
   count ConflictError and try again).

Measured in counts, not times: no lost update (each record's version is 1 + its successful
updates, and a counter every update increments equals them too), no corrupted envelope
(every record decrypts), no audit chain fork (verify passes with one chain per process, and
every attempt is in the trail exactly as often as it happened).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    Actor,
    ConflictError,
    ControllerScope,
    LocalKeyring,
    NHSNumber,
    Processor,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
ADMIN = Actor.controller_admin("dpo@trust.example")
EXISTING = "9434765919"
NEW_PATIENT = "4010232137"
RECORDS = 3
MAIN_THREADS = 16
PROCESSES = 3
PROCESS_THREADS = 4
ATTEMPTS = 6  # update attempts per thread


@dataclass
class Tally:
    """What one process's threads did, by record id."""

    created: list[str] = field(default_factory=list)
    reads: Counter[str] = field(default_factory=Counter)
    updates: Counter[str] = field(default_factory=Counter)
    conflicts: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": self.created, "reads": dict(self.reads),
            "updates": dict(self.updates), "conflicts": dict(self.conflicts),
            "errors": self.errors,
        }


def hammer(scope: ControllerScope, record_ids: list[str], threads: int, name: str) -> Tally:
    """Run ``threads`` threads: one create for the new patient, then update attempts."""
    tally = Tally()
    start = threading.Barrier(threads)

    def work(index: int) -> None:
        try:
            start.wait()
            ref = scope.create_record(
                NHSNumber(NEW_PATIENT), category="adult", fields={"by": f"{name}-{index}"}
            )
            with tally.lock:
                tally.created.append(ref.record_id)
            for attempt in range(ATTEMPTS):
                record_id = record_ids[(index + attempt) % len(record_ids)]
                record = scope.get_record(record_id)
                with tally.lock:
                    tally.reads[record_id] += 1
                count = record.fields["count"]
                assert isinstance(count, int)
                try:
                    scope.update_record(
                        record_id, etag=record.etag,
                        fields={"count": count + 1, "last": f"{name}-{index}-{attempt}"},
                    )
                except ConflictError:
                    with tally.lock:
                        tally.conflicts[record_id] += 1
                else:
                    with tally.lock:
                        tally.updates[record_id] += 1
        except BaseException as exc:  # reported to the test, never swallowed
            with tally.lock:
                tally.errors.append(f"{name}-{index}: {type(exc).__name__}: {exc}")

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return tally


def process_main(
    conn_str: str, ring_path: str, cid: str, record_ids: list[str], name: str,
    ready: Any, results: Any,
) -> None:
    """Entry point of a spawned writer process: its own Processor, the shared KEK."""
    try:
        with Processor.from_connection_string(
            conn_str, region="uksouth", keyring=LocalKeyring.from_file(ring_path),
            retry_total=2,
        ) as proc:
            scope = proc.tenant(cid, actor=Actor.service(f"svc-{name}"))
            ready.wait(120)
            tally = hammer(scope, record_ids, PROCESS_THREADS, name)
        results.put(tally.as_dict())
    except BaseException as exc:
        results.put({"errors": [f"{name}: {type(exc).__name__}: {exc}"]})


def test_concurrent_threads_and_processes_lose_no_update_corrupt_nothing_and_fork_no_chain(
    azurite: AzuriteServer, tmp_path: Path
) -> None:
    ring = LocalKeyring.generate()
    cid = "ld" + uuid.uuid4().hex[:12]
    ctx = multiprocessing.get_context("spawn")
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=ring, retry_total=2
    ) as proc:
        proc.register_controller(cid, name="Load Trust", actor=OPERATOR)
        admin = proc.tenant(cid, actor=ADMIN)
        record_ids = [
            admin.create_record(NHSNumber(EXISTING), category="adult", fields={"count": 0})
            .record_id
            for _ in range(RECORDS)
        ]
        ring_path = tmp_path / "keyring.json"
        ring.save(ring_path)
        ready = ctx.Barrier(PROCESSES + 1)
        results = ctx.Queue()
        processes = [
            ctx.Process(
                target=process_main,
                args=(azurite.connection_string, str(ring_path), cid, record_ids, f"p{i}",
                      ready, results),
            )
            for i in range(PROCESSES)
        ]
        for process in processes:
            process.start()
        ready.wait(120)
        here = hammer(proc.tenant(cid, actor=Actor.service("svc-main")), record_ids,
                      MAIN_THREADS, "main")
        tallies = [here.as_dict()]
        for _ in processes:
            try:
                tallies.append(results.get(timeout=120))
            except queue.Empty:
                tallies.append({"errors": ["a writer process did not report"]})
        for process in processes:
            process.join(60)

        errors = [e for t in tallies for e in t.get("errors", [])]
        assert errors == []
        assert [p.exitcode for p in processes] == [0] * PROCESSES
        updates: Counter[str] = sum((Counter(t["updates"]) for t in tallies), Counter())
        conflicts: Counter[str] = sum((Counter(t["conflicts"]) for t in tallies), Counter())
        reads: Counter[str] = sum((Counter(t["reads"]) for t in tallies), Counter())
        created = [rid for t in tallies for rid in t["created"]]
        writers = MAIN_THREADS + PROCESSES * PROCESS_THREADS

        report = admin.audit.verify()
        history = {rid: list(admin.audit.query(record_id=rid)) for rid in record_ids}
        final = {rid: admin.get_record(rid) for rid in record_ids}
        patient = set(admin.list_records(NHSNumber(NEW_PATIENT)))
        for rid in created:
            assert admin.get_record(rid).fields["by"]

    # every attempt was counted, and the contention was real
    assert sum(reads.values()) == writers * ATTEMPTS
    assert sum(updates.values()) + sum(conflicts.values()) == writers * ATTEMPTS
    assert sum(conflicts.values()) > 0
    # no lost update: the version and a read-modify-write counter both equal the successes
    for rid in record_ids:
        assert final[rid].version == 1 + updates[rid]
        assert final[rid].fields["count"] == updates[rid]
    # one subject key for the new patient, every concurrent create under it
    assert len(created) == writers
    assert patient == set(created)
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        container = service.get_container_client(f"mzc-{cid}")
        assert len(list(container.list_blob_names(name_starts_with="subjects/"))) == 2
        assert len(list(container.list_blob_names(name_starts_with="index/"))) == 2
    # no fork: one chain per process, and each attempt in the trail exactly once
    assert report.chains == 1 + PROCESSES
    for rid in record_ids:
        ops = Counter((e.operation, e.outcome) for e in history[rid])
        assert ops[("record.read", "success")] == reads[rid]
        assert ops[("record.update", "success")] == updates[rid] + conflicts[rid]
        assert ops[("record.update", "failure")] == conflicts[rid]
        assert ops[("record.create", "success")] == 1
