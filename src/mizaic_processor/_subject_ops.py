"""Controller-instructed operations on one data subject: erasure, restriction,
rectification with history, and export (access and portability).

Each cites an instruction from the controller's ledger and runs for a
``controller_admin`` only; the scope's methods of the same names delegate here.
"""

from __future__ import annotations

import datetime as dt
import json
import zipfile
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from mizaic_processor._core import ids, record_doc
from mizaic_processor._destruction import destroy_record, shred_subject
from mizaic_processor.errors import HoldError, InvalidInputError, NotFoundError
from mizaic_processor.models import Record, SubjectId

if TYPE_CHECKING:
    from mizaic_processor._docs import ControllerDocs
    from mizaic_processor._scope import ControllerScope

__all__ = ["Disclosure", "ErasureReport", "ExportSummary"]

HISTORY_PREFIX = "history/"
NHS_NUMBER_SYSTEM = "https://fhir.nhs.uk/Id/nhs-number"
LOCAL_NUMBER_SYSTEM = "https://mizaic.example/Id/local-patient-number"
RESIDUAL_NOTE = (
    "The subject's data key was deleted from storage. Copies of its wrapped form in blob "
    "soft delete, versions, snapshots or backups stay decryptable only while the "
    "controller key that wrapped them exists: rotate the controller key to bound that. "
    "Key Vault soft delete keeps a deleted key-encryption key for 7-90 days."
)


class ErasureReport(BaseModel):
    """What an erasure did. No patient identifier."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str
    records_destroyed: tuple[str, ...]
    key_destroyed: bool
    residual_copies: str = RESIDUAL_NOTE


class ExportSummary(BaseModel):
    """What an export wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instruction_id: str
    records: int
    documents: int
    document_bytes: int


def _subject_skid(scope: ControllerScope, subject: SubjectId) -> str:
    skid = scope._keys.find_subject(subject)
    if skid is None:
        raise NotFoundError("no records of that subject here")
    return skid


def erase_subject(
    scope: ControllerScope, subject: SubjectId, instruction_id: str
) -> ErasureReport:
    skid = _subject_skid(scope, subject)
    instruction = scope._ledger.require(instruction_id, frozenset({"erasure"}),
                                        subject_ref=skid)
    records = scope._record_ids(skid)
    holds = {h.hold_id for h in scope._ledger.active_holds() if h.subject_ref == skid
             or h.whole_controller or set(h.record_ids) & set(records)}
    if not holds:
        # every record is verified (its sealed meta decrypted) before any is destroyed, and
        # category holds are matched on the verified category: the plaintext one could
        # have been edited in storage to slip past a hold
        for record_id in records:
            loaded = scope._record_category_and_events(record_id)
            if loaded is not None:
                holds.update(h.hold_id for h in scope._ledger.holds_covering(record_id, loaded[0]))
    if holds:
        raise HoldError("holds forbid erasing this subject: " + ", ".join(sorted(holds)))
    destroyed = []
    key_destroyed = False
    for record_id in records:
        outcome = destroy_record(
            scope, record_id, reason="erasure", approved_by=instruction.issued_by,
            instruction_id=instruction.instruction_id,
        )
        if outcome.destroyed_now:
            destroyed.append(record_id)
        key_destroyed = key_destroyed or outcome.subject_shredded
    # a subject with a key but no records left (or a resumed erasure) is shredded here
    key_destroyed = shred_subject(
        scope, skid, {"kind": subject.kind, "value": subject.value}
    ) or key_destroyed
    return ErasureReport(
        instruction_id=instruction.instruction_id, records_destroyed=tuple(destroyed),
        key_destroyed=key_destroyed,
    )


def set_restriction(
    scope: ControllerScope, subject: SubjectId, restricted: bool, instruction_id: str
) -> None:
    skid = _subject_skid(scope, subject)
    action = "restriction" if restricted else "lift_restriction"
    scope._ledger.require(instruction_id, frozenset({action}), subject_ref=skid)
    scope._keys.set_restricted(skid, restricted)


def keep_history(scope: ControllerScope, record_id: str) -> None:
    """Copy the current version of a record, byte for byte, into its history."""
    stored = scope._container.get(scope._record_blob(record_id), what="record")
    version = record_doc.decode(stored.data).version
    name = f"{HISTORY_PREFIX}{record_id[1:27]}/{record_id[27:]}/{version:08d}"
    # an earlier, interrupted attempt may have copied it already (identical bytes are
    # accepted by the idempotent put)
    scope._container.put(name, stored.data, what="record history")


def history_versions(scope: ControllerScope, record_id: str) -> Iterator[tuple[int, bytes]]:
    prefix = f"{HISTORY_PREFIX}{record_id[1:27]}/{record_id[27:]}/"
    for name in scope._container.list_names(prefix):
        yield int(name[len(prefix):]), scope._container.get(name, what="record history").data


# -- export ------------------------------------------------------------------------------


def _patient(subject: SubjectId) -> dict[str, Any]:
    system = NHS_NUMBER_SYSTEM if subject.kind == "nhs" else LOCAL_NUMBER_SYSTEM
    return {"resourceType": "Patient", "id": "subject",
            "identifier": [{"system": system, "value": subject.value}]}


def _fhir_entries(record: Record) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    basic: dict[str, Any] = {
        "resourceType": "Basic",
        "id": record.record_id,
        "identifier": [{"system": "https://mizaic.example/Id/record", "value": record.record_id}],
        "code": {"coding": [{"system": "https://mizaic.example/CodeSystem/category",
                             "code": record.category}]},
        "subject": {"reference": "Patient/subject"},
        "extension": [{"url": "https://mizaic.example/fhir/StructureDefinition/record-fields",
                       "valueString": json.dumps(record.fields, sort_keys=True)}],
    }
    if record.created_at is not None:
        basic["created"] = record.created_at.date().isoformat()
    entries.append({"fullUrl": f"urn:mizaic:record:{record.record_id}", "resource": basic})
    if record.content is not None:
        entries.append({
            "fullUrl": f"urn:mizaic:document:{record.record_id}",
            "resource": {
                "resourceType": "DocumentReference",
                "id": f"doc-{record.record_id}",
                "status": "current",
                "subject": {"reference": "Patient/subject"},
                "content": [{"attachment": {
                    "contentType": record.content.content_type,
                    "url": f"documents/{record.record_id}",
                    "size": record.content.length,
                }}],
            },
        })
    return entries


def _record_json(record: Record) -> dict[str, Any]:
    out: dict[str, Any] = {
        "record_id": record.record_id,
        "category": record.category,
        "version": record.version,
        "fields": record.fields,
        "events": {k: v.isoformat() for k, v in record.events.items()},
        "created_at": record.created_at.isoformat() if record.created_at else None,
        "updated_at": record.updated_at.isoformat() if record.updated_at else None,
    }
    if record.content is not None:
        out["document"] = {"path": f"documents/{record.record_id}",
                           "content_type": record.content.content_type,
                           "length": record.content.length,
                           "sha256": record.content.sha256}
    return out


def export_subject(
    scope: ControllerScope, subject: SubjectId, destination: IO[bytes], instruction_id: str
) -> ExportSummary:
    if not callable(getattr(destination, "write", None)):
        raise InvalidInputError("destination must be a writable binary stream")
    skid = _subject_skid(scope, subject)
    instruction = scope._ledger.require(instruction_id, frozenset({"export"}), subject_ref=skid)
    records, documents, document_bytes = write_archive(scope, subject, skid, destination)
    return ExportSummary(instruction_id=instruction.instruction_id, records=records,
                         documents=documents, document_bytes=document_bytes)


def write_archive(
    scope: ControllerScope, subject: SubjectId, skid: str, destination: IO[bytes]
) -> tuple[int, int, int]:
    """Stream the subject's archive into ``destination``; return (records, documents,
    document bytes). Bounded memory: one record or one document chunk at a time."""
    records = scope._record_ids(skid)
    documents = 0
    document_bytes = 0
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_DEFLATED,
                         allowZip64=True) as archive:
        with archive.open("records.json", "w", force_zip64=True) as out:
            head = {"format": "mizaic.subject-export", "v": 1,
                    "controller_id": scope.controller_id,
                    "subject": {"kind": subject.kind, "value": subject.value},
                    "exported_at": scope._clock().isoformat()}
            out.write(json.dumps(head)[:-1].encode() + b', "records": [')
            for n, record_id in enumerate(records):
                record = scope._read_for_export(record_id)
                out.write((b"," if n else b"") + json.dumps(_record_json(record)).encode())
            out.write(b"]}")
        with archive.open("fhir-bundle.json", "w", force_zip64=True) as out:
            out.write(b'{"resourceType": "Bundle", "type": "collection", "entry": [')
            out.write(json.dumps({"fullUrl": "urn:mizaic:patient:subject",
                                  "resource": _patient(subject)}).encode())
            for record_id in records:
                for entry in _fhir_entries(scope._read_for_export(record_id)):
                    out.write(b"," + json.dumps(entry).encode())
            out.write(b"]}")
        for record_id in records:
            record = scope._read_for_export(record_id)
            if record.content is None:
                continue
            documents += 1
            with scope._open_for_export(record_id) as reader, archive.open(
                f"documents/{record_id}", "w", force_zip64=True
            ) as out:
                for piece in reader:
                    out.write(piece)
                    document_bytes += len(piece)
    return len(records), documents, document_bytes


class Disclosure(BaseModel):
    """A disclosure required by law, as recorded (the legal basis and authority are kept
    sealed in the controller's container; this is what the caller gets back)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    disclosure_id: str
    disclosed_at: dt.datetime
    disclosed_by: str
    controller_notified: bool
    records: int
    documents: int


def disclose_required_by_law(
    scope: ControllerScope,
    subject: SubjectId,
    destination: IO[bytes],
    *,
    legal_basis: str,
    requesting_authority: str,
    reference: str,
    controller_notified: bool,
    withheld_reason: str | None,
    notify: Callable[[str], None],
    record_in: ControllerDocs,
    record_prefix: str,
) -> Disclosure:
    skid = _subject_skid(scope, subject)
    disclosure_id = ids.new_opaque_id("x")
    now = scope._clock()
    public = {"disclosure_id": disclosure_id, "disclosed_at": now.isoformat(),
              "disclosed_by": scope.actor.id, "controller_notified": controller_notified}
    secret = {"legal_basis": legal_basis, "requesting_authority": requesting_authority,
              "reference": reference, "withheld_reason": withheld_reason, "subject_ref": skid}
    # recorded before a byte leaves: no record, no disclosure
    record_in.create(f"{record_prefix}{disclosure_id}", public, secret, what="disclosure")
    records, documents, _bytes = write_archive(scope, subject, skid, destination)
    if controller_notified:
        notify(disclosure_id)
    return Disclosure(disclosure_id=disclosure_id, disclosed_at=now,
                      disclosed_by=scope.actor.id, controller_notified=controller_notified,
                      records=records, documents=documents)

