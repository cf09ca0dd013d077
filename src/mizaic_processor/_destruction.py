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
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mizaic_processor._core import ids, record_doc
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._keystore import INDEX_PREFIX, SUBJECT_PREFIX
from mizaic_processor.errors import ConflictError, HoldError, NotFoundError

if TYPE_CHECKING:
    from mizaic_processor.processor import ControllerScope

__all__ = ["DestructionEvidence", "destroy_record", "shred_subject"]

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


def get_evidence(docs: ControllerDocs, record_id: str) -> tuple[DestructionEvidence, str] | None:
    """The evidence stub of a record and its etag, or ``None``."""
    try:
        doc = docs.get(EVIDENCE + record_id, what="destruction evidence")
    except NotFoundError:
        return None
    public = {k: v for k, v in doc.public.items() if k != "content_id"}
    public["content_sha256"] = doc.secret.get("content_sha256")
    return DestructionEvidence.model_validate(public), doc.etag


def _evidence_parts(
    evidence: DestructionEvidence, content_id: str | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The plaintext and sealed parts of an evidence stub: the document's hash is kept
    sealed (a plain hash would let anyone holding a candidate document confirm it)."""
    public = evidence.model_dump(mode="json", exclude={"content_sha256"})
    public["content_id"] = content_id
    return public, {"content_sha256": evidence.content_sha256}


def destroy_record(
    scope: ControllerScope,
    record_id: str,
    *,
    reason: str,
    approved_by: str,
    instruction_id: str | None = None,
    instruction_version: int | None = None,
    appraisal_id: str | None = None,
) -> tuple[DestructionEvidence, dict[str, Any] | None]:
    """Destroy one record with evidence (idempotent, resumable).

    :returns: the evidence, and the record's decrypted meta document if this call read
        it (``None`` when it was already destroyed): the caller shreds the subject.
    :raises HoldError: if an active hold covers the record.
    """
    docs = scope._docs
    existing = get_evidence(docs, record_id)
    if existing is not None and existing[0].status == "destroyed":
        return existing[0], None
    meta: dict[str, Any] | None = None
    content_id: str | None = None
    try:
        key, doc, _etag = scope._load(record_id, for_admin=True)
    except NotFoundError:
        doc = None
    if doc is not None:
        keys = scope._record_keys(key, record_id)
        meta = record_doc.decrypt_meta(
            keys, doc, controller_id=scope.controller_id, record_id=record_id
        )
        category = doc.category
        content_id = doc.content_id
        held = scope._ledger.holds_covering(record_id, category)
        if held:
            raise HoldError("a hold covers this record: " + ", ".join(h.hold_id for h in held))
    elif existing is None:
        raise NotFoundError("record not found")
    else:
        category = existing[0].category
    now = scope._clock()
    if existing is None:
        assert meta is not None  # noqa: S101 (doc is not None here)
        content = meta.get("content") or {}
        evidence = DestructionEvidence(
            record_id=record_id, category=category, status="destroying", reason=reason,
            instruction_id=instruction_id, instruction_version=instruction_version,
            appraisal_id=appraisal_id, approved_by=approved_by,
            destroyed_by=scope.actor.id, started_at=now,
            content_sha256=content.get("sha256"), content_length=content.get("length"),
        )
        public, secret = _evidence_parts(evidence, content_id)
        try:
            ev_etag = docs.create(EVIDENCE + record_id, public, secret,
                                  what="destruction evidence")
        except ConflictError:
            found = get_evidence(docs, record_id)
            if found is None:
                raise
            evidence, ev_etag = found
    else:
        evidence, ev_etag = existing
        if content_id is None:
            stored = docs.get(EVIDENCE + record_id, what="destruction evidence")
            content_id = stored.public.get("content_id")

    def run() -> None:
        if doc is not None:
            scope._container.delete(scope._record_blob(record_id), what="record")
        if content_id is not None:
            scope._container.delete(scope._content_blob(record_id, content_id), what="content")
        history = f"history/{record_id[1:27]}/{record_id[27:]}/"
        for name in list(scope._container.list_names(history)):
            scope._container.delete(name, what="record history")

    scope._audited("record.destroy", "D", record_id, run, write=True, policy=instruction_id)
    done = evidence.model_copy(update={"status": "destroyed", "destroyed_at": scope._clock()})
    public, secret = _evidence_parts(done, content_id)
    docs.replace(EVIDENCE + record_id, public, secret, etag=ev_etag,
                 what="destruction evidence")
    return done, meta


def shred_subject(scope: ControllerScope, skid: str, subject_meta: dict[str, Any] | None) -> bool:
    """Destroy a subject's key and index entry if the subject has no records left.

    :returns: whether the key was destroyed.
    """
    prefix = f"records/{skid}/"
    if next(iter(scope._container.list_names(prefix)), None) is not None:
        return False
    indexes: list[str] = []
    if subject_meta is not None:
        from mizaic_processor.models import subject_from

        subject = subject_from(subject_meta["kind"], subject_meta["value"])
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
