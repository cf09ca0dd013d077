"""Azurite dies in the middle of a concurrent bulk write (DESIGN §4a; issue 5 item 4).

Two properties, tested separately because Azurite's disk mode saves its metadata every
5 s, so SIGKILL loses what it acknowledged in the last 5 s (real Azure does not):

- stopped gracefully (SIGTERM) mid-write and restarted on the same folder, every write the
  library reported as successful is readable and intact, and nothing half-written is
  visible as a record (every record listed under a subject decrypts);
- killed (SIGKILL) mid-write, the in-flight operations fail quickly with the library's own
  errors (StorageError / AuditError), and after a restart whatever is visible is intact.

And the audit writer survives an outage: after the endpoint comes back, the same processor
carries on and its trail still verifies.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from mizaic_processor import (
    Actor,
    AuditError,
    ControllerScope,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    Processor,
    RecordRef,
    StorageError,
)
from mizaic_processor.testing import AzuriteFactory, AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-bulk")
ADMIN = Actor.controller_admin("dpo@trust.example")
PDF = "application/pdf"
THREADS = 8
FAILURE_DEADLINE = 20.0  # seconds an in-flight operation may take to fail (retry_total=1)


def nhs_numbers(count: int) -> list[str]:
    """Valid NHS numbers (Modulus 11), deterministic."""
    out: list[str] = []
    base = 400_000_000
    while len(out) < count:
        digits = f"{base:09d}"
        base += 7919
        total = sum(int(d) * w for d, w in zip(digits, range(10, 1, -1), strict=True))
        check = (11 - total % 11) % 11
        if check != 10:
            out.append(digits + str(check))
    return out


SUBJECTS = [NHSNumber(n) for n in nhs_numbers(4)]


def content_of(writer: int, n: int) -> bytes | None:
    return f"scanned page {writer}/{n} ".encode() * 200 if n % 3 == 0 else None


def open_processor(server: AzuriteServer, ring: LocalKeyring, *, retry_total: int) -> Processor:
    return Processor.from_connection_string(
        server.connection_string, region="uksouth", keyring=ring, retry_total=retry_total,
        retry_backoff=0.05,
    )


@dataclass
class BulkWrite:
    """8 threads creating records for 4 subjects until told to stop."""

    proc: Processor
    cid: str
    pause: float = 0.0
    acked: dict[tuple[int, int], RecordRef] = field(default_factory=dict)
    failures: list[tuple[type[BaseException], float]] = field(default_factory=list)
    foreign: list[BaseException] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        scope = self.proc.tenant(self.cid, actor=SERVICE)
        for writer in range(THREADS):
            thread = threading.Thread(target=self._work, args=(scope, writer), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _work(self, scope: ControllerScope, writer: int) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            content = content_of(writer, n)
            started = time.monotonic()
            try:
                ref = scope.create_record(
                    SUBJECTS[(writer + n) % len(SUBJECTS)], category="adult",
                    fields={"writer": writer, "n": n, "note": f"entry {writer}-{n}"},
                    content=content, content_type=PDF if content is not None else None,
                )
            except MizaicError as exc:
                with self.lock:
                    self.failures.append((type(exc), time.monotonic() - started))
                time.sleep(0.05)
            except BaseException as exc:  # anything else escaping the library is a bug
                with self.lock:
                    self.foreign.append(exc)
                return
            else:
                with self.lock:
                    self.acked[(writer, n)] = ref
                time.sleep(self.pause)

    def wait_for(self, acked: int, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < acked:
            assert time.monotonic() < deadline, "the bulk write made no progress"
            time.sleep(0.01)

    def finish(self, timeout: float) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self.threads), "a writer hung"


def setup_controller(server: AzuriteServer, ring: LocalKeyring) -> str:
    cid = "kr" + uuid.uuid4().hex[:12]
    with open_processor(server, ring, retry_total=1) as proc:
        proc.register_controller(cid, name="Fault Trust", actor=OPERATOR)
    return cid


def check_visible_records(server: AzuriteServer, ring: LocalKeyring, cid: str) -> set[str]:
    """Every record listed under any subject decrypts and is one that was written, whole."""
    with open_processor(server, ring, retry_total=1) as proc:
        scope = proc.tenant(cid, actor=SERVICE)
        visible: set[str] = set()
        for index, subject in enumerate(SUBJECTS):
            for record_id in scope.list_records(subject):
                record = scope.get_record(record_id)  # IntegrityError if half-written
                writer, n = record.fields["writer"], record.fields["n"]
                assert isinstance(writer, int) and isinstance(n, int)
                assert (writer + n) % len(SUBJECTS) == index
                assert record.fields == {"writer": writer, "n": n, "note": f"entry {writer}-{n}"}
                assert record.subject == subject and record.version == 1
                expected = content_of(writer, n)
                assert (record.content is None) == (expected is None)
                if expected is not None:
                    assert record.content is not None
                    assert record.content.sha256 == hashlib.sha256(expected).hexdigest()
                    with scope.open_content(record_id) as reader:
                        assert reader.read() == expected
                visible.add(record_id)
        return visible


@pytest.fixture
def ring() -> LocalKeyring:
    return LocalKeyring.generate()


@pytest.fixture
def server(azurite_factory: AzuriteFactory) -> Iterator[AzuriteServer]:
    yield azurite_factory()


def test_every_acknowledged_write_survives_a_graceful_stop_mid_bulk_write_and_a_restart(
    server: AzuriteServer, ring: LocalKeyring
) -> None:
    cid = setup_controller(server, ring)
    # no retries: the in-flight operations fail at once (this test is about what survives)
    proc = open_processor(server, ring, retry_total=0)
    bulk = BulkWrite(proc, cid)
    bulk.start()
    bulk.wait_for(acked=60)

    server.stop()  # SIGTERM while 8 writers are busy
    bulk.finish(timeout=FAILURE_DEADLINE + 10)
    server.start()  # same folder, same ports
    visible = check_visible_records(server, ring, cid)
    proc.close()

    assert bulk.foreign == []
    assert len(bulk.acked) >= 60
    assert {ref.record_id for ref in bulk.acked.values()} <= visible
    with open_processor(server, ring, retry_total=1) as reader:
        scope = reader.tenant(cid, actor=SERVICE)
        for (writer, n), ref in bulk.acked.items():
            record = scope.get_record(ref.record_id)
            assert (record.etag, record.version) == (ref.etag, 1)
            assert (record.fields["writer"], record.fields["n"]) == (writer, n)


def test_in_flight_operations_fail_quickly_with_library_errors_when_azurite_is_killed(
    server: AzuriteServer, ring: LocalKeyring
) -> None:
    cid = setup_controller(server, ring)
    server.restart()  # persist the registration and keys before the crash
    proc = open_processor(server, ring, retry_total=1)
    bulk = BulkWrite(proc, cid, pause=0.25)  # ~30 writes/s: fewer records to check after
    bulk.start()
    time.sleep(6.5)  # > 5 s, so Azurite has saved part of what it acknowledged

    server.kill()  # SIGKILL mid-write
    killed_at = time.monotonic()
    time.sleep(0.5)
    bulk.finish(timeout=FAILURE_DEADLINE + 10)
    all_done_after = time.monotonic() - killed_at
    server.start()
    visible = check_visible_records(server, ring, cid)
    proc.close()

    assert bulk.foreign == []
    assert bulk.failures, "no operation was in flight when Azurite died"
    assert {kind for kind, _ in bulk.failures} <= {StorageError, AuditError}
    assert max(seconds for _, seconds in bulk.failures) < FAILURE_DEADLINE
    assert all_done_after < FAILURE_DEADLINE + 5
    # SIGKILL may lose acknowledged writes of the last 5 s (an Azurite artefact), so only
    # what is visible is checked, and something must be, or the check proved nothing.
    assert visible


def test_after_an_outage_the_same_processor_carries_on_and_its_trail_still_verifies(
    server: AzuriteServer, ring: LocalKeyring
) -> None:
    cid = setup_controller(server, ring)
    with open_processor(server, ring, retry_total=0) as proc:
        service = proc.tenant(cid, actor=SERVICE)
        admin = proc.tenant(cid, actor=ADMIN)
        ref = service.create_record(SUBJECTS[0], category="adult", fields={"bp": 120})

        server.stop()  # nothing is in flight: the writer is idle
        for _ in range(2):
            with pytest.raises(AuditError):
                service.update_record(ref.record_id, etag=ref.etag, fields={"bp": 1})
        server.start()

        updated = service.update_record(ref.record_id, etag=ref.etag, fields={"bp": 130})
        assert updated.version == 2
        report = admin.audit.verify()

    # the registration's own chain; this processor's first chain (create); and, since the
    # outcome of the appends during the outage could not be known, the new chain it
    # moved to rather than risk forking the first (update, verify)
    assert (report.chains, report.events) == (3, 1 + 1 + 2)
