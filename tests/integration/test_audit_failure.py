"""An operation whose audit event cannot be written is refused and changes nothing
(DESIGN §2.7; issue 5 item 1, "Writing the audit event is part of the operation").

The audit append is made to fail for real on Azurite: an infinite lease taken with the raw
SDK on the writer's current append-blob segment makes every append without the lease id
fail (HTTP 412), and deleting the current segment makes it fail with 404. Every operation
then raises AuditError; the controller's container (names and etags) is unchanged and
reads hand out nothing. Once the lease is released the writer carries on in a new segment
and the trail still verifies; after a deleted segment, verify() names the removed events.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    Actor,
    AuditError,
    ControllerScope,
    LocalKeyring,
    NHSNumber,
    Processor,
    RecordRef,
)
from mizaic_processor.errors import AuditTamperedError
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
NHS = "9434765919"
OTHER_NHS = "4010232137"
PDF = "application/pdf"
CONTENT = b"%PDF-1.7 discharge letter"


@dataclass
class Live:
    proc: Processor
    cid: str
    service: ControllerScope
    admin: ControllerScope
    ref: RecordRef
    instruction_id: str
    raw: ContainerClient
    registry: ContainerClient
    chain: str

    def segment(self, number: int) -> str:
        return f"audit/{self.chain}/{number:08d}"

    def snapshot(self) -> dict[str, str]:
        """Every blob of the controller's container and of the registry, with its etag."""
        return {
            f"{client.container_name}/{blob.name}": str(blob.etag)
            for client in (self.raw, self.registry)
            for blob in client.list_blobs()
        }


@pytest.fixture
def live(azurite: AzuriteServer) -> Iterator[Live]:
    with (
        Processor.from_connection_string(
            azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
            retry_total=1,
        ) as proc,
        BlobServiceClient.from_connection_string(azurite.connection_string) as raw_service,
    ):
        cid = "af" + uuid.uuid4().hex[:12]
        proc.register_controller(cid, name="Audit Failure Trust", actor=OPERATOR)
        service = proc.tenant(cid, actor=SERVICE)
        admin = proc.tenant(cid, actor=ADMIN)
        ref = service.create_record(
            NHSNumber(NHS), category="adult", fields={"bp": 120}, content=CONTENT,
            content_type=PDF,
        )
        service.create_record(NHSNumber(NHS), category="adult", fields={"bp": 99})
        instruction = admin.create_instruction("deletion", record_ids=[ref.record_id])
        raw = raw_service.get_container_client(f"mzc-{cid}")
        (segment,) = raw.list_blob_names(name_starts_with="audit/")
        assert segment.endswith("/00000001")
        yield Live(
            proc, cid, service, admin, ref, instruction.instruction_id, raw,
            raw_service.get_container_client("mizaic-registry"), segment.split("/")[1],
        )


def create(live: Live) -> object:
    return live.service.create_record(
        NHSNumber(OTHER_NHS), category="adult", fields={"bp": 130}, content=b"letter",
        content_type=PDF,
    )


def create_for_known_subject(live: Live) -> object:
    # the subject has a key, so the document is encrypted while the event is committed
    return live.service.create_record(
        NHSNumber(NHS), category="adult", fields={"bp": 131}, content=b"letter two",
        content_type=PDF,
    )


def create_large_for_known_subject(live: Live) -> object:
    # larger than what is held in memory: its blocks are staged (uncommitted, invisible)
    # while the event is committed, and must never be committed when the event fails
    return live.service.create_record(
        NHSNumber(NHS), category="adult", fields={"bp": 132},
        content=b"\x25" * (9 * 1024 * 1024 + 17), content_type=PDF,
    )


def update(live: Live) -> object:
    return live.service.update_record(live.ref.record_id, etag=live.ref.etag, fields={"bp": 1})


def delete(live: Live) -> object:
    return live.admin.delete_record(live.ref.record_id, instruction_id=live.instruction_id)


def instruct(live: Live) -> object:
    return live.admin.create_instruction("export", note="for the patient's new GP")


def get(live: Live) -> object:
    return live.service.get_record(live.ref.record_id)


def get_some(live: Live) -> object:
    return live.service.get_record(live.ref.record_id, fields=["bp"])


def read_content(live: Live) -> object:
    with live.service.open_content(live.ref.record_id) as reader:
        return reader.read()


def find(live: Live) -> object:
    return list(live.service.list_records(NHSNumber(NHS)))


Operation = Callable[[Live], Any]
WRITES = [create, update, delete, instruct]
READS = [get, get_some, read_content, find]

@pytest.mark.parametrize(
    "operation",
    [create, create_for_known_subject, create_large_for_known_subject, update, delete,
     instruct, *READS],
    ids=lambda op: op.__name__,
)
def test_an_operation_whose_audit_append_is_refused_raises_audit_error_and_changes_nothing(
    live: Live, operation: Operation
) -> None:
    before = live.snapshot()
    lease = live.raw.get_blob_client(live.segment(1)).acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(AuditError):
            operation(live)
        after = live.snapshot()
    finally:
        lease.release()

    assert after == before


@pytest.mark.parametrize("operation", WRITES, ids=lambda op: op.__name__)
def test_a_write_refused_for_want_of_audit_leaves_the_record_intact(
    live: Live, operation: Operation
) -> None:
    lease = live.raw.get_blob_client(live.segment(1)).acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(AuditError):
            operation(live)
    finally:
        lease.release()

    record = live.service.get_record(live.ref.record_id)
    assert (record.version, record.etag, record.fields) == (1, live.ref.etag, {"bp": 120})
    assert list(live.service.list_records(NHSNumber(OTHER_NHS))) == []


@pytest.mark.parametrize("operation", WRITES + READS, ids=lambda op: op.__name__)
def test_after_the_lease_is_released_the_operation_succeeds_in_a_new_segment_and_verifies(
    live: Live, operation: Operation
) -> None:
    lease = live.raw.get_blob_client(live.segment(1)).acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(AuditError):
            operation(live)
    finally:
        lease.release()

    operation(live)
    report = live.admin.audit.verify()
    ops = [e.operation for e in live.admin.audit.query()]

    assert live.raw.get_blob_client(live.segment(2)).exists()
    # register, 2 creates, 1 instruction; the refused attempt left no event, the retry
    # one (two for a deletion: the instruction's record.destroy, nothing is shredded);
    # the verification
    assert report.chains == 1
    assert report.events == 4 + 1 + 1
    assert ops.count("audit.verify") == 1


def test_a_deleted_current_segment_refuses_the_operation_and_verify_names_the_removed_events(
    live: Live,
) -> None:
    live.raw.delete_blob(live.segment(1))
    before = live.snapshot()

    with pytest.raises(AuditError):
        update(live)
    assert live.snapshot() == before

    ref = update(live)  # the writer has moved on to segment 2
    assert isinstance(ref, RecordRef) and ref.version == 2
    with pytest.raises(AuditTamperedError) as caught:
        live.admin.audit.verify()
    assert (caught.value.chain, caught.value.seq, caught.value.kind) == (
        live.chain, 1, "removed"
    )


def test_a_refused_create_leaves_the_callers_stream_unread_so_a_retry_stores_it_whole(
    live: Live,
) -> None:
    document = b"%PDF-1.7 " + bytes(range(256)) * 64
    stream = io.BytesIO(document)
    lease = live.raw.get_blob_client(live.segment(1)).acquire_lease(lease_duration=-1)
    try:
        with pytest.raises(AuditError):
            live.service.create_record(
                NHSNumber(NHS), category="adult", content=stream, content_type=PDF
            )
    finally:
        lease.release()
    assert stream.tell() == 0
    ref = live.service.create_record(
        NHSNumber(NHS), category="adult", content=stream, content_type=PDF
    )
    with live.service.open_content(ref.record_id) as reader:
        assert reader.read() == document
