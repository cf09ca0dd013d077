"""The audit trail and key rotation, end to end, against a throw-away local Azurite.

Run it with::

    .venv/bin/python -m mizaic_processor.testing run -- .venv/bin/python examples/audit_and_keys.py

The ``run`` command starts Azurite, sets ``MIZAIC_CONNECTION_STRING`` and
``MIZAIC_REGION=uksouth`` for this script, and removes Azurite's data afterwards.

What it shows:

1. A product service writes and reads records; every operation, and one refused attempt,
   lands in the controller's audit trail.
2. The controller's records manager (a ``controller_admin``) verifies the trail, queries it
   by patient, exports it, and runs the exported verifier (standard library only) in a
   separate Python process.
3. Someone with write access to the storage account changes one audit event directly in
   Blob Storage; ``verify()`` names the exact event, and ``export()`` refuses.
4. Why the controller keeps the checkpoints it receives: a forger who rewrites a whole chain
   (recomputing every hash) is caught only by a checkpoint held outside storage.
5. On a fresh controller: rotate the controller key and the blind-index key, retire the old
   versions once the key cache lifetime has passed (the clock is injected), then rotate the
   KEK, and read every record back at each step, in this process and in a new one; then
   check that every patient is still found by NHS number (``verify_index``).
6. Someone deletes a patient's blind-index entry: the patient reads as unknown until
   ``verify_index`` puts the entry back.

The patients are made up (943 476 5919 and 401 023 2137 are test NHS numbers).
Exit status: 0 when every check passes, 1 when one fails, 2 without the environment.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    AuditTamperedError,
    ConflictError,
    ControllerScope,
    LocalKeyring,
    NHSNumber,
    Processor,
)

OPERATOR = Actor.processor_operator("mizaic-support-1")
SERVICE = Actor.service("edms-api")
ADMIN = Actor.controller_admin("records-manager.rxh")
PATIENT = NHSNumber("943 476 5919")
OTHER_PATIENT = NHSNumber("401 023 2137")
KEY_CACHE_TTL = 300.0  # seconds; the default, spelled out because rotation depends on it
RETIRE_AFTER = 3600.0  # retiring waits the longest key_cache_ttl a Processor accepts
PDF = "application/pdf"


class CheckError(Exception):
    """A check of this walkthrough did not hold."""


def check(condition: bool, what: str) -> None:
    if not condition:
        raise CheckError(what)


def heading(text: str) -> None:
    print()
    print(text)
    print("-" * len(text))


class Clock:
    """An injected clock: the processor reads the time from here, and the script moves it.

    The audit writer's thread reads it too, hence the lock.
    """

    def __init__(self, start: dt.datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)


def canonical(event: dict[str, object]) -> bytes:
    """An audit event's exact line: sorted keys, compact, ASCII (what a careful forger uses)."""
    return json.dumps(event, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def main() -> int:
    connection_string = os.environ.get("MIZAIC_CONNECTION_STRING")
    region = os.environ.get("MIZAIC_REGION")
    if not connection_string or not region:
        print(
            "Set MIZAIC_CONNECTION_STRING and MIZAIC_REGION, or run me with\n"
            "  python -m mizaic_processor.testing run -- python examples/audit_and_keys.py",
            file=sys.stderr,
        )
        return 2
    keyring = LocalKeyring.generate()  # development only; production uses KeyVaultKeyring
    clock = Clock(dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC))
    try:
        with tempfile.TemporaryDirectory(prefix="mizaic-audit-") as tmp:
            audit_walkthrough(connection_string, region, keyring, clock, Path(tmp))
        rotation_walkthrough(connection_string, region, keyring, clock)
    except CheckError as exc:
        print(f"\nCHECK FAILED: {exc}", file=sys.stderr)
        return 1
    print("\nAll checks passed.")
    return 0


# -- 1-4: the audit trail ---------------------------------------------------------------------


def audit_walkthrough(
    connection_string: str, region: str, keyring: LocalKeyring, clock: Clock, tmp: Path
) -> None:
    cid = "rxh"
    heading("1. A product service works on patient records; each operation is recorded")
    with Processor.from_connection_string(
        connection_string, region=region, keyring=keyring, clock=clock
    ) as processor:
        processor.register_controller(cid, name="Example Hospitals NHS Trust", actor=OPERATOR)
        edms = processor.tenant(cid, actor=SERVICE)
        clock.advance(60)
        letter = edms.create_record(
            PATIENT, category="adult", fields={"diagnosis": "atrial fibrillation"},
            events={"last_treatment": dt.date(2025, 1, 20)},
        )
        scan = edms.create_record(
            PATIENT, category="adult", fields={"title": "discharge letter"},
            content=b"%PDF-1.7 scanned discharge letter", content_type=PDF,
        )
        edms.create_record(OTHER_PATIENT, category="maternity", fields={"parity": 2})
        clock.advance(60)
        edms.get_record(letter.record_id)
        with edms.open_content(scan.record_id) as reader:
            reader.read()
        check(set(edms.list_records(PATIENT)) == {letter.record_id, scan.record_id},
              "the patient's records are found by NHS number")
        clock.advance(60)
        edms.update_record(letter.record_id, etag=letter.etag, fields={"diagnosis": "AF"})
        clock.advance(60)
        try:
            # a service may not destroy records: the refusal itself is recorded
            edms.delete_record(letter.record_id, instruction_id="i" + "a" * 26)
        except AccessDeniedError as exc:
            print(f"A refused attempt (recorded as access.denied): {exc}")
        else:
            raise CheckError("a service was allowed to delete a record")
        print("Registered the controller, created 3 records, read one, read a document,")
        print("listed a patient's records and updated one, as the service 'edms-api'.")
    # Closing the processor committed and sealed (checkpointed) the service's chain.

    heading("2. The records manager verifies, queries and exports the trail")
    with Processor.from_connection_string(
        connection_string, region=region, keyring=keyring, clock=clock
    ) as processor:
        admin = processor.tenant(cid, actor=ADMIN)
        clock.advance(600)
        report = admin.audit.verify()
        print(f"verify(): intact: {report.chains} chains, {report.events} events, "
              f"{report.checkpoints} checkpoints")
        check(report.chains == 2, "two chains: the service's process and this one")

        print("query(subject=the NHS number), matched through the pseudonymous reference:")
        events = list(admin.audit.query(subject=PATIENT))
        for event in events:
            print(f"  {event.recorded:%H:%M} {event.actor:<12} {event.role:<8} "
                  f"{event.operation:<14} {event.action} {event.outcome:<7} "
                  f"{event.purpose:<6} {event.entity[:20]}...")
        operations = [e.operation for e in events]
        check(operations.count("record.create") == 2 and "content.read" in operations
              and "record.update" in operations, "the patient's history is complete")
        check(all("9434765919" not in e.model_dump_json() for e in events),
              "no event holds the NHS number")
        denied = [e for e in admin.audit.query(actor=SERVICE.id)
                  if e.operation == "access.denied"]
        check(len(denied) == 1 and denied[0].outcome == "failure",
              "the refused deletion is in the trail")
        print(f"query(actor='{SERVICE.id}') also shows the refused attempt: "
              f"{denied[0].operation}, outcome {denied[0].outcome}")

        export = admin.audit.export(tmp / "export")
        print(f"export(): {sorted(p.name for p in export.iterdir())}")
        result = run_verifier(export)
        print(f"the exported verifier, in a separate Python with no site-packages: "
              f"{result.stdout.strip()}")
        check(result.returncode == 0, "the exported trail verifies offline")

        heading("3. Someone with storage write access alters one event")
        container = processor.get_controller(cid).container
        chain, seq = alter_actor_of_first_read(connection_string, container)
        print(f"Changed the actor of event #{seq} of chain {chain} directly in Blob Storage")
        print("(downloaded the segment, deleted it, re-created it, appended the changed bytes).")
        try:
            admin.audit.verify()
        except AuditTamperedError as exc:
            print(f"verify() raises AuditTamperedError: {exc}")
            check((exc.chain, exc.seq, exc.kind) == (chain, seq, "altered"),
                  "verify() names the altered event")
        else:
            raise CheckError("verify() did not notice the altered event")
        try:
            admin.audit.export(tmp / "second-export")
        except AuditTamperedError:
            print("export() refuses too, and writes nothing: "
                  f"{not (tmp / 'second-export').exists()}")
        else:
            raise CheckError("a broken trail was exported")

    heading("4. Why the controller keeps the checkpoints it receives")
    forged = tmp / "forged"
    shutil.copytree(export, forged)
    rewrite_chain_consistently(forged / "chains" / f"{chain}.ndjson", seq)
    print("A forger rewrites the same event in a copy of the export and recomputes the hash")
    print("of every later event, so the chain itself is consistent again.")
    result = run_verifier(forged)
    print(f"  with the checkpoints the controller kept: {result.stdout.strip()}")
    check(result.returncode == 1 and "altered" in result.stdout,
          "a kept checkpoint exposes a consistently rewritten chain")
    print("  (a checkpoint seals a chain's head, so it names the sealed event, not the one")
    print("  the forger changed: the history from there back is no longer what was sealed)")
    (forged / "checkpoints.json").write_text("[]")
    result = run_verifier(forged)
    print(f"  with every checkpoint removed too:        {result.stdout.strip()}")
    check(result.returncode == 1 and "unsealed chain" in result.stdout,
          "a chain without even its signed genesis seal is refused")
    print("Every chain starts with a signed genesis seal, so deleting the seals does not")
    print("help the forger either. Still, only checkpoints held outside storage (the ones")
    print("delivered to the controller) prove the history was not rewritten by someone")
    print("who also holds the audit key.")


def run_verifier(directory: Path) -> subprocess.CompletedProcess[str]:
    # -I: isolated mode; -S: no site-packages, so only the standard library is importable.
    return subprocess.run(  # noqa: S603 (our own interpreter and a file we just wrote)
        [sys.executable, "-I", "-S", str(directory / "verify_audit.py"), str(directory)],
        capture_output=True, text=True, timeout=60, check=False, cwd=directory,
    )


def alter_actor_of_first_read(connection_string: str, container: str) -> tuple[str, int]:
    """Tamper like a storage-level attacker: change one event's actor in its append blob.

    :returns: the chain and sequence number of the altered event.
    """
    with BlobServiceClient.from_connection_string(connection_string) as service:
        raw = service.get_container_client(container)
        for segment in raw.list_blob_names(name_starts_with="audit/"):
            blob = raw.get_blob_client(segment)
            lines = blob.download_blob().readall().splitlines()
            reads = [i for i, line in enumerate(lines)
                     if json.loads(line)["op"] == "record.read"]
            if not reads or reads[0] == len(lines) - 1:
                continue
            index = reads[0]
            event = json.loads(lines[index])
            event["actor"] = "someone-else"
            lines[index] = canonical(event)
            blob.delete_blob()
            blob.create_append_blob()
            blob.append_block(b"".join(line + b"\n" for line in lines))
            return segment.split("/")[1], int(event["seq"])
    raise CheckError("no record.read event found in the audit blobs")


def rewrite_chain_consistently(path: Path, seq: int) -> None:
    lines = path.read_bytes().splitlines()
    events = [json.loads(line) for line in lines]
    events[seq - 1]["actor"] = "someone-else"
    prev = hashlib.sha256(lines[seq - 2]).hexdigest() if seq > 1 else "0" * 64
    out = lines[: seq - 1]
    for event in events[seq - 1 :]:
        event["prev"] = prev
        line = canonical(event)
        prev = hashlib.sha256(line).hexdigest()
        out.append(line)
    path.write_bytes(b"".join(line + b"\n" for line in out))


# -- 5: key rotation --------------------------------------------------------------------------


Expected = dict[str, tuple[NHSNumber, dict[str, object], bytes | None]]


def rotation_walkthrough(
    connection_string: str, region: str, keyring: LocalKeyring, clock: Clock
) -> None:
    cid = "rxr"
    heading("5. Rotate the controller key, the blind-index key and the KEK")
    with Processor.from_connection_string(
        connection_string, region=region, keyring=keyring, clock=clock,
        key_cache_ttl=KEY_CACHE_TTL,
    ) as processor:
        processor.register_controller(cid, name="Example Rotation Trust", actor=OPERATOR)
        edms = processor.tenant(cid, actor=SERVICE)
        expected: Expected = {}
        for n, patient in enumerate((PATIENT, OTHER_PATIENT)):
            fields: dict[str, object] = {"episode": n, "ward": f"ward {n + 7}"}
            ref = edms.create_record(patient, category="adult", fields=fields)
            expected[ref.record_id] = (patient, fields, None)
            document = f"%PDF-1.7 scanned letter {n}".encode()
            ref = edms.create_record(patient, category="adult", fields={"n": n},
                                     content=document, content_type=PDF)
            expected[ref.record_id] = (patient, {"n": n}, document)
        print(f"Stored {len(expected)} records (2 with documents) for 2 patients.")

        try:
            edms.keys.rotate_kek()
        except AccessDeniedError as exc:
            print(f"A service may not rotate keys: {exc}")
        else:
            raise CheckError("a service rotated a key")

        # The order matters for erasure: retire the old controller key first, then move the
        # controller key to a new KEK version, so no copy of the old controller key survives
        # under a KEK version that is still enabled (see docs/operations.md).
        keys = processor.tenant(cid, actor=ADMIN).keys
        report = keys.rotate_controller_key()
        print(f"rotate_controller_key(): controller key v{report.version}, "
              f"{report.changed} of {report.examined} subject keys re-wrapped")
        check(report.changed == report.examined == 2, "every subject key re-wrapped")
        report = keys.rotate_index_key()
        print(f"rotate_index_key(): index key v{report.version}, {report.changed} of "
              f"{report.examined} index entries re-indexed")
        check(report.changed == report.examined == 2, "every index entry re-indexed")
        read_everything(edms, expected, "between rotation and retirement")

        try:
            keys.retire_old_controller_keys()
        except ConflictError as exc:
            print(f"Retiring at once is refused: {exc}")
        else:
            raise CheckError("old keys were retired before the key cache lifetime")
        clock.advance(RETIRE_AFTER + 1)
        print(f"(the injected clock moves {RETIRE_AFTER + 1:.0f} s on, past the longest "
              "key cache lifetime any process may use)")
        retired = keys.retire_old_controller_keys()
        print(f"retire_old_controller_keys(): destroyed controller key versions {retired}")
        check(retired == [1], "controller key v1 retired")
        retired = keys.retire_old_index_keys()
        print(f"retire_old_index_keys(): destroyed index key versions {retired}")
        check(retired == [1], "index key v1 retired")
        read_everything(edms, expected, "after retirement")

        print(f"rotate_kek(): new KEK version {keys.rotate_kek()}; the controller key is "
              "re-wrapped under it")
        print("(with Key Vault, now disable the old KEK version; LocalKeyring cannot disable "
              "a version)")
        read_everything(edms, expected, "after the KEK rotation, in this process")

        show_controller_keys(connection_string, processor.get_controller(cid).container)
        admin = processor.tenant(cid, actor=ADMIN)
        audit = admin.audit.verify()
        rotations = [e.operation for e in admin.audit.query(actor=ADMIN.id)
                     if e.operation.startswith("key.")]
        print(f"The audit trail verifies ({audit.events} events) and records: "
              f"{', '.join(rotations)}")

    with Processor.from_connection_string(
        connection_string, region=region, keyring=keyring, clock=clock
    ) as fresh:
        read_everything(fresh.tenant(cid, actor=SERVICE), expected,
                        "in a new process with empty key caches")
        sound = fresh.tenant(cid, actor=ADMIN).keys.verify_index()
        print(f"verify_index() after the retirement: {sound.examined} subject keys, "
              f"{sound.restored} index entries put back, {len(sound.split)} split")
        check(sound.restored == 0 and not sound.split, "every subject found by its number")
        lose_an_index_entry(connection_string, fresh.get_controller(cid).container)

    heading("6. A lost blind-index entry, found and put back")
    with Processor.from_connection_string(
        connection_string, region=region, keyring=keyring, clock=clock
    ) as fresh:
        edms = fresh.tenant(cid, actor=SERVICE)
        hidden = [p for p in (PATIENT, OTHER_PATIENT) if not edms.subject_exists(p)]
        print(f"A new process finds {2 - len(hidden)} of the 2 patients by NHS number.")
        check(len(hidden) == 1, "the patient whose entry was deleted reads as unknown")
        found = fresh.tenant(cid, actor=ADMIN).keys.verify_index()
        print(f"verify_index(): {found.examined} subject keys, {found.restored} index entry "
              f"put back, {len(found.split)} split (the controller gets the integrity notice)")
        check(found.restored == 1 and not found.split, "the lost entry put back")
        read_everything(edms, expected, "after the index check")


def lose_an_index_entry(connection_string: str, container: str) -> None:
    """Delete one patient's blind-index entry directly in Blob Storage (as a mistaken clean-up
    or someone with write access to the container could)."""
    with BlobServiceClient.from_connection_string(connection_string) as service:
        raw = service.get_container_client(container)
        raw.delete_blob(next(iter(raw.list_blob_names(name_starts_with="index/"))))
    print("Deleted one patient's index entry (index/<blind index>) directly in Blob Storage.")


def read_everything(scope: ControllerScope, expected: Expected, when: str) -> None:
    """Find each patient's records by NHS number, then read every field and document."""
    patients = {patient.value: patient for patient, _, _ in expected.values()}
    for patient in patients.values():
        want = {rid for rid, (p, _, _) in expected.items() if p.value == patient.value}
        check(set(scope.list_records(patient)) == want, f"records found by NHS number {when}")
    for record_id, (_, fields, document) in expected.items():
        check(scope.get_record(record_id).fields == fields, f"fields read back {when}")
        if document is not None:
            with scope.open_content(record_id) as reader:
                check(reader.read() == document and reader.verified,
                      f"document read back and verified {when}")
    print(f"Every record found, read and verified {when}.")


def show_controller_keys(connection_string: str, container: str) -> None:
    """What keys/controller.json holds now (key ids and versions; the keys are wrapped)."""
    with BlobServiceClient.from_connection_string(connection_string) as service:
        doc = json.loads(
            service.get_container_client(container).download_blob("keys/controller.json")
            .readall()
        )
    keks = sorted({v["wrapped"]["key_id"] for v in doc["versions"].values()})
    print(f"keys/controller.json now: controller key versions {sorted(doc['versions'])}, "
          f"wrapped by KEK {keks}; sub-keys {sorted(doc['subkeys'])}")
    check(sorted(doc["versions"]) == ["2"] and all(k.endswith("/2") for k in keks),
          "only the new controller key, under the new KEK version")
    check("index-1" not in doc["subkeys"], "the old index key is gone")


if __name__ == "__main__":
    sys.exit(main())
