"""Quickstart: store a patient's records with mizaic_processor, read them back, then look at
what Azure Blob Storage actually holds.

Run it against a throw-away local Azurite (the storage emulator) with either of::

    make demo
    .venv/bin/python -m mizaic_processor.testing run -- .venv/bin/python examples/quickstart.py

The ``run`` command starts Azurite, sets ``MIZAIC_CONNECTION_STRING`` and
``MIZAIC_REGION=uksouth`` for this script, and removes Azurite's data afterwards.

The patient below is made up: 943 476 5919 is a well-known test NHS number, and every
clinical value is invented. The script prints them on purpose, as the demo's own input;
the library itself never puts them in a log line, an exception message or a ``repr()``.

Exit status: 0 when every check passes, 1 when one fails.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import sys
import textwrap
from collections.abc import Iterator

from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    Processor,
)

# -- The demo's input: one made-up patient -------------------------------------------------

NHS_NUMBER = "943 476 5919"

# A structured record: clinical fields (any JSON values) and dated events. Field names are
# encrypted too, so a name such as "diagnosis" is as safe as its value.
CLINICAL_FIELDS: dict[str, str | list[str]] = {
    "specialty": "cardiology",
    "diagnosis": "paroxysmal atrial fibrillation",
    "medications": ["apixaban 5 mg twice daily", "bisoprolol 2.5 mg once daily"],
    "allergies": ["penicillin (rash)"],
}
EVENTS = {
    "first_seen": dt.date(2023, 3, 14),
    "last_treatment": dt.date(2025, 1, 20),
}

# A scanned document: a text header (as an OCR layer would carry) and a few hundred KiB of
# "page image" bytes. Real scans go in the same way, from a file or any binary stream.
DOCUMENT_HEADER = (
    b"%PDF-1.7\n% SCANNED DISCHARGE LETTER - Cardiology Ward 7\n% Patient NHS number 943 476 5919\n"
)
DOCUMENT = DOCUMENT_HEADER + hashlib.shake_256(b"page images").digest(320 * 1024)
DOCUMENT_FIELDS = {"document_title": "Discharge letter, Cardiology Ward 7"}


def main() -> int:
    connection_string = os.environ.get("MIZAIC_CONNECTION_STRING")
    region = os.environ.get("MIZAIC_REGION")
    if not connection_string or not region:
        print(
            "Set MIZAIC_CONNECTION_STRING and MIZAIC_REGION, or run me with\n"
            "  python -m mizaic_processor.testing run -- python examples/quickstart.py",
            file=sys.stderr,
        )
        return 2

    # A LocalKeyring holds each controller's key-encryption key in this process's memory.
    # It is for development and tests; production uses KeyVaultKeyring (Azure Key Vault).
    keyring = LocalKeyring.generate()

    # Leaving the with-block closes the processor: it commits and seals the audit trail
    # (every operation below is recorded in it) and closes the connection pool.
    with Processor.from_connection_string(
        connection_string, region=region, keyring=keyring
    ) as processor:
        stored = run_demo(processor)

    # Now look at the storage account directly, as anyone with access to it could.
    ok = stored is not None and inspect_storage(connection_string, *stored)
    print()
    print("All checks passed." if ok else "A CHECK FAILED (see above).")
    return 0 if ok else 1


def run_demo(processor: Processor) -> tuple[str, str] | None:
    """Steps 1-5. Returns the controller's container and the structured record's id,
    or None if a check failed."""
    # -- 1. Register the Data Controller --------------------------------------------------
    heading(f"1. Register a Data Controller (region {processor.region})")
    # Only Mizaic support (a processor_operator) registers controllers. Registering creates
    # the controller's own container and its own keys.
    operator = Actor.processor_operator("mizaic-support-1")
    controller = processor.register_controller(
        "rj1", name="Example NHS Foundation Trust", actor=operator
    )
    print(f"Registered controller {controller.controller_id!r} ({controller.name})")
    print(f"  by {controller.created_by} (role processor_operator), region {controller.region}")
    print(f"  its data lives in its own container: {controller.container}")

    # A processor_operator never touches patient data: it may open a scope, but every
    # record operation is refused.
    try:
        list(processor.tenant("rj1", actor=operator).list_records(NHSNumber(NHS_NUMBER)))
    except AccessDeniedError as exc:
        print(f"  the operator asking for patient records is refused: {exc}")
    else:
        fail("a processor_operator was allowed to read patient records")
        return None

    # -- 2. Store records for a patient ---------------------------------------------------
    heading("2. Store two records for a patient, as a product service")
    # A product service doing direct care works inside one controller's scope.
    edms = processor.tenant("rj1", actor=Actor.service("edms-api"))
    patient = NHSNumber(NHS_NUMBER)  # validated (Modulus 11) and normalised to 10 digits
    print(f"Patient: NHS number {NHS_NUMBER}  (repr of the identifier: {patient!r})")

    print("Structured record, category 'adult':")
    for name, value in CLINICAL_FIELDS.items():
        print(f"    {name}: {value}")
    for name, day in EVENTS.items():
        print(f"    event {name}: {day.isoformat()}")
    letter = edms.create_record(patient, category="adult", fields=CLINICAL_FIELDS, events=EVENTS)
    print(f"  stored as record {letter.record_id} (version {letter.version})")

    print(f"Scanned document, {len(DOCUMENT) // 1024} KiB of application/pdf:")
    scan = edms.create_record(
        patient,
        category="adult",
        fields=DOCUMENT_FIELDS,
        events={"last_seen": dt.date(2025, 1, 22)},
        content=io.BytesIO(DOCUMENT),  # a file opened with open(path, "rb") works the same
        content_type="application/pdf",
    )
    print(f"  stored as record {scan.record_id} (version {scan.version})")

    # -- 3. Find the patient's records through the blind index ----------------------------
    heading("3. Find the patient's records by NHS number")
    # Storage holds no NHS number, only a keyed hash of it (the blind index), which points
    # at the patient's records. One index read and one listing of that patient's records.
    found = sorted(edms.list_records(patient))
    for record_id in found:
        print(f"  found {record_id}")
    if found != sorted([letter.record_id, scan.record_id]):
        fail("the blind-index lookup did not return exactly the two records")
        return None
    other = NHSNumber("401 023 2137")  # another valid NHS number with no records here
    print(f"  a patient with no records here: subject_exists -> {edms.subject_exists(other)}")

    # -- 4. Read one field, selectively ---------------------------------------------------
    heading("4. Read one field of the structured record")
    record = edms.get_record(letter.record_id, fields=["diagnosis"])
    print(f"  repr(record) shows ids only: {record!r}")
    print(f"  decrypted fields: {sorted(record.fields)} (only the one asked for)")
    print(f"  diagnosis: {record.fields['diagnosis']}")
    if record.fields != {"diagnosis": CLINICAL_FIELDS["diagnosis"]}:
        fail("the selective read returned the wrong fields")
        return None

    # -- 5. Stream the document back ------------------------------------------------------
    heading("5. Stream the scanned document back")
    digest = hashlib.sha256()
    reads = received = 0
    # The reader decrypts and authenticates the stored stream chunk by chunk, in bounded
    # memory whatever the size; here it is read 64 KiB at a time, as a web response would.
    # Once the last byte is read it has also checked the final-chunk flag, the length and
    # the SHA-256 recorded when the document was stored: only then is reader.verified True.
    with edms.open_content(scan.record_id) as reader:
        while piece := reader.read(64 * 1024):
            reads += 1
            received += len(piece)
            digest.update(piece)
        verified = reader.verified
    print(f"  received {received} bytes in {reads} reads; reader.verified = {verified}")
    matches = digest.hexdigest() == hashlib.sha256(DOCUMENT).hexdigest()
    print(f"  SHA-256 equal to the original document: {matches}")
    if not (verified and matches and received == len(DOCUMENT)):
        fail("the document did not come back intact")
        return None

    return controller.container, letter.record_id


def inspect_storage(connection_string: str, container: str, record_id: str) -> bool:
    """Look at the raw blobs with the plain Azure SDK, as anyone with storage access could."""
    heading(f"6. The raw blobs in container {container}, read with azure.storage.blob")
    service = BlobServiceClient.from_connection_string(connection_string)
    blobs: dict[str, bytes] = {}
    with service:
        box = service.get_container_client(container)
        for name in box.list_blob_names():
            blobs[name] = box.download_blob(name).readall()
        # The processor-level registry holds controllers, not patients; search it as well.
        registry = service.get_container_client("mizaic-registry")
        registry_blobs = {
            f"mizaic-registry/{name}": registry.download_blob(name).readall()
            for name in registry.list_blob_names()
        }

    for name, data in blobs.items():
        print(f"  {len(data):>8} bytes  {name}")
    print("  (keys/: the controller key, wrapped by its KEK; index/: blind index -> patient")
    print("   key id; subjects/: each patient's key, wrapped; records/ and content/: the data;")
    print("   audit/ and audit-checkpoints/: the audit trail, pseudonymous ids only)")

    # The structured record's blob is the JSON document whose "rid" is its record id.
    record_blob = next(name for name, data in blobs.items() if rid_of(data) == record_id)
    print()
    print(f"The structured record's blob ({record_blob}), first 480 characters:")
    text = blobs[record_blob].decode("utf-8")
    for line in textwrap.wrap(text[:480] + " ...", width=88):
        print("  " + line)
    print("  In plaintext: the format, record id (rid), category code (cat), version (ver) and")
    print("  content id (c). 'm' (subject, events, field names, timestamps) and each entry of")
    print("  'f' (one per field) are encrypted envelopes in base64: 'TVoBAQ' is base64 of 'MZ',")
    print("  version 1, kind 1 (field envelope). 'f' is keyed by opaque per-record tags, not by")
    print("  field names. The record id is 'r' + the patient's random key id + 128 random bits.")

    # The content blob is by far the largest.
    content_blob = max(blobs, key=lambda name: len(blobs[name]))
    print()
    print(f"The content blob ({content_blob}), first 96 bytes:")
    for line in hex_dump(blobs[content_blob][:96]):
        print("  " + line)
    print("  It starts with 'MZ', format version 1, kind 2 (content stream), suite 1; then")
    print("  the key id, key version, key commitment, salt and chunk size; then ciphertext.")

    # Search every blob's name and bytes for the patient's data. Record blobs are JSON whose
    # envelopes are base64 text, so also search the bytes inside every base64 string of a
    # JSON blob: something merely base64-encoded, not encrypted, would be caught too.
    heading("7. Search every stored byte for the patient's data")
    secrets = [
        ("NHS number (10 digits)", "9434765919"),
        ("NHS number (as written)", NHS_NUMBER),
        ("document text", "SCANNED DISCHARGE LETTER"),
        ("document SHA-256", hashlib.sha256(DOCUMENT).hexdigest()),
        *[(f"field name {name!r}", name) for name in (*CLINICAL_FIELDS, *DOCUMENT_FIELDS)],
        *[(f"a value of {name!r}", text) for name, text in field_strings()],
        *[(f"date of event {name!r}", day.isoformat()) for name, day in EVENTS.items()],
    ]
    everything = {**blobs, **registry_blobs}
    print(f"Searching {len(everything)} blobs ({sum(map(len, everything.values()))} bytes):")
    clean = True
    for label, secret in secrets:
        needle = secret.encode("utf-8")
        hits = [
            name
            for name, data in everything.items()
            if needle in name.encode("utf-8")
            or any(needle in view for view in searchable_views(data))
        ]
        clean = clean and not hits
        print(f"  {label:<34} {'FOUND in ' + ', '.join(hits) if hits else 'appears nowhere'}")
    if not clean:
        fail("patient data was found in storage in plaintext")
        return False
    print("The NHS number, the field names and values, the event dates and the document's")
    print("text appear in no blob name and no blob: storage holds only opaque ids and ciphertext.")
    return True


# -- Small helpers -------------------------------------------------------------------------


def field_strings() -> Iterator[tuple[str, str]]:
    """Every string value in the demo's fields, with the field it came from."""
    for name, value in (*CLINICAL_FIELDS.items(), *DOCUMENT_FIELDS.items()):
        for item in value if isinstance(value, list) else [value]:
            yield name, item


def searchable_views(data: bytes) -> Iterator[bytes]:
    """The blob's bytes, and for a JSON blob the decoded bytes of each base64 string in it."""
    yield data
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and (raw := b64decode_or_none(item)) is not None:
            yield raw


def b64decode_or_none(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def rid_of(data: bytes) -> object:
    """The "rid" of a JSON record document, or None for any other blob."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return None
    return doc.get("rid") if isinstance(doc, dict) else None


def hex_dump(data: bytes, width: int = 16) -> Iterator[str]:
    for offset in range(0, len(data), width):
        row = data[offset : offset + width]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in row)
        yield f"{offset:04x}  {row.hex(' '):<{width * 3}} {text}"


def heading(title: str) -> None:
    print(f"\n== {title}")


def fail(reason: str) -> None:
    print(f"CHECK FAILED: {reason}", file=sys.stderr)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except MizaicError as exc:
        # The library's messages name opaque ids and what went wrong, never patient data.
        print(f"mizaic_processor error: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
