"""An access request's export, for a subject with many records and a large document,
streams to the controller admin's own file in bounded memory and validates as FHIR.

Real Azurite; the document is generated on the fly (never held in memory); a background
thread samples the process's resident set size through the whole export.
"""

from __future__ import annotations

import hashlib
import json
import time
import zipfile
from pathlib import Path

import pytest
from requests_support import (  # the module's own Azurite, clock and processor fixtures
    ADMIN,
    SERVICE,
    Clock,
    azurite,
    clock,
    keyring,
    new_controller,
    proc,
    request_args,
)
from test_large_content import LIMIT, GeneratedStream, PeakRSS, expected_sha256, settle

from mizaic_processor import NHSNumber, Processor

__all__ = ["azurite", "clock", "keyring", "proc"]  # fixtures, imported for pytest

MiB = 1024 * 1024
DOCUMENT = 160 * MiB
RECORDS = 40


@pytest.mark.slow
def test_an_access_export_of_many_records_and_a_large_document_is_bounded_and_valid_fhir(
    proc: Processor, clock: Clock, tmp_path: Path
) -> None:
    fhir_bundle = pytest.importorskip("fhir.resources.R4B.bundle")
    cid = new_controller(proc)
    svc = proc.tenant(cid, actor=SERVICE)
    admin = proc.tenant(cid, actor=ADMIN)
    subject = NHSNumber("943 476 5919")
    for i in range(RECORDS):
        svc.create_record(subject, category="adult", fields={"entry": i, "note": "seen"},
                          content=b"small scan %d" % i, content_type="application/pdf")
    big = svc.create_record(subject, category="adult", fields={"entry": "scan"},
                            content=GeneratedStream(DOCUMENT), content_type="image/tiff")

    receipt = proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    admin.requests.acknowledge(receipt.request_id, subject=subject)
    target = tmp_path / "export.zip"
    baseline = settle()
    started = time.monotonic()
    with PeakRSS() as rss, target.open("wb") as out:
        admin.requests.instruct(receipt.request_id, subject=subject, destination=out)
    elapsed = time.monotonic() - started

    growth = rss.peak - baseline
    assert growth < LIMIT, f"peak RSS grew by {growth / MiB:.1f} MiB in {elapsed:.1f} s"
    with zipfile.ZipFile(target) as archive:
        listing = json.loads(archive.read("records.json"))
        assert len(listing["records"]) == RECORDS + 1
        bundle = fhir_bundle.Bundle.model_validate_json(archive.read("fhir-bundle.json"))
        kinds = [entry.resource.__resource_type__ for entry in bundle.entry]
        assert kinds.count("Patient") == 1
        assert kinds.count("DocumentReference") == RECORDS + 1
        digest = hashlib.sha256()
        with archive.open(f"documents/{big.record_id}") as document:
            while piece := document.read(4 * MiB):
                digest.update(piece)
        assert digest.hexdigest() == expected_sha256(DOCUMENT)
