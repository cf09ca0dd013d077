"""Bulk ingest: migrate a trust's scanned case notes with ``create_records``, resumably, and
read them back with ``get_records``, against a throw-away local Azurite.

Run it with::

    .venv/bin/python -m mizaic_processor.testing run -- .venv/bin/python examples/bulk_ingest.py

The ``run`` command starts Azurite, sets ``MIZAIC_CONNECTION_STRING`` and
``MIZAIC_REGION=uksouth`` for this script, and removes Azurite's data afterwards.

What it shows:

1. A scanning bureau's export: 200 synthetic case notes (a small PDF-like file each, and a
   manifest line) for 20 synthetic patients, written to a temporary folder.
2. One bad manifest line (a scan whose media type was lost) refused by ``create_records``
   before any I/O: the error names the item's position, and storage is untouched.
3. The migration in batches of 50, with a progress bar and a journal (a JSON file mapping
   each source id to its record id). The process "dies" after storing its third batch but
   before journalling it; the re-run finds that batch's records through the patients'
   records and a ``source_id`` field, then stores only what is left. A third run has nothing
   to do. Every case note ends up stored exactly once. (Items that fail with a
   ``PartialFailureError`` are looked for the same way, then submitted again, alone.)
4. A clinical portal reading all 200 records, one field each, with ``get_records``, at
   ``max_concurrency`` 1 and 16; then a batch that includes a patient whose processing the
   trust has restricted: a ``PartialFailureError`` with the other records in ``.results``.

Everything is synthetic: the NHS numbers are in the 999 range (not issued to patients, used
for test data) with valid Modulus 11 check digits, and every case note says SYNTHETIC.
Exit status: 0 when every check passes, 1 when one fails, 2 without the environment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from mizaic_processor import (
    Actor,
    ControllerScope,
    InvalidInputError,
    LocalKeyring,
    MizaicError,
    NewRecord,
    NHSNumber,
    PartialFailureError,
    Processor,
    RecordRef,
    RestrictedError,
)

CONTROLLER = "syn1"
SUBJECTS = 20
NOTES_PER_SUBJECT = 10
BATCH_SIZE = 50  # items per create_records call: what a crash can leave unjournalled
CONCURRENCY = 16  # operations in flight per call (1 to 64)
ATTEMPTS = 3  # create_records calls per batch before giving up (a re-run resumes)
SPECIALTIES = ("cardiology", "respiratory", "orthopaedics", "dermatology", "general surgery")

OPERATOR = Actor.processor_operator("mizaic-support-1")
MIGRATION = Actor.service("case-note-migration")
PORTAL = Actor.service("clinical-portal")
RECORDS_MANAGER = Actor.controller_admin("records-manager")


# -- The source: a scanning bureau's export ------------------------------------------------


@dataclass(frozen=True)
class CaseNote:
    """One line of the bureau's manifest: a scanned case note of one patient."""

    source_id: str  # the bureau's id for the scan: the journal's key
    nhs_number: str
    specialty: str
    last_seen: dt.date
    path: Path
    content_type: str | None = "application/pdf"


def synthetic_nhs_number(n: int) -> str:
    """The n-th valid NHS number of the 999 range (not issued to patients)."""
    candidate = 999_000_000 + n * 7919  # spread them out a little
    while True:
        digits = f"{candidate:09d}"
        check = 11 - sum(int(d) * (10 - i) for i, d in enumerate(digits)) % 11
        check = 0 if check == 11 else check
        if check != 10:  # 10 means no number with these nine digits is valid
            return digits + str(check)
        candidate += 1


def write_bureau_export(folder: Path) -> list[CaseNote]:
    """Write one small scan file per case note and return the manifest."""
    scans = folder / "scans"
    scans.mkdir()
    notes: list[CaseNote] = []
    for s in range(SUBJECTS):
        nhs_number = synthetic_nhs_number(s)
        for k in range(NOTES_PER_SUBJECT):
            source_id = f"SYN-CN-{s:03d}-{k:02d}"
            header = (
                f"%PDF-1.7\n% SYNTHETIC CASE NOTE {source_id} - not a real patient\n"
                f"% page {k + 1} of {NOTES_PER_SUBJECT}\n"
            ).encode("ascii")
            path = scans / f"{source_id}.pdf"
            path.write_bytes(header + hashlib.shake_256(source_id.encode()).digest(6 * 1024))
            notes.append(CaseNote(
                source_id=source_id,
                nhs_number=nhs_number,
                specialty=SPECIALTIES[(s + k) % len(SPECIALTIES)],
                last_seen=dt.date(2015, 1, 1) + dt.timedelta(days=97 * s + 31 * k),
                path=path,
            ))
    return notes


def new_record(note: CaseNote, content: IO[bytes]) -> NewRecord:
    """The record to store for one case note; ``content`` is its open scan file."""
    return NewRecord(
        NHSNumber(note.nhs_number),
        category="adult",
        fields={
            "source_id": note.source_id,  # lets a re-run find records its journal missed
            "specialty": note.specialty,
            "title": f"Synthetic scanned case note {note.source_id}",
            "synthetic": True,
        },
        events={"last_seen": note.last_seen},
        content=content,
        content_type=note.content_type,
    )


# -- Progress: a bar on a terminal, a line every 25 items otherwise ---------------------------


class ProgressReport:
    """A ``progress(done, total)`` callback; the library calls it in the calling thread."""

    def __init__(self, label: str, every: int = 25) -> None:
        self.label = label
        self.every = every
        self.tty = sys.stderr.isatty()
        self.last_drawn = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        total = total or 0
        if self.tty:
            now = time.monotonic()
            if done < total and now - self.last_drawn < 0.1:
                return
            self.last_drawn = now
            width = 30
            filled = width * done // total if total else width
            bar = "#" * filled + "." * (width - filled)
            end = "\n" if done >= total else ""
            print(f"\r  {self.label} [{bar}] {done}/{total}", end=end, file=sys.stderr,
                  flush=True)
        elif done % self.every == 0 or done == total:
            print(f"  {self.label}: {done}/{total}")


# -- The journal ---------------------------------------------------------------------------


class Journal:
    """Which source items are stored: ``done`` maps source id -> record id; ``pending``
    lists the source ids of the batch in flight (stored or not: nobody knows yet).

    Rewritten atomically (a temporary file, fsync, rename) after every change, so a crash
    leaves either the old journal or the new one.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}
        self.pending: list[str] = []
        if path.exists():
            doc = json.loads(path.read_text("utf-8"))
            self.done = dict(doc["done"])
            self.pending = list(doc["pending"])

    def save(self) -> None:
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as out:
            json.dump({"done": self.done, "pending": self.pending}, out, indent=1,
                      sort_keys=True)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)


class SimulatedCrashError(Exception):
    """Stands for the process dying (power cut, OOM kill, deploy) at the worst moment."""


class IngestIncompleteError(Exception):
    """Some case notes still failed after every attempt; running again later resumes."""


def ingest(
    scope: ControllerScope, notes: Sequence[CaseNote], journal: Journal,
    *, crash_after_storing_batch: int | None = None,
) -> int:
    """Store every case note the journal does not list as done. Returns how many it stored.

    Safe to run again after any failure or crash. Creates are not idempotent, so it never
    re-submits an item it knows was stored, and before re-submitting one whose outcome is
    not known (a batch left ``pending`` by a crash, an item that failed) it looks for it in
    storage by its ``source_id``.
    """
    by_source = {note.source_id: note for note in notes}
    if journal.pending:
        print(f"  journal: a batch of {len(journal.pending)} was in flight when the process "
              "stopped")
        settle(scope, [by_source[source_id] for source_id in journal.pending], journal)
    todo = [note for note in notes if note.source_id not in journal.done]
    print(f"  journal: {len(journal.done)} done, {len(todo)} to store")
    stored = 0
    for number, start in enumerate(range(0, len(todo), BATCH_SIZE), start=1):
        batch = todo[start : start + BATCH_SIZE]
        label = f"batch {number}, {batch[0].source_id} to {batch[-1].source_id}"
        for attempt in range(1, ATTEMPTS + 1):
            left = [note for note in batch if note.source_id not in journal.done]
            journal.pending = [note.source_id for note in left]
            journal.save()  # before the call: a crash during it leaves these pending
            refs = create_batch(scope, left, label)
            if crash_after_storing_batch == number:
                raise SimulatedCrashError  # stored, but not yet journalled
            for note, ref in zip(left, refs, strict=True):
                if ref is not None:
                    journal.done[note.source_id] = ref.record_id
                    stored += 1
            journal.pending = [n.source_id for n in left if n.source_id not in journal.done]
            journal.save()
            if not journal.pending:
                break
            if attempt == ATTEMPTS:
                raise IngestIncompleteError(f"{len(journal.pending)} case notes still failing")
            # A failed create normally changed nothing, but a StorageError can hide a write
            # that landed (its answer was lost): look before submitting the item again.
            settle(scope, [by_source[source_id] for source_id in journal.pending], journal)
    return stored


def create_batch(
    scope: ControllerScope, notes: Sequence[CaseNote], label: str,
) -> list[RecordRef | None]:
    """One ``create_records`` call: a ref per note, ``None`` where the note failed."""
    with ExitStack() as files:  # each scan file is open for this call only
        items = [new_record(note, files.enter_context(note.path.open("rb"))) for note in notes]
        try:
            return list(scope.create_records(
                items, max_concurrency=CONCURRENCY, progress=ProgressReport(label),
            ))
        except PartialFailureError as exc:
            # The message has counts and error kinds only; results[i] is None where item i
            # failed, and errors[i] is its error (a MizaicError, or an OSError from reading
            # its scan). The other items are stored.
            print(f"  {label}: {exc}")
            return [ref if isinstance(ref, RecordRef) else None for ref in exc.results]


def settle(scope: ControllerScope, notes: Sequence[CaseNote], journal: Journal) -> None:
    """Find which of ``notes`` are stored after all, through their patients' records
    (``list_records``) and the ``source_id`` field (``get_records``), and journal them."""
    wanted = {note.source_id for note in notes}
    record_ids: list[str] = []
    for nhs_number in sorted({note.nhs_number for note in notes}):
        record_ids.extend(scope.list_records(NHSNumber(nhs_number)))
    found = 0
    for record in scope.get_records(record_ids, fields=["source_id"],
                                    max_concurrency=CONCURRENCY):
        source_id = record.fields.get("source_id")
        if source_id in wanted:
            journal.done[str(source_id)] = record.record_id
            found += 1
    journal.pending = []
    journal.save()
    print(f"  settled: {found} of {len(notes)} are stored already, "
          f"{len(notes) - found} are not")


# -- The walkthrough -----------------------------------------------------------------------


def main() -> int:
    connection_string = os.environ.get("MIZAIC_CONNECTION_STRING")
    region = os.environ.get("MIZAIC_REGION")
    if not connection_string or not region:
        print(
            "Set MIZAIC_CONNECTION_STRING and MIZAIC_REGION, or run me with\n"
            "  python -m mizaic_processor.testing run -- python examples/bulk_ingest.py",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="mizaic-bulk-") as folder, \
            Processor.from_connection_string(
                connection_string, region=region, keyring=LocalKeyring.generate()
            ) as processor:
        ok = run(processor, Path(folder))
    print()
    print("All checks passed." if ok else "A CHECK FAILED (see above).")
    return 0 if ok else 1


def run(processor: Processor, folder: Path) -> bool:
    heading("1. The scanning bureau's export")
    notes = write_bureau_export(folder)
    size = sum(note.path.stat().st_size for note in notes)
    print(f"  {len(notes)} case notes ({size // 1024} KiB of scans) for {SUBJECTS} patients "
          f"in {folder}")
    processor.register_controller(CONTROLLER, name="Synthetic Example NHS Trust",
                                  actor=OPERATOR)
    migration = processor.tenant(CONTROLLER, actor=MIGRATION)
    ok = True

    heading("2. One bad manifest line is refused before any I/O")
    bad = 17
    batch = list(notes[:BATCH_SIZE])
    batch[bad] = replace(batch[bad], content_type=None)  # the media type was lost
    requests_before = processor.request_count
    with ExitStack() as files:
        items = [new_record(note, files.enter_context(note.path.open("rb"))) for note in batch]
        try:
            migration.create_records(items, max_concurrency=CONCURRENCY)
        except InvalidInputError as exc:
            print(f"  InvalidInputError: {exc}")
            ok &= check(f"records[{bad}]" in str(exc), "the error names the bad item's position")
        else:
            ok &= check(False, "the bad item was refused")
    ok &= check(processor.request_count == requests_before,
                "no storage request was made, so nothing of the other 49 items was written")
    ok &= check(not migration.subject_exists(NHSNumber(notes[0].nhs_number)),
                "the first patient of the batch is still unknown to storage")

    heading(f"3. The migration, in batches of {BATCH_SIZE}, journalled")
    journal_path = folder / "journal.json"
    print(f"  journal file: {journal_path}")
    print("  run 1 (the process dies after storing batch 3, before journalling it):")
    requests_before, started = processor.request_count, time.perf_counter()
    try:
        ingest(migration, notes, Journal(journal_path), crash_after_storing_batch=3)
    except SimulatedCrashError:
        print("  ... the process stopped")
    elapsed = time.perf_counter() - started
    requests = processor.request_count - requests_before
    stored = 3 * BATCH_SIZE
    print(f"  run 1 stored {stored} case notes in {elapsed:.2f} s: {stored / elapsed:.0f} "
          f"records/s, {requests / stored:.2f} storage requests per record "
          f"(its document included), max_concurrency={CONCURRENCY}")
    print("  run 2:")
    started = time.perf_counter()
    stored = ingest(migration, notes, Journal(journal_path))
    print(f"  run 2 settled the pending batch and stored {stored} case notes in "
          f"{time.perf_counter() - started:.2f} s")
    print("  run 3:")
    requests_before = processor.request_count
    stored_again = ingest(migration, notes, Journal(journal_path))
    ok &= check(stored_again == 0 and processor.request_count == requests_before,
                "run 3 stored nothing and made no storage request")
    journal = Journal(journal_path)
    ok &= check(len(journal.done) == len(notes) and not journal.pending,
                f"the journal lists all {len(notes)} case notes as done")
    per_patient = [sorted(migration.list_records(NHSNumber(synthetic_nhs_number(s))))
                   for s in range(SUBJECTS)]
    ok &= check(sorted(r for ids in per_patient for r in ids) == sorted(journal.done.values()),
                "storage holds exactly the journalled records: no duplicates, none missing")

    heading("4. A clinical portal reads them back")
    portal = processor.tenant(CONTROLLER, actor=PORTAL)
    record_ids = [journal.done[note.source_id] for note in notes]
    for concurrency in (1, CONCURRENCY):
        requests_before = processor.request_count
        started = time.perf_counter()
        records = portal.get_records(
            record_ids, fields=["source_id", "specialty"], max_concurrency=concurrency,
            progress=ProgressReport(f"read, max_concurrency={concurrency}", every=100),
        )
        elapsed = time.perf_counter() - started
        requests = processor.request_count - requests_before
        print(f"  {len(records)} records, 2 fields each, max_concurrency={concurrency}: "
              f"{elapsed:.2f} s ({len(records) / elapsed:.0f} records/s, "
              f"{requests / len(records):.2f} storage requests per record)")
        ok &= check(
            [r.fields["source_id"] for r in records] == [n.source_id for n in notes]
            and all(set(r.fields) == {"source_id", "specialty"} for r in records),
            "in the order asked, only the fields asked for",
        )

    restricted = NHSNumber(notes[0].nhs_number)
    admin = processor.tenant(CONTROLLER, actor=RECORDS_MANAGER)
    instruction = admin.create_instruction("restriction", subject=restricted)
    admin.set_restriction(restricted, True, instruction_id=instruction.instruction_id)
    print(f"  the trust restricts processing of one patient; the portal reads "
          f"{2 * NOTES_PER_SUBJECT} records, that patient's {NOTES_PER_SUBJECT} among them:")
    try:
        portal.get_records(record_ids[: 2 * NOTES_PER_SUBJECT], fields=["title"])
    except PartialFailureError as exc:
        print(f"  PartialFailureError: {exc}")
        kinds = Counter(type(error).__name__ for error in exc.errors.values())
        read = [r for r in exc.results if r is not None]
        print(f"  errors by position: {sorted(exc.errors)} ({dict(kinds)}); "
              f"{len(read)} records in .results")
        ok &= check(
            sorted(exc.errors) == list(range(NOTES_PER_SUBJECT))
            and all(isinstance(e, RestrictedError) for e in exc.errors.values())
            and len(read) == NOTES_PER_SUBJECT,
            "only the restricted patient's reads failed; the others were handed out",
        )
    else:
        ok &= check(False, "the restricted patient's records were refused")
    return ok


# -- Small helpers -------------------------------------------------------------------------


def check(condition: bool, what: str) -> bool:
    print(f"  {'ok  ' if condition else 'FAIL'} {what}")
    return condition


def heading(title: str) -> None:
    print(f"\n== {title}")


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MizaicError as exc:
        # The library's messages name opaque ids and what went wrong, never patient data.
        print(f"mizaic_processor error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
