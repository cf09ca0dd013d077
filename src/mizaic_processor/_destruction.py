"""Destroying records, leaving evidence, and crypto-shredding subjects.

Every path that destroys a record (an approved appraisal, a standing destroy
instruction, a deletion or erasure instruction) goes through :func:`destroy_record`:

1. if ``evidence/<record id>`` says *destroyed*, stop: it was destroyed exactly once;
2. read the record; refuse if any active hold covers it (:class:`HoldError`);
3. write the evidence stub (create-only) with status *destroying*: record id, category,
   authority (instruction, appraisal, approver, retention instruction version), content
   SHA-256, time; never a patient identifier;
4. record the audit event (the destruction happens only once it is durable);
5. delete the record blob (it stops being visible as a record), then its content;
6. mark the evidence *destroyed*.

Killed anywhere and run again, it completes the same record and never writes a second
evidence entry. When a subject has no records left, :func:`shred_subject` deletes the
subject's wrapped key and index entry, so any surviving copy of their ciphertext
(snapshots, soft-deleted blobs, geo-replicas, backups) can no longer be decrypted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mizaic_processor._core import ids, record_doc
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._keystore import INDEX_PREFIX, SUBJECT_PREFIX
from mizaic_processor.errors import ConflictError, HoldError, NotFoundError

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope

__all__ = ["Destruction", "DestructionEvidence", "destroy_record", "shred_subject"]

EVIDENCE = "evidence/"


class DestructionEvidence(BaseModel):
    """What was destroyed, when, and on whose authority. No patient identifier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    record_id: str
    category: str
    status: str
    reason: str
    instruction_id: str | None = None
    instruction_version: int | None = None
    appraisal_id: str | None = None
    approved_by: str
    destroyed_by: str
    started_at: dt.datetime
    destroyed_at: dt.datetime | None = None
    content_sha256: str | None = Field(default=None, repr=False)
    content_length: int | None = None


@dataclass(frozen=True)
class Destruction:
    """The outcome of :func:`destroy_record`."""

    evidence: DestructionEvidence
    destroyed_now: bool
    subject_shredded: bool


@dataclass(frozen=True)
class _Stub:
    evidence: DestructionEvidence
    etag: str
    content_id: str | None
    subject: dict[str, Any] | None


def _get_stub(docs: ControllerDocs, record_id: str) -> _Stub | None:
    try:
        doc = docs.get(EVIDENCE + record_id, what="destruction evidence")
    except NotFoundError:
        return None
    public = {k: v for k, v in doc.public.items() if k != "content_id"}
    public["content_sha256"] = doc.secret.get("content_sha256")
    subject = doc.secret.get("subject")
    return _Stub(
        evidence=DestructionEvidence.model_validate(public), etag=doc.etag,
        content_id=doc.public.get("content_id"),
        subject=subject if isinstance(subject, dict) else None,
    )


def get_evidence(docs: ControllerDocs, record_id: str) -> tuple[DestructionEvidence, str] | None:
    """The evidence stub of a record and its etag, or ``None``."""
    stub = _get_stub(docs, record_id)
    return None if stub is None else (stub.evidence, stub.etag)


def _evidence_parts(
    evidence: DestructionEvidence, content_id: str | None, subject: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The plaintext and sealed parts of an evidence stub. The document's hash is kept
    sealed (a plain hash would let anyone holding a candidate document confirm it); so
    is the subject reference, and only while the destruction is under way (a resumed
    run needs it to shred the subject's key)."""
    public = evidence.model_dump(mode="json", exclude={"content_sha256"})
    public["content_id"] = content_id
    secret: dict[str, Any] = {"content_sha256": evidence.content_sha256}
    if subject is not None and evidence.status != "destroyed":
        secret["subject"] = subject
    return public, secret


def destroy_record(
    scope: ControllerScope,
    record_id: str,
    *,
    reason: str,
    approved_by: str,
    instruction_id: str | None = None,
    instruction_version: int | None = None,
    appraisal_id: str | None = None,
) -> Destruction:
    """Destroy one record with evidence (idempotent, resumable), and the subject's key
    when this was the subject's last record.

    :raises HoldError: if an active hold covers the record.
    :raises NotFoundError: if there is neither such a record nor evidence of it.
    """
    docs = scope._docs
    stub = _get_stub(docs, record_id)
    if stub is not None and stub.evidence.status == "destroyed":
        return Destruction(stub.evidence, destroyed_now=False, subject_shredded=False)
    meta: dict[str, Any] | None = None
    try:
        key, doc, _etag = scope._load(record_id, for_admin=True)
    except NotFoundError:
        doc = None
    if doc is not None:
        meta = record_doc.decrypt_meta(
            scope._record_keys(key, record_id), doc, controller_id=scope.controller_id,
            record_id=record_id,
        )
        held = scope._ledger.holds_covering(record_id, doc.category)
        if held:
            raise HoldError("a hold covers this record: " + ", ".join(h.hold_id for h in held))
    elif stub is None:
        raise NotFoundError("record not found")
    pending = stub

    def run() -> _Stub:
        # the evidence stub is written inside the audited operation: if the audit event
        # cannot be recorded, nothing at all changes
        current = pending
        if current is None:
            assert meta is not None and doc is not None  # noqa: S101 (doc was loaded)
            content = meta.get("content") or {}
            evidence = DestructionEvidence(
                record_id=record_id, category=doc.category, status="destroying",
                reason=reason, instruction_id=instruction_id,
                instruction_version=instruction_version, appraisal_id=appraisal_id,
                approved_by=approved_by, destroyed_by=scope.actor.id,
                started_at=scope._clock(), content_sha256=content.get("sha256"),
                content_length=content.get("length"),
            )
            public, secret = _evidence_parts(evidence, doc.content_id, meta.get("subject"))
            try:
                etag = docs.create(EVIDENCE + record_id, public, secret,
                                   what="destruction evidence")
                current = _Stub(evidence, etag, doc.content_id, meta.get("subject"))
            except ConflictError:
                current = _get_stub(docs, record_id)
                if current is None:
                    raise
        if doc is not None:
            scope._container.delete(scope._record_blob(record_id), what="record")
        if current.content_id is not None:
            scope._container.delete(
                scope._content_blob(record_id, current.content_id), what="content"
            )
        history = f"history/{record_id[1:27]}/{record_id[27:]}/"
        for name in list(scope._container.list_names(history)):
            scope._container.delete(name, what="record history")
        return current

    stub = scope._audited("record.destroy", "D", record_id, run, write=True,
                          policy=instruction_id)
    content_id = stub.content_id
    shredded = shred_subject(scope, record_id[1:27], stub.subject)
    done = stub.evidence.model_copy(
        update={"status": "destroyed", "destroyed_at": scope._clock()}
    )
    public, secret = _evidence_parts(done, content_id, None)
    docs.replace(EVIDENCE + record_id, public, secret, etag=stub.etag,
                 what="destruction evidence")
    return Destruction(done, destroyed_now=True, subject_shredded=shredded)


def shred_subject(scope: ControllerScope, skid: str, subject_meta: dict[str, Any] | None) -> bool:
    """Destroy a subject's key and index entry if the subject has no records left.

    :returns: whether the key was destroyed.
    """
    prefix = f"records/{skid}/"
    if next(iter(scope._container.list_names(prefix)), None) is not None:
        return False
    if not scope._container.exists_blob(SUBJECT_PREFIX + skid):
        return False
    indexes: list[str] = []
    if subject_meta is not None:
        from mizaic_processor.models import subject_from

        subject = subject_from(subject_meta["kind"], subject_meta["value"])
        # every index key version held now (not just the ones this process cached), so
        # no entry survives an index-key rotation under way elsewhere
        scope._keys.refresh()
        indexes = scope._keys.index_names(subject)

    def run() -> None:
        scope._container.delete(SUBJECT_PREFIX + skid, what="subject key")
        for index in indexes:
            scope._container.delete(INDEX_PREFIX + index, what="subject index entry")

    scope._audited("subject.shred", "D", f"subject:{skid}", run, write=True)
    scope._keys.forget(skid, indexes)
    return True


def list_evidence(docs: ControllerDocs) -> list[DestructionEvidence]:
    """Every destruction evidence stub of the controller, in record-id order."""
    out = []
    for name in docs.names(EVIDENCE):
        found = get_evidence(docs, ids.record_id(name.removeprefix(EVIDENCE)))
        if found is not None:
            out.append(found[0])
    return out
