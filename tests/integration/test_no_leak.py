"""No patient identifier, field name, field value, content or key material leaks out of
the process through logs, exception messages, ``repr()`` or ``str()`` (DESIGN §2.2;
issue 5 item 7).

All logging is captured at DEBUG (the root logger, the library's and the Azure SDK's,
with the SDK's HTTP logging and its network trace of request and response bodies switched
on) during a full scenario against a real Azurite that includes failures: bad input, a
stale update, a tampered record read, an audit append refused by a lease, an audit trail
tampered with. Everything captured is then searched for every secret in every form.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import traceback
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    Actor,
    AuditError,
    ConflictError,
    HospitalNumber,
    IntegrityError,
    InvalidInputError,
    KeyVaultKeyring,
    LocalKeyring,
    MizaicError,
    NHSNumber,
    Processor,
    Settings,
)
from mizaic_processor.errors import AuditTamperedError
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
NHS = "9434765919"
NHS_FORMS = ["9434765919", "943 476 5919", "943-476-5919"]
HOSPITAL = "RJ1-CASE-77231"
FIELD_NAMES = ["hiv_status_note", "allergy_note_zq"]
FIELD_VALUES = ["penicillin anaphylaxis grade IV", "sero-positive since 2019-zq",
                "918273645546372819"]
CONTENT = b"%PDF-1.7 discharge summary: zebra-quince-marmalade protocol, page 1 of 1"
CONTENT_SNIPPETS = ["zebra-quince-marmalade", "discharge summary: zebra"]
PDF = "application/pdf"


class Capture(logging.Handler):
    """Keeps every record, and formats each fully (message, args, exception, stack)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> Iterator[str]:
        for record in self.records:
            yield f"{record.name} {record.msg!s} {record.args!r}"
            yield record.getMessage()
            if record.exc_info:
                yield self._formatter.formatException(record.exc_info)
            if record.stack_info:
                yield record.stack_info


@pytest.fixture
def capture() -> Iterator[Capture]:
    handler = Capture()
    root = logging.getLogger()
    names = ["", "azure", "azure.core", "azure.storage", "mizaic_processor", "urllib3",
             "azure.core.pipeline.policies.http_logging_policy"]
    saved = {name: logging.getLogger(name).level for name in names}
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def key_forms(key: bytes) -> list[str]:
    """Ways a key could be printed: hex (both cases), base64, base64url, bytes repr."""
    return [
        key.hex(), key.hex().upper(), base64.b64encode(key).decode(),
        base64.urlsafe_b64encode(key).decode().rstrip("="), repr(key)[2:-1],
        binascii.b2a_base64(key[:12]).decode().strip()[:14],  # a prefix of the base64 form
    ]


def exception_texts(exc: BaseException) -> list[str]:
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


def test_no_secret_reaches_logs_errors_or_reprs_during_a_full_scenario(
    azurite: AzuriteServer, capture: Capture, tmp_path: Path
) -> None:
    ring = LocalKeyring.generate()
    texts: list[str] = []
    errors: list[BaseException] = []

    def expect_error(kind: type[MizaicError], call: Callable[[], object]) -> None:
        with pytest.raises(kind) as caught:
            call()
        errors.append(caught.value)

    proc = Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=ring, retry_total=1,
    )
    # the SDK's network trace with bodies (logging_enable=True, logging_body=True), set on
    # the logging policy the service client shares with every container client
    trace = proc._store._service._config.logging_policy
    trace.enable_http_logger = True
    trace.logging_body = True
    raw_service = BlobServiceClient.from_connection_string(azurite.connection_string)
    with proc, raw_service:
        cid = "nl" + uuid.uuid4().hex[:12]
        controller = proc.register_controller(cid, name="Leak Trust", actor=OPERATOR)
        service = proc.tenant(cid, actor=SERVICE)
        admin = proc.tenant(cid, actor=ADMIN)
        raw = raw_service.get_container_client(f"mzc-{cid}")
        nhs, hospital = NHSNumber("943 476 5919"), HospitalNumber(HOSPITAL.lower())
        ref = service.create_record(
            nhs, category="adult",
            fields={FIELD_NAMES[0]: FIELD_VALUES[0],
                    FIELD_NAMES[1]: [FIELD_VALUES[1], int(FIELD_VALUES[2])]},
            content=CONTENT, content_type=PDF,
        )
        other = service.create_record(hospital, category="maternity",
                                      fields={FIELD_NAMES[0]: FIELD_VALUES[0]})
        subject_key = service._keys.subject_key(ref.record_id[1:27]).key  # shredded later
        record = service.get_record(ref.record_id)
        partial = service.get_record(ref.record_id, fields=[FIELD_NAMES[0]])
        assert list(service.list_records(nhs)) == [ref.record_id]
        updated = service.update_record(ref.record_id, etag=ref.etag,
                                        fields={FIELD_NAMES[0]: FIELD_VALUES[1]})
        expect_error(ConflictError, lambda: service.update_record(
            ref.record_id, etag=ref.etag, fields={FIELD_NAMES[1]: FIELD_VALUES[0]}))
        reader = admin.open_content(ref.record_id)
        assert reader.read() == CONTENT

        # bad input carrying secrets in every position
        expect_error(InvalidInputError, lambda: NHSNumber(NHS[:-1] + "8"))
        expect_error(InvalidInputError, lambda: HospitalNumber(HOSPITAL + "/../"))
        expect_error(InvalidInputError, lambda: service.create_record(NHS, category="adult"))
        expect_error(InvalidInputError, lambda: service.create_record(
            nhs, category="adult", fields={FIELD_NAMES[0]: {FIELD_VALUES[0]: b"x"}}))
        expect_error(InvalidInputError, lambda: service.create_record(
            nhs, category="adult", fields={FIELD_NAMES[1] + "/..": FIELD_VALUES[2]}))
        expect_error(InvalidInputError, lambda: service.create_record(
            nhs, category=FIELD_VALUES[0]))
        expect_error(InvalidInputError, lambda: service.get_record(
            ref.record_id, fields=[FIELD_NAMES[0] + " " + FIELD_VALUES[0]]))
        expect_error(InvalidInputError, lambda: service.create_record(
            nhs, category="adult", content=CONTENT.decode(), content_type=PDF))

        # a tampered record: the read is refused
        (blob,) = [n for n in raw.list_blob_names(name_starts_with="records/")
                   if n.endswith(other.record_id[27:])]
        doc = bytearray(raw.download_blob(blob).readall())
        doc[len(doc) // 2] ^= 0x01
        raw.upload_blob(blob, bytes(doc), overwrite=True)
        expect_error(IntegrityError, lambda: service.get_record(other.record_id))

        # an audit append refused by a lease: the writer logs, the operation fails
        (segment,) = raw.list_blob_names(name_starts_with="audit/")
        lease = raw.get_blob_client(segment).acquire_lease(lease_duration=-1)
        expect_error(AuditError, lambda: service.get_record(ref.record_id))
        lease.release()

        instruction = admin.create_instruction("deletion", record_ids=[ref.record_id],
                                               note="patient asked; see letter")
        evidence = admin.delete_record(ref.record_id, instruction_id=instruction.instruction_id)
        trail = admin.audit
        report = trail.verify()
        events = list(trail.query(subject=hospital))
        trail.export(tmp_path / "export")

        # an audit trail tampered with: verification names the event, nothing more
        (first, *_) = sorted(raw.list_blob_names(name_starts_with="audit/"))
        lines = raw.download_blob(first).readall().splitlines()
        event = json.loads(lines[1])
        event["actor"] = "someone-else"
        lines[1] = json.dumps(event, separators=(",", ":"), sort_keys=True).encode()
        raw.delete_blob(first)
        raw.get_blob_client(first).create_append_blob()
        raw.get_blob_client(first).append_block(b"".join(line + b"\n" for line in lines))
        expect_error(AuditTamperedError, trail.verify)

        # key material this process holds
        keys = [k for versions in ring._keys.values() for k in versions]
        keys.append(subject_key)
        keys.append(service._keys.controller_key()[1])
        keys.append(service._keys.audit_key()[1])
        keys.append(service._keys.data_key())
        wrapped = ring.wrap_key(f"local:{next(iter(ring._keys))}/1", keys[-1])

        vault = KeyVaultKeyring.offline()
        settings = Settings(region="uksouth", connection_string=azurite.connection_string)
        objects: list[object] = [
            proc, service, admin, controller, ref, other, updated, record, partial, nhs,
            hospital, ring, vault, wrapped, trail, reader, report, *events, instruction,
            evidence, record.content, settings,
        ]
        for obj in objects:
            texts += [repr(obj), str(obj), f"{obj}", f"{obj!r}"]
        reader.close()

    for exc in errors:
        texts += exception_texts(exc)
    texts += list(capture.texts())
    assert capture.records, "nothing was logged: the capture is not working"
    assert any(r.name.startswith("azure") for r in capture.records)
    assert any(r.name.startswith("mizaic_processor") for r in capture.records)
    assert any('"op":"record.create"' in text for text in texts), "request bodies not logged"

    secrets = [
        *NHS_FORMS, HOSPITAL, HOSPITAL.lower(), *FIELD_NAMES, *FIELD_VALUES,
        *CONTENT_SNIPPETS, "patient asked; see letter",
        *(form for key in keys for form in key_forms(key)),
    ]
    leaks = sorted({s for s in secrets for text in texts if s in text})
    assert leaks == []
