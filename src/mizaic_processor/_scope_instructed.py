"""The controller-instructed operations of a controller scope.

Everything here is for a ``controller_admin`` and cites, or records, a documented
instruction of the controller (UK GDPR Art 28(3)(a)): deletion, instructions themselves,
erasure, restriction, rectification with history, and export. Mixed into
:class:`~mizaic_processor.ControllerScope`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, cast, get_args

from mizaic_processor import _subject_ops
from mizaic_processor._content import ContentReader
from mizaic_processor._core import ids, record_doc
from mizaic_processor._destruction import DestructionEvidence, destroy_record
from mizaic_processor._ledger import Instruction, InstructionAction, check_note
from mizaic_processor._subject_ops import ErasureReport, ExportSummary
from mizaic_processor._validation import (
    change_input,
    check_destination,
    check_etag,
    check_record_ids,
    check_subject,
)
from mizaic_processor.errors import (
    IntegrityError,
    InvalidInputError,
    NotFoundError,
)
from mizaic_processor.models import (
    Record,
    RecordRef,
    Role,
    SubjectId,
)

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope


__all__ = ["InstructedOperations"]

_ADMIN_ROLES = frozenset({Role.CONTROLLER_ADMIN})
_DELETE_ACTIONS = frozenset({"deletion", "erasure", "destruction"})
_INSTRUCTION_ACTIONS = frozenset(get_args(InstructionAction))


class InstructedOperations:
    """Operations a controller instructs. Mixed into ControllerScope."""

    def delete_record(self, record_id: str, *, instruction_id: str) -> DestructionEvidence:
        """Destroy one record on a documented instruction, leaving destruction evidence.

        Idempotent: deleting a destroyed record returns its evidence. When the subject
        has no records left, the subject's key is destroyed too (crypto-shredding).

        :param instruction_id: a ``deletion``, ``erasure`` or ``destruction`` instruction
            from this controller's ledger that covers the record (see
            :meth:`create_instruction`); not the instruction that records an appraisal's
            approval, which only that appraisal's destruction run uses.
        :raises InvalidInputError: if an id is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if the instruction or the record does not exist.
        :raises HoldError: if a hold covers the record.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "delete records")
        record_id = ids.record_id(record_id)
        instruction = scope._ledger.require(
            instruction_id, _DELETE_ACTIONS, record_id=record_id
        )
        return destroy_record(
            scope, record_id, reason=instruction.action, approved_by=instruction.issued_by,
            instruction_id=instruction.instruction_id,
        ).evidence

    # -- instructions and data-subject operations ----------------------------------------

    def create_instruction(
        self,
        action: InstructionAction,
        *,
        subject: SubjectId | None = None,
        record_ids: Sequence[str] = (),
        note: str | None = None,
    ) -> Instruction:
        """Record a documented instruction of the controller in its ledger.

        Destructive and outbound operations (deletion, erasure, rectification,
        restriction, export, disclosure) cite one. ``controller_admin`` only.

        :param action: what is instructed.
        :param subject: limit the instruction to one subject (stored pseudonymously).
        :param record_ids: limit it to these records.
        :param note: free text (kept encrypted).
        :raises InvalidInputError: on bad input (nothing written).
        :raises NotFoundError: if ``subject`` has no records here.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "record instructions")
        if not isinstance(action, str) or action not in _INSTRUCTION_ACTIONS:
            raise InvalidInputError("unknown instruction action")
        records = check_record_ids(record_ids)
        check_note(note)
        skid = None
        if subject is not None:
            skid = scope._keys.find_subject(check_subject(subject))
            if skid is None:
                raise NotFoundError("no records of that subject here")
        return scope._audited(
            "instruction.create", "C", f"controller:{scope.controller_id}",
            lambda: scope._ledger.create_instruction(
                action, issued_by=scope._actor.id, issued_at=scope._clock(),
                subject_ref=skid, record_ids=records, note=note,
            ),
            write=True,
        )

    def get_instruction(self, instruction_id: str) -> Instruction:
        """An instruction from the ledger. ``controller_admin`` only.

        :raises NotFoundError: if there is no such instruction.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "read instructions")
        return scope._ledger.get_instruction(instruction_id)

    def erase_subject(self, subject: SubjectId, *, instruction_id: str) -> ErasureReport:
        """Erase a subject on the controller's instruction: destroy every record (with
        evidence) and then the subject's key, so surviving copies cannot be decrypted.

        Nothing is destroyed if any hold covers the subject or one of its records.

        :param instruction_id: an ``erasure`` instruction covering the subject.
        :raises HoldError: if a hold applies (report it to the controller).
        :raises NotFoundError: if the subject or instruction does not exist here.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "erase subjects")
        subject = check_subject(subject)
        instruction_id = ids.opaque_id(instruction_id, "instruction id")
        return scope._audited(
            "subject.erase", "D", f"controller:{scope.controller_id}",
            lambda: _subject_ops.erase_subject(scope, subject, instruction_id), write=True,
            policy=instruction_id,
        )

    def set_restriction(
        self, subject: SubjectId, restricted: bool, *, instruction_id: str
    ) -> None:
        """Restrict (or lift the restriction of) processing of a subject's data.

        While restricted, reads by anyone but a ``controller_admin`` raise
        :class:`RestrictedError`; storage and the controller's export still work.
        Other processes see the change within the key cache lifetime.

        :param instruction_id: a ``restriction`` (or ``lift_restriction``) instruction.
        :raises NotFoundError: if the subject or instruction does not exist here.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "restrict processing")
        subject = check_subject(subject)
        if not isinstance(restricted, bool):
            raise InvalidInputError("restricted must be True or False")
        instruction_id = ids.opaque_id(instruction_id, "instruction id")
        scope._audited(
            "subject.restrict" if restricted else "subject.unrestrict", "U",
            f"controller:{scope.controller_id}",
            lambda: _subject_ops.set_restriction(scope, subject, restricted, instruction_id),
            write=True, policy=instruction_id,
        )

    def rectify_record(
        self,
        record_id: str,
        *,
        etag: str,
        instruction_id: str,
        fields: Mapping[str, Any] | None = None,
        remove_fields: Sequence[str] = (),
        events: Mapping[str, dt.date] | None = None,
    ) -> RecordRef:
        """Correct a record on the controller's instruction as a new version, keeping
        the earlier version in its history (:meth:`list_record_versions`).

        :param instruction_id: a ``rectification`` instruction covering the record.
        :raises ConflictError: if the record changed since ``etag``.
        :raises NotFoundError: if the record or instruction does not exist here.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "rectify records")
        record_id = ids.record_id(record_id)
        etag = check_etag(etag)
        instruction_id = ids.opaque_id(instruction_id, "instruction id")
        removed, data = change_input(fields, remove_fields, events)
        scope._ledger.require(instruction_id, frozenset({"rectification"}), record_id=record_id)

        def run() -> RecordRef:
            _subject_ops.keep_history(scope, record_id)
            return scope._update(record_id, etag, removed, data, None, None)

        return scope._audited("record.rectify", "U", record_id, run, write=True,
                             policy=instruction_id)

    def list_record_versions(self, record_id: str) -> list[Record]:
        """Earlier versions of a rectified record, oldest first (the current one is
        :meth:`get_record`). ``controller_admin`` only.

        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "read record history")
        record_id = ids.record_id(record_id)

        def run() -> list[Record]:
            key = scope._keys.subject_key(ids.skid_of_record(record_id))
            return [
                scope._decrypt_record(key, record_id, record_doc.decode(data), "")
                for _version, data in _subject_ops.history_versions(scope, record_id)
            ]

        return scope._audited("record.history", "R", record_id, run, write=False)

    def export_subject(
        self, subject: SubjectId, destination: IO[bytes], *, instruction_id: str
    ) -> ExportSummary:
        """Export everything held about a subject, for the controller (access and
        portability requests): a ZIP streamed to ``destination`` with ``records.json``
        (machine-readable JSON), ``fhir-bundle.json`` (a FHIR R4 Bundle) and the
        original documents under ``documents/``. Memory stays bounded.

        The destination is the controller admin's own stream: the export is never
        delivered to a requester by this library.

        :param instruction_id: an ``export`` instruction covering the subject.
        :raises NotFoundError: if the subject or instruction does not exist here.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        scope = cast("ControllerScope", self)
        scope._require(_ADMIN_ROLES, "export subject data")
        subject = check_subject(subject)
        instruction_id = ids.opaque_id(instruction_id, "instruction id")
        destination = check_destination(destination)
        return scope._audited(
            "subject.export", "E", f"controller:{scope.controller_id}",
            lambda: _subject_ops.export_subject(scope, subject, destination, instruction_id),
            write=True, policy=instruction_id,
        )

    def _read_for_export(self, record_id: str) -> Record:
        scope = cast("ControllerScope", self)
        return scope._get(record_id, None, for_admin=True)

    def _open_for_export(self, record_id: str) -> ContentReader:
        scope = cast("ControllerScope", self)
        return scope._open(record_id, for_admin=True)

    def _record_category_and_events(
        self, record_id: str
    ) -> tuple[str, dict[str, dt.date]] | None:
        """A record's category and dated events (decrypts the meta only), or None."""
        scope = cast("ControllerScope", self)
        try:
            key, doc, _ = scope._load(record_id, for_admin=True)
        except NotFoundError:
            return None
        meta = record_doc.decrypt_meta(
            scope._record_keys(key, record_id), doc, controller_id=scope.controller_id,
            record_id=record_id,
        )
        try:
            events = {k: dt.date.fromisoformat(v) for k, v in meta["events"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise IntegrityError("stored data failed integrity verification") from None
        return doc.category, events

    def _record_events(self, record_id: str) -> dict[str, dt.date] | None:
        scope = cast("ControllerScope", self)
        loaded = scope._record_category_and_events(record_id)
        return None if loaded is None else loaded[1]
