"""Lawful disclosure, checkpoint delivery to the controller, and automatic integrity
breach notices, against a real Azurite and a real Storage queue."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import zipfile

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    AuditTamperedError,
    IntegrityError,
    InvalidInputError,
    NHSNumber,
    Processor,
    QueueRoute,
)
from mizaic_processor.testing import AzuriteServer

NHS = "9434765919"
OPERATOR = Actor.processor_operator("ops-1")
ADMIN = Actor.controller_admin("dpo-1")
SERVICE = Actor.service("edms")


@pytest.fixture
def cid(processor: Processor) -> str:
    controller_id = "t" + os.urandom(5).hex()
    processor.register_controller(controller_id, name="Test Trust", actor=OPERATOR)
    return controller_id


def _queue(azurite: AzuriteServer, name: str) -> list[dict[str, object]]:
    client = QueueServiceClient.from_connection_string(azurite.connection_string)
    messages = client.get_queue_client(name).receive_messages(max_messages=32)
    out = []
    for message in messages:
        text = message.content
        with contextlib.suppress(ValueError):
            text = base64.b64decode(text).decode()
        out.append(json.loads(text))
    return out


def test_a_legal_disclosure_is_recorded_audited_and_notified_before_data_leaves(
    processor: Processor, cid: str
) -> None:
    svc = processor.tenant(cid, actor=SERVICE)
    svc.create_record(NHSNumber(NHS), category="adult", fields={"note": "seen in clinic"},
                      content=b"scan bytes", content_type="application/pdf")
    out = io.BytesIO()
    disclosure = processor.disclose_required_by_law(
        cid, NHSNumber(NHS), out, actor=OPERATOR, legal_basis="court order",
        requesting_authority="High Court", reference="CO-2026-1",
    )
    archive = zipfile.ZipFile(io.BytesIO(out.getvalue()))
    assert {"records.json", "fhir-bundle.json"} <= set(archive.namelist())
    assert (disclosure.records, disclosure.documents, disclosure.controller_notified) == (
        1, 1, True)
    admin = processor.tenant(cid, actor=ADMIN)
    events = [e for e in admin.audit.query() if e.operation == "subject.disclose"]
    assert [(e.actor, e.purpose, e.outcome) for e in events] == [
        ("ops-1", "HLEGAL", "success")]
    pending = processor.requests.list_pending_deliveries(actor=OPERATOR, controller_id=cid)
    assert "disclosure.made" in {d.event for d in pending}


def test_a_disclosure_the_law_forbids_telling_the_controller_needs_the_reason(
    processor: Processor, cid: str
) -> None:
    processor.tenant(cid, actor=SERVICE).create_record(NHSNumber(NHS), category="adult")
    before = processor.request_count
    with pytest.raises(InvalidInputError):
        processor.disclose_required_by_law(
            cid, NHSNumber(NHS), io.BytesIO(), actor=OPERATOR, legal_basis="POCA s.333A",
            requesting_authority="NCA", reference="r-1", controller_notified=False,
        )
    assert processor.request_count == before
    disclosure = processor.disclose_required_by_law(
        cid, NHSNumber(NHS), io.BytesIO(), actor=OPERATOR, legal_basis="POCA s.333A",
        requesting_authority="NCA", reference="r-1", controller_notified=False,
        withheld_reason="tipping-off offence",
    )
    assert not disclosure.controller_notified
    pending = processor.requests.list_pending_deliveries(actor=OPERATOR, controller_id=cid)
    assert "disclosure.made" not in {d.event for d in pending}


@pytest.mark.parametrize("actor", [SERVICE, ADMIN])
def test_only_a_processor_operator_records_a_legal_disclosure(
    processor: Processor, cid: str, actor: Actor
) -> None:
    processor.tenant(cid, actor=SERVICE).create_record(NHSNumber(NHS), category="adult")
    out = io.BytesIO()
    with pytest.raises(AccessDeniedError):
        processor.disclose_required_by_law(
            cid, NHSNumber(NHS), out, actor=actor, legal_basis="court order",
            requesting_authority="High Court", reference="CO-1",
        )
    assert out.getvalue() == b""


def test_sealed_checkpoints_reach_the_controller_through_its_queue(
    processor: Processor, cid: str, azurite: AzuriteServer
) -> None:
    queue = "q" + os.urandom(5).hex()
    processor.requests.set_route(cid, QueueRoute(queue_name=queue), actor=OPERATOR,
                                 create_queue=True)
    svc = processor.tenant(cid, actor=SERVICE)
    svc.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    admin = processor.tenant(cid, actor=ADMIN)
    admin.audit.verify()  # seals this process's chain head
    processor.requests.deliver_pending(actor=OPERATOR)
    notes = [m for m in _queue(azurite, queue) if m.get("type") == "audit.checkpoint"]
    assert notes, "no checkpoint reached the controller's queue"
    bodies = [note["checkpoint"]["body"] for note in notes]  # type: ignore[index]
    # the chain's signed genesis seal, and the seal of its head after the events
    assert 0 in {body["seq"] for body in bodies}
    head = max(bodies, key=lambda body: body["seq"])
    assert head["seq"] >= 1 and len(head["head"]) == 64


def test_tampered_data_raises_an_automatic_breach_notice_to_the_controller(
    processor: Processor, cid: str, azurite: AzuriteServer
) -> None:
    svc = processor.tenant(cid, actor=SERVICE)
    ref = svc.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    raw = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = raw.get_container_client(f"mzc-{cid}")
    name = next(n for n in container.list_blob_names(name_starts_with="records/"))
    data = bytearray(container.download_blob(name).readall())
    data[len(data) // 2] ^= 0x01
    container.upload_blob(name, bytes(data), overwrite=True)
    with pytest.raises(IntegrityError):
        svc.get_record(ref.record_id)
    breaches = list(processor.tenant(cid, actor=ADMIN).requests.list_breaches())
    assert len(breaches) == 1
    assert "integrity" in breaches[0].nature


class _Index:
    """An int-like with __index__ (as numpy's integers are)."""

    def __init__(self, value: int) -> None:
        self._value = value

    def __index__(self) -> int:
        return self._value


def test_reading_a_closed_content_reader_is_refused_and_is_no_breach(
    processor: Processor, cid: str
) -> None:
    # Before, a read after close() found the stream "cut short", raised IntegrityError and
    # sent the controller an automatic breach notice for a caller's mistake.
    svc = processor.tenant(cid, actor=SERVICE)
    document = os.urandom(3000)
    ref = svc.create_record(NHSNumber(NHS), category="adult", content=document,
                            content_type="application/pdf")
    reads = [
        lambda r: r.read(), lambda r: r.read(5), lambda r: r.readinto(bytearray(8)),
        lambda r: list(r), lambda r: r.readline(),
    ]
    for partly in (False, True):
        for read in reads:
            reader = svc.open_content(ref.record_id)
            if partly:
                assert reader.read(10) == document[:10]
            reader.close()
            with pytest.raises(InvalidInputError):
                read(reader)
            with pytest.raises(InvalidInputError), reader:
                pass
    with svc.open_content(ref.record_id) as reader:  # a reader still reads, and verifies
        for bad in (1.5, "3", True):
            with pytest.raises(InvalidInputError):
                reader.read(bad)
        for buffer in (b"12345678", "12345678", None, memoryview(bytearray(8))[::2]):
            with pytest.raises(InvalidInputError):
                reader.readinto(buffer)
        assert reader.read(_Index(4)) == document[:4]  # numpy's ints have __index__ too
        assert reader.read() == document[4:]
        assert reader.verified
    assert list(processor.tenant(cid, actor=ADMIN).requests.list_breaches()) == []


def test_a_tampered_audit_trail_raises_a_breach_notice_too(
    processor: Processor, cid: str, azurite: AzuriteServer
) -> None:
    processor.tenant(cid, actor=SERVICE).create_record(NHSNumber(NHS), category="adult")
    admin = processor.tenant(cid, actor=ADMIN)
    admin.audit.verify()
    raw = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = raw.get_container_client(f"mzc-{cid}")
    name = sorted(container.list_blob_names(name_starts_with="audit/"))[0]
    lines = container.download_blob(name).readall().splitlines(keepends=True)
    lines[0] = lines[0].replace(b'"ops-1"', b'"ops-2"')
    container.delete_blob(name)
    container.get_blob_client(name).create_append_blob()
    container.get_blob_client(name).append_block(b"".join(lines))
    with pytest.raises(AuditTamperedError):
        admin.audit.verify()
    assert len(list(admin.requests.list_breaches())) == 1
