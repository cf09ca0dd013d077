"""Tenancy and tamper evidence against a real Azurite.

A controller's scope sees only its own container, and its blind index is its own. Bytes
edited, moved, swapped or truncated directly in Blob Storage (with the raw Azure SDK) are
refused with IntegrityError, never decrypted into someone else's data.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    Actor,
    ControllerScope,
    HoldError,
    IntegrityError,
    LocalKeyring,
    NHSNumber,
    NotFoundError,
    Processor,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
NHS = "9434765919"
PDF = "application/pdf"
CHUNK = 1024


def new_controller_id() -> str:
    return "t" + uuid.uuid4().hex[:10]


@dataclass
class Tenant:
    cid: str
    scope: ControllerScope
    raw: ContainerClient


@pytest.fixture
def service_client(azurite: AzuriteServer) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


@pytest.fixture
def ring() -> LocalKeyring:
    return LocalKeyring.generate()


@pytest.fixture
def small_processor(azurite: AzuriteServer, ring: LocalKeyring) -> Iterator[Processor]:
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=ring, chunk_size=CHUNK,
        retry_total=1,
    ) as proc:
        yield proc


def make_tenant(processor: Processor, service: BlobServiceClient) -> Tenant:
    cid = new_controller_id()
    processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
    return Tenant(cid, processor.tenant(cid, actor=SERVICE), service.get_container_client(
        f"mzc-{cid}"
    ))


@pytest.fixture
def a(small_processor: Processor, service_client: BlobServiceClient) -> Tenant:
    return make_tenant(small_processor, service_client)


@pytest.fixture
def b(small_processor: Processor, service_client: BlobServiceClient) -> Tenant:
    return make_tenant(small_processor, service_client)


def names(raw: ContainerClient, prefix: str = "") -> list[str]:
    return sorted(raw.list_blob_names(name_starts_with=prefix or None))


def record_blob(raw: ContainerClient, record_id: str) -> str:
    found = [n for n in names(raw, "records/") if n.endswith(record_id[27:])]
    assert len(found) == 1, found
    return found[0]


def content_blob(raw: ContainerClient, record_id: str) -> str:
    found = [n for n in names(raw, "content/") if record_id[27:] in n]
    assert len(found) == 1, found
    return found[0]


def read(raw: ContainerClient, name: str) -> bytes:
    return raw.download_blob(name).readall()


def write(raw: ContainerClient, name: str, data: bytes) -> None:
    raw.upload_blob(name, data, overwrite=True)


def load_doc(raw: ContainerClient, record_id: str) -> dict:
    return json.loads(read(raw, record_blob(raw, record_id)))


def save_doc(raw: ContainerClient, record_id: str, doc: dict) -> None:
    write(raw, record_blob(raw, record_id), json.dumps(doc).encode())


def add_field(t: Tenant, record_id: str, etag: str, name: str, value: object) -> tuple[str, str]:
    """Add a field with an update and return (its storage tag, the new etag).

    Found black-box: it is the one tag that appears in the stored record.
    """
    before = set(load_doc(t.raw, record_id)["f"])
    ref = t.scope.update_record(record_id, etag=etag, fields={name: value})
    (tag,) = set(load_doc(t.raw, record_id)["f"]) - before
    return tag, ref.etag


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


# -- tenancy ---------------------------------------------------------------------------------


def test_controllers_live_in_separate_containers(a: Tenant, b: Tenant) -> None:
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", content=b"x", content_type=PDF)
    assert a.raw.container_name != b.raw.container_name
    assert any(n.endswith(ref.record_id[27:]) for n in names(a.raw))
    assert not any(ref.record_id[27:] in n for n in names(b.raw))


def test_a_record_id_of_controller_a_is_not_found_through_controller_b(
    a: Tenant, b: Tenant, small_processor: Processor
) -> None:
    ref = a.scope.create_record(
        NHSNumber(NHS), category="adult", fields={"x": 1}, content=b"doc", content_type=PDF
    )
    b.scope.create_record(NHSNumber(NHS), category="adult", fields={"y": 2})
    b_admin = small_processor.tenant(b.cid, actor=ADMIN)

    with pytest.raises(NotFoundError):
        b.scope.get_record(ref.record_id)
    with pytest.raises(NotFoundError):
        b.scope.get_record(ref.record_id, fields=["x"])
    with pytest.raises(NotFoundError):
        b.scope.open_content(ref.record_id)
    with pytest.raises(NotFoundError):
        b.scope.update_record(ref.record_id, etag=ref.etag, fields={"x": 2})
    instruction = b_admin.create_instruction("deletion", record_ids=[ref.record_id])
    with pytest.raises(NotFoundError):
        b_admin.delete_record(ref.record_id, instruction_id=instruction.instruction_id)
    # Nor does A's own instruction mean anything in B's ledger.
    a_instruction = small_processor.tenant(a.cid, actor=ADMIN).create_instruction(
        "deletion", record_ids=[ref.record_id]
    )
    with pytest.raises(NotFoundError):
        b_admin.delete_record(ref.record_id, instruction_id=a_instruction.instruction_id)

    record = a.scope.get_record(ref.record_id)
    assert (record.version, record.fields) == (1, {"x": 1})


def test_list_records_through_b_returns_only_b_records_for_the_same_nhs_number(
    a: Tenant, b: Tenant
) -> None:
    a_ids = {a.scope.create_record(NHSNumber(NHS), category="adult").record_id for _ in range(2)}
    b_ids = {b.scope.create_record(NHSNumber(NHS), category="adult").record_id for _ in range(3)}
    assert set(a.scope.list_records(NHSNumber(NHS))) == a_ids
    assert set(b.scope.list_records(NHSNumber(NHS))) == b_ids


def test_the_same_nhs_number_gets_unrelated_blind_indexes_and_subject_keys_per_controller(
    a: Tenant, b: Tenant
) -> None:
    ra = a.scope.create_record(NHSNumber(NHS), category="adult")
    rb = b.scope.create_record(NHSNumber(NHS), category="adult")
    (index_a,) = names(a.raw, "index/")
    (index_b,) = names(b.raw, "index/")
    assert index_a != index_b
    assert NHS not in index_a and NHS not in index_b
    assert ra.record_id[:27] != rb.record_id[:27]  # different subject key ids too


def test_a_subject_unknown_to_b_is_not_revealed_by_b(a: Tenant, b: Tenant) -> None:
    a.scope.create_record(NHSNumber(NHS), category="adult")
    assert b.scope.subject_exists(NHSNumber(NHS)) is False
    assert list(b.scope.list_records(NHSNumber(NHS))) == []


# -- tamper: record documents ----------------------------------------------------------------


def test_a_flipped_byte_in_a_field_envelope_is_an_integrity_error(a: Tenant) -> None:
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"a": "value"})
    doc = load_doc(a.raw, ref.record_id)
    (tag,) = doc["f"]
    env = base64.b64decode(doc["f"][tag])
    for index in (0, 10, len(env) // 2, len(env) - 1):  # header, key id, ciphertext, GCM tag
        tampered = dict(doc, f={tag: base64.b64encode(flip(env, index)).decode()})
        save_doc(a.raw, ref.record_id, tampered)
        with pytest.raises(IntegrityError):
            a.scope.get_record(ref.record_id)
        with pytest.raises(IntegrityError):
            a.scope.get_record(ref.record_id, fields=["a"])


def test_a_flipped_byte_in_the_meta_envelope_is_an_integrity_error(a: Tenant) -> None:
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    doc = load_doc(a.raw, ref.record_id)
    doc["m"] = base64.b64encode(flip(base64.b64decode(doc["m"]), -5)).decode()
    save_doc(a.raw, ref.record_id, doc)
    with pytest.raises(IntegrityError):
        a.scope.get_record(ref.record_id, fields=[])


def test_field_envelopes_swapped_between_two_records_of_one_subject_fail(a: Tenant) -> None:
    r1 = a.scope.create_record(NHSNumber(NHS), category="adult")
    r2 = a.scope.create_record(NHSNumber(NHS), category="adult")
    assert r1.record_id[:27] == r2.record_id[:27]  # same subject key
    tag1, _ = add_field(a, r1.record_id, r1.etag, "diagnosis", "one")
    tag2, _ = add_field(a, r2.record_id, r2.etag, "diagnosis", "two")

    d1, d2 = load_doc(a.raw, r1.record_id), load_doc(a.raw, r2.record_id)
    d1["f"][tag1], d2["f"][tag2] = d2["f"][tag2], d1["f"][tag1]
    save_doc(a.raw, r1.record_id, d1)
    save_doc(a.raw, r2.record_id, d2)

    for rid in (r1.record_id, r2.record_id):
        with pytest.raises(IntegrityError):
            a.scope.get_record(rid, fields=["diagnosis"])
        with pytest.raises(IntegrityError):
            a.scope.get_record(rid)


def test_envelopes_swapped_between_two_fields_of_one_record_fail(a: Tenant) -> None:
    ref = a.scope.create_record(NHSNumber(NHS), category="adult")
    tag_x, etag = add_field(a, ref.record_id, ref.etag, "x", "ex")
    tag_y, _ = add_field(a, ref.record_id, etag, "y", "why")
    doc = load_doc(a.raw, ref.record_id)
    doc["f"][tag_x], doc["f"][tag_y] = doc["f"][tag_y], doc["f"][tag_x]
    save_doc(a.raw, ref.record_id, doc)
    for fields in (["x"], ["y"], None):
        with pytest.raises(IntegrityError):
            a.scope.get_record(ref.record_id, fields=fields)


def test_whole_record_blobs_swapped_between_two_records_of_one_subject_fail(a: Tenant) -> None:
    r1 = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"v": 1})
    r2 = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"v": 2})
    n1, n2 = record_blob(a.raw, r1.record_id), record_blob(a.raw, r2.record_id)
    b1, b2 = read(a.raw, n1), read(a.raw, n2)
    write(a.raw, n1, b2)
    write(a.raw, n2, b1)
    for rid in (r1.record_id, r2.record_id):
        with pytest.raises(IntegrityError):
            a.scope.get_record(rid)


def test_a_record_blob_renamed_and_relabelled_as_another_record_fails(a: Tenant) -> None:
    # The plaintext "rid" is edited too, so only the cryptographic binding can catch it.
    r1 = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"v": 1})
    r2 = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"v": 2})
    doc = load_doc(a.raw, r1.record_id)
    doc["rid"] = r2.record_id
    save_doc(a.raw, r2.record_id, doc)
    with pytest.raises(IntegrityError):
        a.scope.get_record(r2.record_id)
    with pytest.raises(IntegrityError):
        a.scope.get_record(r2.record_id, fields=["v"])


def test_an_envelope_from_another_subject_is_an_integrity_error(a: Tenant) -> None:
    r1 = a.scope.create_record(NHSNumber(NHS), category="adult")
    r2 = a.scope.create_record(NHSNumber("4010232137"), category="adult")
    tag1, _ = add_field(a, r1.record_id, r1.etag, "v", 1)
    tag2, _ = add_field(a, r2.record_id, r2.etag, "v", 2)
    d1, d2 = load_doc(a.raw, r1.record_id), load_doc(a.raw, r2.record_id)
    d1["f"] = {tag1: d2["f"][tag2]}
    save_doc(a.raw, r1.record_id, d1)
    with pytest.raises(IntegrityError):
        a.scope.get_record(r1.record_id, fields=["v"])


@pytest.mark.parametrize(
    ("key", "value"),
    [("cat", "maternity"), ("cat", "inquiry"), ("ver", 7), ("c", None), ("c", "a" * 26)],
)
def test_edited_plaintext_header_of_a_record_is_an_integrity_error(
    a: Tenant, key: str, value: object
) -> None:
    ref = a.scope.create_record(
        NHSNumber(NHS), category="adult", fields={"a": 1}, content=b"doc", content_type=PDF
    )
    doc = load_doc(a.raw, ref.record_id)
    assert doc[key] != value
    doc[key] = value
    save_doc(a.raw, ref.record_id, doc)
    with pytest.raises(IntegrityError):
        a.scope.get_record(ref.record_id)
    with pytest.raises(IntegrityError):
        a.scope.get_record(ref.record_id, fields=[])


def test_a_field_envelope_removed_from_storage_fails_a_full_read(a: Tenant) -> None:
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"keep": 1})
    tag, _ = add_field(a, ref.record_id, ref.etag, "allergies", ["penicillin"])
    doc = load_doc(a.raw, ref.record_id)
    del doc["f"][tag]
    save_doc(a.raw, ref.record_id, doc)
    with pytest.raises(IntegrityError):
        a.scope.get_record(ref.record_id)


def test_a_field_envelope_removed_from_storage_fails_a_selective_read(a: Tenant) -> None:
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"keep": 1})
    tag, _ = add_field(a, ref.record_id, ref.etag, "allergies", ["penicillin"])
    doc = load_doc(a.raw, ref.record_id)
    del doc["f"][tag]
    save_doc(a.raw, ref.record_id, doc)
    with pytest.raises(IntegrityError):
        a.scope.get_record(ref.record_id, fields=["allergies"])


def test_a_field_envelope_added_in_storage_fails_a_full_read(a: Tenant) -> None:
    r1 = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    r2 = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"b": 2})
    d1, d2 = load_doc(a.raw, r1.record_id), load_doc(a.raw, r2.record_id)
    d1["f"].update(d2["f"])
    save_doc(a.raw, r1.record_id, d1)
    with pytest.raises(IntegrityError):
        a.scope.get_record(r1.record_id)


@pytest.mark.parametrize("garbage", [b"", b"not json", b"[]", b'{"format": "mizaic.record"}'])
def test_a_record_blob_that_is_not_a_record_document_is_an_integrity_error(
    a: Tenant, garbage: bytes
) -> None:
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"a": 1})
    write(a.raw, record_blob(a.raw, ref.record_id), garbage)
    with pytest.raises(IntegrityError):
        a.scope.get_record(ref.record_id)


def test_swapped_subject_keys_are_an_integrity_error(
    a: Tenant, azurite: AzuriteServer, ring: LocalKeyring
) -> None:
    r1 = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"v": 1})
    r2 = a.scope.create_record(NHSNumber("4010232137"), category="adult", fields={"v": 2})
    k1, k2 = f"subjects/{r1.record_id[1:27]}", f"subjects/{r2.record_id[1:27]}"
    assert {k1, k2} <= set(names(a.raw, "subjects/"))
    d1, d2 = read(a.raw, k1), read(a.raw, k2)
    write(a.raw, k1, d2)
    write(a.raw, k2, d1)
    # The keys are cached by the processor that created them: read through a fresh one.
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=ring, retry_total=1
    ) as fresh:
        scope = fresh.tenant(a.cid, actor=SERVICE)
        for rid in (r1.record_id, r2.record_id):
            with pytest.raises(IntegrityError):
                scope.get_record(rid)


# -- tamper: moved across controllers ----------------------------------------------------------


def test_blobs_copied_into_another_controller_under_the_same_names_do_not_decrypt(
    a: Tenant, b: Tenant
) -> None:
    ref = a.scope.create_record(
        NHSNumber(NHS), category="adult", fields={"secret": "a's"}, content=b"a's document",
        content_type=PDF,
    )
    # B has the same patient too, so B has a controller key and subject of its own.
    b.scope.create_record(NHSNumber(NHS), category="adult", fields={"mine": 1})
    copied = [
        record_blob(a.raw, ref.record_id),
        content_blob(a.raw, ref.record_id),
        f"subjects/{ref.record_id[1:27]}",
        *names(a.raw, "index/"),
    ]
    for name in copied:
        write(b.raw, name, read(a.raw, name))

    with pytest.raises(IntegrityError):
        b.scope.get_record(ref.record_id)
    with pytest.raises(IntegrityError):
        b.scope.get_record(ref.record_id, fields=["secret"])
    with pytest.raises(IntegrityError):
        b.scope.open_content(ref.record_id).read()
    # B's own index is keyed by B's index key: the copied entry does not answer for the patient.
    assert ref.record_id not in set(b.scope.list_records(NHSNumber(NHS)))


def test_a_record_blob_moved_to_another_controller_under_its_key_does_not_decrypt(
    a: Tenant, b: Tenant
) -> None:
    # Place A's record document under one of B's own records of the same patient, so B
    # reads it with B's genuine subject key: bindings to controller and record must refuse.
    ra = a.scope.create_record(NHSNumber(NHS), category="adult", fields={"v": "a"})
    rb = b.scope.create_record(NHSNumber(NHS), category="adult", fields={"v": "b"})
    doc = load_doc(a.raw, ra.record_id)
    doc["rid"] = rb.record_id
    save_doc(b.raw, rb.record_id, doc)
    with pytest.raises(IntegrityError):
        b.scope.get_record(rb.record_id)


# -- tamper: content -----------------------------------------------------------------------------


@pytest.fixture
def with_content(a: Tenant) -> tuple[Tenant, str, bytes]:
    data = bytes(range(256)) * 16  # 4 KiB: four 1 KiB chunks
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", content=data, content_type=PDF)
    with a.scope.open_content(ref.record_id) as reader:
        assert reader.read() == data
    return a, ref.record_id, data


@pytest.mark.parametrize("where", ["header", "first_chunk", "last_chunk", "last_byte"])
def test_a_flipped_byte_in_the_content_blob_is_an_integrity_error(
    with_content: tuple[Tenant, str, bytes], where: str
) -> None:
    t, rid, data = with_content
    name = content_blob(t.raw, rid)
    blob = read(t.raw, name)
    index = {"header": 30, "first_chunk": len(blob) - len(data) - 4 * 16 + 5,
             "last_chunk": len(blob) - 100, "last_byte": len(blob) - 1}[where]
    write(t.raw, name, flip(blob, index))
    with pytest.raises(IntegrityError), t.scope.open_content(rid) as reader:
        reader.read()


def test_content_truncated_by_its_last_chunk_is_an_integrity_error(
    with_content: tuple[Tenant, str, bytes],
) -> None:
    t, rid, _ = with_content
    name = content_blob(t.raw, rid)
    blob = read(t.raw, name)
    write(t.raw, name, blob[: -(CHUNK + 16)])
    with pytest.raises(IntegrityError), t.scope.open_content(rid) as reader:
        for _ in reader:
            pass


@pytest.mark.parametrize("cut", [1, 16, 17, CHUNK + 15])
def test_content_truncated_anywhere_is_an_integrity_error(
    with_content: tuple[Tenant, str, bytes], cut: int
) -> None:
    t, rid, _ = with_content
    name = content_blob(t.raw, rid)
    write(t.raw, name, read(t.raw, name)[:-cut])
    with pytest.raises(IntegrityError), t.scope.open_content(rid) as reader:
        reader.read()


def test_content_with_bytes_appended_is_an_integrity_error(
    with_content: tuple[Tenant, str, bytes],
) -> None:
    t, rid, _ = with_content
    name = content_blob(t.raw, rid)
    blob = read(t.raw, name)
    write(t.raw, name, blob + blob[-(CHUNK + 16):])
    with pytest.raises(IntegrityError), t.scope.open_content(rid) as reader:
        reader.read()


def test_content_chunks_reordered_is_an_integrity_error(
    with_content: tuple[Tenant, str, bytes],
) -> None:
    t, rid, data = with_content
    name = content_blob(t.raw, rid)
    blob = read(t.raw, name)
    header = len(blob) - len(data) - 4 * 16
    size = CHUNK + 16
    chunks = [blob[header + i * size: header + (i + 1) * size] for i in range(4)]
    write(t.raw, name, blob[:header] + chunks[1] + chunks[0] + chunks[2] + chunks[3])
    with pytest.raises(IntegrityError), t.scope.open_content(rid) as reader:
        reader.read()


def test_content_blobs_swapped_between_records_are_an_integrity_error(a: Tenant) -> None:
    r1 = a.scope.create_record(NHSNumber(NHS), category="adult", content=b"one" * 500,
                               content_type=PDF)
    r2 = a.scope.create_record(NHSNumber(NHS), category="adult", content=b"two" * 500,
                               content_type=PDF)
    n1, n2 = content_blob(a.raw, r1.record_id), content_blob(a.raw, r2.record_id)
    b1, b2 = read(a.raw, n1), read(a.raw, n2)
    write(a.raw, n1, b2)
    write(a.raw, n2, b1)
    for rid in (r1.record_id, r2.record_id):
        with pytest.raises(IntegrityError), a.scope.open_content(rid) as reader:
            reader.read()


def test_content_replaced_by_an_older_version_of_the_same_record_is_an_integrity_error(
    a: Tenant,
) -> None:
    # The record's meta pins the SHA-256 and length: a stale document is refused.
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", content=b"v1" * 700,
                                content_type=PDF)
    old = read(a.raw, content_blob(a.raw, ref.record_id))
    a.scope.update_record(ref.record_id, etag=ref.etag, content=b"v2" * 700, content_type=PDF)
    write(a.raw, content_blob(a.raw, ref.record_id), old)
    with pytest.raises(IntegrityError), a.scope.open_content(ref.record_id) as reader:
        reader.read()


@pytest.mark.parametrize("first_read", ["read-1", "read-chunk", "readinto", "iterate"])
def test_an_older_document_of_the_record_releases_no_plaintext_even_to_a_partial_read(
    a: Tenant, first_read: str
) -> None:
    # Every version of a record's document shares its content binding, so before the
    # sealed meta pinned the envelope's salt, a partial read of an earlier document put
    # back under the current one's name returned its bytes; only a read to the end failed.
    old_data, new_data = b"OLD-DOCUMENT-" * 400, b"NEW-DOCUMENT-" * 400  # several chunks
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", content=old_data,
                                content_type=PDF)
    old = read(a.raw, content_blob(a.raw, ref.record_id))
    a.scope.update_record(ref.record_id, etag=ref.etag, content=new_data, content_type=PDF)
    write(a.raw, content_blob(a.raw, ref.record_id), old)
    with a.scope.open_content(ref.record_id) as reader, pytest.raises(IntegrityError):
        if first_read == "read-1":
            reader.read(1)
        elif first_read == "read-chunk":
            reader.read(CHUNK)
        elif first_read == "readinto":
            reader.readinto(bytearray(CHUNK))
        else:
            next(iter(reader))


# -- tamper: holds -------------------------------------------------------------------------------


def test_an_edited_plaintext_category_cannot_slip_an_erasure_past_a_category_hold(
    a: Tenant, small_processor: Processor
) -> None:
    # The erasure's hold check read each record's plaintext category without verifying
    # it: relabelled, the held record passed the check, the subject's other record was
    # destroyed, and only then did the relabelled one fail its integrity check.
    admin = small_processor.tenant(a.cid, actor=ADMIN)
    subject = NHSNumber(NHS)
    made = {
        category: a.scope.create_record(subject, category=category, fields={"x": 1}).record_id
        for category in ("adult", "oncology")
    }
    # the held record is the one the erasure visits last (records go in id order), so
    # the old check destroyed the other one before it failed
    held, unheld = sorted(made, key=made.__getitem__, reverse=True)
    admin.retention.place_hold("inquiry", reason="inquiry X", category=held)
    erase = admin.create_instruction("erasure", subject=subject).instruction_id
    with pytest.raises(HoldError):  # control: the hold is found
        admin.erase_subject(subject, instruction_id=erase)
    doc = load_doc(a.raw, made[held])
    doc["cat"] = unheld
    save_doc(a.raw, made[held], doc)
    before = names(a.raw, "records/")
    with pytest.raises(IntegrityError):
        admin.erase_subject(subject, instruction_id=erase)
    assert names(a.raw, "records/") == before  # nothing destroyed
    assert admin.get_record(made[unheld]).fields == {"x": 1}


def test_a_document_stored_before_the_salt_was_sealed_still_reads(
    a: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Documents stored before the meta recorded the envelope's salt have none to compare:
    # they read as before, checked against the sealed length and SHA-256 at the end.
    stage = ControllerScope._stage_content

    def without_salt(self: ControllerScope, *args: object, **kwargs: object) -> object:
        staged = stage(self, *args, **kwargs)  # type: ignore[arg-type]
        del staged.info["salt"]
        return staged

    monkeypatch.setattr(ControllerScope, "_stage_content", without_salt)
    data = b"stored-by-an-older-version-" * 100
    ref = a.scope.create_record(NHSNumber(NHS), category="adult", content=data,
                                content_type=PDF)
    monkeypatch.undo()
    with a.scope.open_content(ref.record_id) as reader:
        assert reader.read() == data
        assert reader.verified
