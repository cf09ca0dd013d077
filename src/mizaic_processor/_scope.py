"""The controller scope: one controller's data, as seen by one actor.

Every method validates its input before any I/O (see :mod:`._validation`), checks the
actor's role, runs as one audited operation, and touches only its controller's
container and keys.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import CancelledError
from typing import IO, TYPE_CHECKING, Any, NamedTuple, TypeVar, get_args

from pydantic import ValidationError

from mizaic_processor._audit_writer import AuditWriter, Ticket
from mizaic_processor._azure.blob import Container, Staged
from mizaic_processor._content import ContentReader, EncryptingReader, check_content
from mizaic_processor._core import envelope, ids, record_doc
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._keystore import ControllerKeys, SubjectKey
from mizaic_processor._ledger import InstructionAction, Ledger
from mizaic_processor._scope_bulk import BulkOperations
from mizaic_processor._scope_instructed import InstructedOperations
from mizaic_processor._validation import (
    RecordInput,
    change_input,
    check_etag,
    check_subject,
    skid_bytes,
    validate_input,
)
from mizaic_processor.audit import AuditTrail
from mizaic_processor.errors import (
    AccessDeniedError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    MizaicError,
    NotFoundError,
    RestrictedError,
    StorageError,
)
from mizaic_processor.keyring import Keyring
from mizaic_processor.keys import KeyRotation
from mizaic_processor.models import (
    Actor,
    ContentInfo,
    Controller,
    Record,
    RecordRef,
    Role,
    SubjectId,
    subject_from,
)
from mizaic_processor.retention import InstructionBook, Retention

if TYPE_CHECKING:  # subject requests (issue 4)
    from mizaic_processor.requests import ControllerRequests

__all__ = ["ControllerScope", "make_event"]

logger = logging.getLogger("mizaic_processor")

RECORD_PREFIX = "records/"
CONTENT_PREFIX = "content/"
MAX_FIELDS = 512
MAX_RECORD_JSON = 4 * 1024 * 1024
_CARE_ROLES = frozenset({Role.SERVICE, Role.CONTROLLER_ADMIN})
_ADMIN_ROLES = frozenset({Role.CONTROLLER_ADMIN})
_DELETE_ACTIONS = frozenset({"deletion", "erasure", "destruction"})
_INSTRUCTION_ACTIONS = frozenset(get_args(InstructionAction))

Clock = Callable[[], dt.datetime]
T = TypeVar("T")


# The content id of the document a record is created with (replacements get random ids).
FIRST_CONTENT_ID = "first"


class _StagedContent(NamedTuple):
    """A document encrypted and staged (uncommitted) under a new content id."""

    content_id: str
    staged: Staged
    info: dict[str, Any]

    def __repr__(self) -> str:
        return "_StagedContent(<hidden>)"


class _NewRecord(NamedTuple):
    """A validated new record, ready to write."""

    subject: SubjectId
    data: RecordInput
    content: Any
    content_type: str | None

    def __repr__(self) -> str:
        return "_NewRecord(<hidden>)"

# HL7 v3 ActReason codes recorded as the audit event's purposeOfEvent, by role.
_DEFAULT_PURPOSE = {
    Role.SERVICE: "TREAT",
    Role.CONTROLLER_ADMIN: "HOPERAT",
    Role.PROCESSOR_OPERATOR: "HSYSADMIN",
}
_PURPOSE = re.compile(r"[A-Z][A-Z0-9_-]{1,31}")



def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_event(
    actor: Actor, op: str, action: str, entity: str, purpose: str,
    *, outcome: str = "success", policy: str | None = None, ref: str | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "id": ids.new_opaque_id("e"),
        "at": (at or _utcnow()).isoformat(),
        "actor": actor.id,
        "role": actor.role.value,
        "op": op,
        "action": action,
        "entity": entity,
        "outcome": outcome,
        "purpose": purpose,
    }
    if policy is not None:
        event["policy"] = policy
    if ref is not None:
        event["ref"] = ref
    return event


class ControllerScope(BulkOperations, InstructedOperations):
    """One controller's data, as seen by one actor. Obtain it from :meth:`Processor.tenant`.

    Every method validates its input before any I/O, checks the actor's role, and
    touches only this controller's container and keys.
    """

    def __init__(
        self,
        *,
        controller: Controller,
        actor: Actor,
        purpose: str,
        container: Container,
        keys: ControllerKeys,
        audit: Callable[[], AuditWriter],
        docs: ControllerDocs,
        ledger: Ledger,
        instructions: InstructionBook,
        keyring: Keyring,
        key_cache_ttl: float,
        integrity_alarm: Callable[..., None],
        chunk_size: int,
        clock: Clock,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._keyring = keyring
        self._key_cache_ttl = key_cache_ttl
        self._integrity_alarm = integrity_alarm
        self._docs = docs
        self._ledger = ledger
        self._instructions = instructions
        self._controller = controller
        self._actor = actor
        self._purpose = purpose
        self._audit_for = audit
        self._audit_writer = audit()
        self._container = container
        self._keys = keys
        self._chunk_size = chunk_size
        self._clock = clock
        self._random = random_bytes
        self._nonces = envelope.NonceSource(random_bytes)

    def __repr__(self) -> str:
        return (
            f"ControllerScope(controller={self.controller_id!r}, actor={self._actor.id!r}, "
            f"role={self._actor.role.value!r})"
        )

    @property
    def _writer(self) -> AuditWriter:
        """This process's audit writer: a scope made before ``os.fork`` (a module-level
        scope under gunicorn ``--preload``) must not queue events for its parent's writer,
        whose thread the child does not have, or continue its parent's chain."""
        writer = self._audit_writer
        if writer.pid != os.getpid():
            writer = self._audit_writer = self._audit_for()
        return writer

    @property
    def controller_id(self) -> str:
        """The controller this scope belongs to."""
        return self._controller.controller_id

    @property
    def actor(self) -> Actor:
        """Who this scope acts for."""
        return self._actor

    def _require(self, roles: frozenset[Role], what: str) -> None:
        if self._actor.role not in roles:
            # A refused attempt is itself an event worth keeping (best effort).
            with contextlib.suppress(MizaicError):
                self._emit("access.denied", "E", f"controller:{self.controller_id}",
                           outcome="failure")[1].wait()
            raise AccessDeniedError(f"role {self._actor.role.value} may not {what}")

    # -- audit ---------------------------------------------------------------------------

    def _emit(
        self, op: str, action: str, entity: str, *, outcome: str = "success",
        policy: str | None = None, ref: str | None = None,
    ) -> tuple[str, Ticket]:
        event = make_event(
            self._actor, op, action, entity, self._purpose, outcome=outcome, policy=policy,
            ref=ref, at=self._clock(),
        )
        return event["id"], self._writer.submit(event)

    def _audited(
        self, op: str, action: str, entity: str, run: Callable[[], T], *,
        write: bool, policy: str | None = None, before: Callable[[], object] | None = None,
    ) -> T:
        """Run ``run`` as one audited operation.

        A change (``write``) runs only after its event is durable: if the event cannot
        be recorded, nothing is changed. A read is issued while its event is being
        committed, and its result is handed out only once the event is durable. If the
        operation itself fails, a failure event referring to the first follows.

        ``before`` (writes only) runs while the event is being committed. It must change
        nothing visible: it prepares, e.g. encrypts a document and stages its blocks,
        which stay uncommitted (invisible, discarded by the service) unless ``run``
        commits them once the event is durable.
        """
        event_id, ticket = self._emit(op, action, entity, policy=policy)
        if write:
            if before is not None:
                try:
                    before()
                except BaseException as exc:
                    if isinstance(exc, IntegrityError):
                        self._integrity_alarm(self.controller_id, op)
                    with contextlib.suppress(MizaicError):
                        ticket.wait()
                        self._emit(op, action, entity, outcome="failure", policy=policy,
                                   ref=event_id)[1].wait()
                    raise
            ticket.wait()
        try:
            result = run()
        except IntegrityError:
            self._integrity_alarm(self.controller_id, op)
            with contextlib.suppress(MizaicError):
                self._emit(op, action, entity, outcome="failure", policy=policy,
                           ref=event_id)[1].wait()
            if not write:
                ticket.wait()
            raise
        except BaseException as exc:
            outcome_failed = not isinstance(exc, NotFoundError) or write
            if outcome_failed:
                with contextlib.suppress(MizaicError):
                    self._emit(op, action, entity, outcome="failure", policy=policy,
                               ref=event_id)[1].wait()
            if not write:
                ticket.wait()
            raise
        if not write:
            ticket.wait()
        return result

    @property
    def requests(self) -> ControllerRequests:
        """This controller's subject requests (``controller_admin``; see
        :class:`~mizaic_processor.ControllerRequests`). Subject requests (issue 4) hook."""
        from mizaic_processor.requests import ControllerRequests

        return ControllerRequests(self)

    @property
    def audit(self) -> AuditTrail:
        """This controller's audit trail (verify, query, export): ``controller_admin``."""
        return AuditTrail(
            self._container,
            controller_id=self.controller_id,
            authorise=lambda what: self._require(frozenset({Role.CONTROLLER_ADMIN}), what),
            key_for_version=lambda version: self._keys.audit_key(version)[1],
            record=self._record_controller_event,
            on_tamper=lambda: self._integrity_alarm(self.controller_id, "audit.verify"),
            seal=self._writer.flush,
            subject_ref=self._subject_ref,
        )

    def _record_controller_event(self, op: str, action: str) -> None:
        self._emit(op, action, f"controller:{self.controller_id}")[1].wait()

    def _subject_ref(self, subject: Any) -> str | None:
        return self._keys.find_subject(check_subject(subject))

    def _record_keys(self, key: SubjectKey, record_id: str) -> envelope.RecordKeys:
        return envelope.derive_record_keys(
            key.key,
            skid=key.skid_bytes,
            key_version=key.version,
            controller_id=self.controller_id,
            record_id=record_id,
        )

    def _nonce(self) -> bytes:
        """A fresh random nonce (see :class:`~mizaic_processor._core.envelope.NonceSource`)."""
        return self._nonces()

    # -- writes --------------------------------------------------------------------------

    def create_record(
        self,
        subject: SubjectId,
        *,
        category: str,
        fields: Mapping[str, Any] | None = None,
        events: Mapping[str, dt.date] | None = None,
        content: bytes | IO[bytes] | None = None,
        content_type: str | None = None,
    ) -> RecordRef:
        """Store a new record for ``subject``, encrypted under the subject's key.

        :param subject: an :class:`NHSNumber` or :class:`HospitalNumber`.
        :param category: the data category code (``adult``, ``maternity``, ...).
        :param fields: structured fields, name -> JSON value.
        :param events: dated events used by retention (``last_treatment``, ...).
        :param content: a document: bytes or a binary stream of any size.
        :param content_type: the document's media type; required with ``content``.
        :raises InvalidInputError: on bad input (before any I/O; nothing written).
        :raises AccessDeniedError: if the actor may not write records.
        :raises StorageError: if Azure Storage fails; no record is then visible.
        """
        self._require(_CARE_ROLES, "write records")
        return self._create(self._prepare_create(
            subject, category, fields, events, content, content_type
        ))

    @staticmethod
    def _prepare_create(
        subject: object, category: object, fields: object, events: object,
        content: object, content_type: object,
    ) -> _NewRecord:
        """Validate one new record (no I/O)."""
        checked = check_subject(subject)
        data = validate_input(category, fields or {}, events or {})
        return _NewRecord(checked, data, content, check_content(content, content_type))

    def _create(self, new: _NewRecord) -> RecordRef:
        """Create one validated record: an audited write (the event is durable first)."""
        subject, data = new.subject, new.data
        skid = self._keys.find_subject(subject)
        proposed = skid is None
        if skid is None:
            skid = ids.b32(self._random(16))
        suffix = self._random(16)
        record_id = ids.make_record_id(skid_bytes(skid), suffix)
        prepared: list[tuple[envelope.RecordKeys, _StagedContent]] = []

        def stage() -> None:
            # the subject's key exists: encrypt and stage the document (uncommitted,
            # invisible) while the audit event is being made durable
            keys = self._record_keys(self._keys.subject_key(skid), record_id)
            prepared.append((keys, self._stage_content(
                keys, record_id, new.content, new.content_type, first=True
            )))

        def run() -> RecordRef:
            key = (
                self._keys.subject_for_write(subject, proposed_skid=skid, known_missing=True)
                if proposed else self._keys.subject_key(skid)
            )
            rid = record_id
            if key.skid != skid:  # lost a race to create the subject: use the winner's key
                rid = ids.make_record_id(key.skid_bytes, suffix)
                self._emit("record.create", "C", rid)[1].wait()
            now = self._clock()
            early = prepared[0] if prepared and rid == record_id else None
            keys = early[0] if early else self._record_keys(key, rid)
            return self._write(
                keys,
                rid,
                category=data.category,
                version=1,
                field_envelopes=record_doc.encrypt_fields(
                    keys, data.fields,
                    controller_id=self.controller_id, record_id=rid, nonce=self._nonce,
                ),
                meta={
                    "subject": {"kind": subject.kind, "value": subject.value},
                    "names": sorted(data.fields),
                    "events": {k: v.isoformat() for k, v in data.events.items()},
                    "created_at": now.isoformat(),
                    "updated_at": now.isoformat(),
                },
                content=new.content,
                content_type=new.content_type,
                etag=None,
                staged=early[1] if early else None,
            )

        # only bytes: a stream read before the event is durable would be left consumed if
        # the write were then refused, and a retry would store an empty document
        early = (
            not proposed and isinstance(new.content, bytes | bytearray | memoryview)
            and new.content_type is not None
        )
        return self._audited("record.create", "C", record_id, run, write=True,
                             before=stage if early else None)

    def _write(
        self,
        keys: envelope.RecordKeys,
        record_id: str,
        *,
        category: str,
        version: int,
        field_envelopes: dict[str, bytes],
        meta: dict[str, Any],
        content: bytes | IO[bytes] | None,
        content_type: str | None,
        etag: str | None,
        content_id: str | None = None,
        staged: _StagedContent | None = None,
    ) -> RecordRef:
        if content is not None and content_type is not None:
            if staged is None:
                staged = self._stage_content(keys, record_id, content, content_type,
                                             first=etag is None)
            content_id = staged.content_id
            try:
                self._container.commit_staged(
                    self._content_blob(record_id, content_id), staged.staged, what="content"
                )
            except BaseException:
                # a failed commit may still have landed (a retried commit)
                with contextlib.suppress(MizaicError):
                    self._container.delete(
                        self._content_blob(record_id, content_id), what="content"
                    )
                raise
            meta["content"] = staged.info
        meta.update(category=category, version=version, content_id=content_id,
                    fields_digest=record_doc.fields_digest(field_envelopes))
        doc = record_doc.RecordDoc(
            record_id=record_id,
            category=category,
            version=version,
            content_id=content_id,
            meta=record_doc.encrypt_meta(
                keys, meta, controller_id=self.controller_id, record_id=record_id,
                nonce=self._nonce(),
            ),
            fields=field_envelopes,
        )
        name = self._record_blob(record_id)
        events = {k: dt.date.fromisoformat(v) for k, v in meta["events"].items()}
        try:
            new_etag = self._container.put(
                name, record_doc.encode(doc), etag=etag, what="record",
                tags=self._instructions.tags(category, events),
            )
        except BaseException:
            if content is not None and content_id is not None:
                self._drop_unreferenced_content(record_id, content_id)
            raise
        return RecordRef(record_id=record_id, etag=new_etag, version=version)

    def _drop_unreferenced_content(self, record_id: str, content_id: str) -> None:
        """After a failed record write, delete the new content it would have pointed at,
        unless the stored record references it after all (a write that landed although
        its answer was lost, even under a conflict seen on a retry): a content blob that
        the stored record, or an unreadable one, might reference is kept (an orphan,
        never a dangling pointer)."""
        with contextlib.suppress(MizaicError):
            try:
                stored = self._container.get(self._record_blob(record_id), what="record")
            except NotFoundError:
                pass
            else:
                if record_doc.decode(stored.data).content_id == content_id:
                    return
            self._container.delete(self._content_blob(record_id, content_id), what="content")

    def _stage_content(
        self,
        keys: envelope.RecordKeys,
        record_id: str,
        content: bytes | IO[bytes],
        content_type: str | None,
        *,
        first: bool,
    ) -> _StagedContent:
        """Encrypt a document as it is read and stage it under a new content id: nothing
        is visible until :meth:`Container.commit_staged`.

        A record's first document (``first``, at creation) has the fixed id
        :data:`FIRST_CONTENT_ID`, so a read can fetch it alongside the record document;
        a replacement gets a random id (the old document stays until the record points
        at the new one)."""
        content_id = FIRST_CONTENT_ID if first else ids.b32(self._random(16))
        salt = self._random(envelope.SALT_BYTES)
        encryptor = envelope.ContentEncryptor(
            keys,
            controller_id=self.controller_id,
            record_id=record_id,
            salt=salt,
            chunk_size=self._chunk_size,
        )
        reader = EncryptingReader(encryptor, content, self._chunk_size)
        staged = self._container.stage_stream(
            self._content_blob(record_id, content_id),
            reader,
            length=reader.encrypted_length,
            what="content",
        )
        return _StagedContent(content_id, staged, {
            "type": content_type,
            "length": encryptor.plaintext_length,
            "sha256": encryptor.plaintext_sha256.hex(),
            # the envelope's salt, sealed with the record: another version of this
            # record's document (or a copy of it) is refused at its header, before any
            # of its plaintext is released
            "salt": salt.hex(),
        })

    def update_record(
        self,
        record_id: str,
        *,
        etag: str,
        fields: Mapping[str, Any] | None = None,
        remove_fields: Sequence[str] = (),
        events: Mapping[str, dt.date] | None = None,
        content: bytes | IO[bytes] | None = None,
        content_type: str | None = None,
    ) -> RecordRef:
        """Change a record if nobody else has since ``etag`` (optimistic concurrency).

        Fields in ``fields`` are set (others kept), ``remove_fields`` are removed, events
        in ``events`` are set (a newer event restarts a retention clock). Unchanged fields
        keep their envelopes and are not decrypted.

        :raises InvalidInputError: on bad input (before any I/O).
        :raises ConflictError: if the record changed since ``etag``: re-read and retry.
        :raises NotFoundError: if there is no such record in this controller.
        :raises AccessDeniedError: if the actor may not write records.
        :raises IntegrityError: if the stored record fails verification.
        """
        self._require(_CARE_ROLES, "write records")
        record_id = ids.record_id(record_id)
        etag = check_etag(etag)
        removed, data = change_input(fields, remove_fields, events)
        content_type = check_content(content, content_type)
        return self._audited(
            "record.update", "U", record_id,
            lambda: self._update(record_id, etag, removed, data, content, content_type),
            write=True,
        )

    def _update(
        self,
        record_id: str,
        etag: str,
        removed: list[str],
        data: RecordInput,
        content: bytes | IO[bytes] | None,
        content_type: str | None,
    ) -> RecordRef:
        key, doc, stored_etag = self._load(record_id)
        if stored_etag != etag:
            raise ConflictError("record was changed by someone else (stale etag)")
        keys = self._record_keys(key, record_id)
        meta = record_doc.decrypt_meta(
            keys, doc, controller_id=self.controller_id, record_id=record_id
        )
        envelopes = dict(doc.fields)
        for name in removed:
            envelopes.pop(envelope.field_tag(keys, name), None)
        envelopes.update(
            record_doc.encrypt_fields(
                keys, data.fields, controller_id=self.controller_id, record_id=record_id,
                nonce=self._nonce,
            )
        )
        meta["names"] = sorted(
            (set(record_doc.listed_names(meta, doc)) - set(removed)) | set(data.fields)
        )
        merged_events = dict(meta.get("events", {}))
        merged_events.update({k: v.isoformat() for k, v in data.events.items()})
        meta["events"] = merged_events
        meta["updated_at"] = self._clock().isoformat()
        old_content = doc.content_id
        ref = self._write(
            keys, record_id, category=doc.category, version=doc.version + 1,
            field_envelopes=envelopes, meta=meta, content=content, content_type=content_type,
            etag=etag, content_id=old_content,
        )
        if content is not None and old_content is not None:
            self._container.delete(self._content_blob(record_id, old_content), what="content")
        return ref

    # -- reads ---------------------------------------------------------------------------

    def _record_blob(self, record_id: str) -> str:
        return f"{RECORD_PREFIX}{ids.skid_of_record(record_id)}/{record_id[27:]}"

    def _content_blob(self, record_id: str, content_id: str) -> str:
        return f"{CONTENT_PREFIX}{ids.skid_of_record(record_id)}/{record_id[27:]}/{content_id}"

    def _load(
        self, record_id: str, *, for_admin: bool = False
    ) -> tuple[SubjectKey, record_doc.RecordDoc, str]:
        stored = self._container.get(self._record_blob(record_id), what="record")
        doc = record_doc.decode(stored.data)
        try:
            key = self._keys.subject_key(ids.skid_of_record(record_id))
        except NotFoundError:
            raise IntegrityError("stored data failed integrity verification") from None
        if key.restricted and not for_admin:
            self._check_restriction()
        return key, doc, stored.etag

    def _check_restriction(self) -> None:
        if self._actor.role is not Role.CONTROLLER_ADMIN:
            with contextlib.suppress(MizaicError):
                self._emit("access.restricted", "E", f"controller:{self.controller_id}",
                           outcome="failure")[1].wait()
            raise RestrictedError(
                "processing of this subject is restricted on the controller's instruction"
            )

    def get_record(self, record_id: str, *, fields: Sequence[str] | None = None) -> Record:
        """Read and decrypt a record: every field, or only the ``fields`` named.

        Only the fields asked for are decrypted; names the record lacks are absent from
        the result.

        :raises InvalidInputError: if the id or a field name is malformed.
        :raises NotFoundError: if there is no such record in this controller.
        :raises AccessDeniedError: if the actor may not read records.
        :raises IntegrityError: if the stored record fails verification.
        """
        self._require(_CARE_ROLES, "read records")
        record_id = ids.record_id(record_id)
        wanted: list[str] | None = None
        if fields is not None:
            if isinstance(fields, str) or not isinstance(fields, Sequence):
                raise InvalidInputError("fields must be a sequence of field names")
            wanted = [ids.field_name(n) for n in fields]
        return self._audited(
            "record.read", "R", record_id, lambda: self._get(record_id, wanted), write=False
        )

    def _get(self, record_id: str, wanted: list[str] | None, *, for_admin: bool = False
             ) -> Record:
        key, doc, etag = self._load(record_id, for_admin=for_admin)
        return self._decrypt_record(key, record_id, doc, etag, wanted)

    def _decrypt_record(
        self, key: SubjectKey, record_id: str, doc: record_doc.RecordDoc, etag: str,
        wanted: list[str] | None = None,
    ) -> Record:
        """Verify the sealed meta, decrypt the wanted (or all) fields, build the Record."""
        keys = self._record_keys(key, record_id)
        meta = record_doc.decrypt_meta(
            keys, doc, controller_id=self.controller_id, record_id=record_id
        )
        values = record_doc.decrypt_fields(
            keys, doc, meta, wanted, controller_id=self.controller_id, record_id=record_id
        )
        return self._to_record(record_id, doc, meta, values, etag)

    def _to_record(
        self,
        record_id: str,
        doc: record_doc.RecordDoc,
        meta: dict[str, Any],
        values: dict[str, Any],
        etag: str,
    ) -> Record:
        try:
            subject_meta = meta["subject"]
            content = meta.get("content")
            return Record(
                record_id=record_id,
                category=doc.category,
                version=doc.version,
                etag=etag,
                subject=subject_from(subject_meta["kind"], subject_meta["value"]),
                fields=values,
                events={k: dt.date.fromisoformat(v) for k, v in meta["events"].items()},
                content=None if content is None else ContentInfo(
                    content_type=content["type"], length=content["length"],
                    sha256=content["sha256"],
                ),
                created_at=dt.datetime.fromisoformat(meta["created_at"]),
                updated_at=dt.datetime.fromisoformat(meta["updated_at"]),
            )
        except (KeyError, TypeError, ValueError, ValidationError, InvalidInputError):
            raise IntegrityError("stored data failed integrity verification") from None

    def open_content(self, record_id: str) -> ContentReader:
        """Stream a record's document, decrypting and verifying chunk by chunk.

        Memory stays bounded whatever the size. The plaintext SHA-256 and length recorded
        at capture are checked when the stream ends; a truncated, reordered or altered
        stream raises :class:`IntegrityError` (at the latest when the end is read).

        :raises InvalidInputError: if the id is malformed.
        :raises NotFoundError: if there is no such record, or it has no content.
        :raises AccessDeniedError: if the actor may not read records.
        :raises IntegrityError: if the record or its content fails verification.
        """
        self._require(_CARE_ROLES, "read records")
        record_id = ids.record_id(record_id)
        return self._audited(
            "content.read", "R", record_id, lambda: self._open(record_id), write=False
        )

    def _open(self, record_id: str, *, for_admin: bool = False) -> ContentReader:
        # Most records keep the document they were created with: fetch its first range
        # while the record document is read and verified. It is used only if the
        # verified record points at it; nothing is decrypted or handed out before that.
        speculative = self._container.open_soon(
            self._content_blob(record_id, FIRST_CONTENT_ID)
        )
        try:
            key, doc, _ = self._load(record_id, for_admin=for_admin)
            keys = self._record_keys(key, record_id)
            meta = record_doc.decrypt_meta(
                keys, doc, controller_id=self.controller_id, record_id=record_id
            )
            info = meta.get("content")
            if doc.content_id is None or not isinstance(info, dict):
                raise NotFoundError("record has no content")
            if doc.content_id == FIRST_CONTENT_ID:
                try:
                    pieces = speculative.result()
                except CancelledError:  # the processor was closed meanwhile
                    raise StorageError("the processor was closed during the read") from None
            else:
                speculative.cancel()
                pieces = self._container.open(self._content_blob(record_id, doc.content_id))
        except BaseException:
            speculative.cancel()  # not started yet: never fetched; else simply dropped
            raise
        salt = info.get("salt")  # absent from documents stored before it was recorded
        try:
            expected_salt = None if salt is None else bytes.fromhex(salt)
        except (TypeError, ValueError):
            raise IntegrityError("stored data failed integrity verification") from None
        decryptor = envelope.ContentDecryptor(
            keys, controller_id=self.controller_id, record_id=record_id, salt=expected_salt
        )
        return ContentReader(
            pieces, decryptor, expected_length=info.get("length"),
            expected_sha256=info.get("sha256"),
            on_integrity_failure=lambda: self._integrity_alarm(
                self.controller_id, "content.read"
            ),
        )

    def list_records(self, subject: SubjectId) -> Iterator[str]:
        """The ids of every record of ``subject``, found through the blind index.

        Costs one index lookup and a listing of that subject's records only, never a
        scan of the controller's data.

        :raises InvalidInputError: if ``subject`` is not a subject identifier.
        :raises AccessDeniedError: if the actor may not read records.
        :raises IntegrityError: if a blob among the subject's records has a name the
            library never writes (it is not returned as a record id).
        """
        self._require(_CARE_ROLES, "find records")
        subject = check_subject(subject)
        skid = self._keys.find_subject(subject)
        if skid is None:
            self._audited("subject.find", "E", "subject:unknown", lambda: None, write=False)
            return iter(())
        if self._keys.subject_key(skid).restricted:
            self._check_restriction()
        return iter(self._audited(
            "subject.find", "E", f"subject:{skid}", lambda: self._record_ids(skid),
            write=False,
        ))

    def _record_ids(self, skid: str) -> list[str]:
        """The ids of the records stored under subject key ``skid``.

        :raises IntegrityError: if a name there is none the library writes (a stray
            blob must not come back as a record id).
        """
        prefix = f"{RECORD_PREFIX}{skid}/"
        found = []
        for name in self._container.list_names(prefix):
            record_id = ids.record_id_of_name(skid, name[len(prefix):])
            if record_id is None:
                raise IntegrityError("stored data failed integrity verification")
            found.append(record_id)
        return found

    @property
    def keys(self) -> KeyRotation:
        """Key rotation for this controller (see :class:`~mizaic_processor.keys.KeyRotation`)."""
        return KeyRotation(self)

    @property
    def retention(self) -> Retention:
        """Retention instructions, holds, appraisal and destruction (see
        :class:`~mizaic_processor.retention.Retention`)."""
        return Retention(self)

    def subject_exists(self, subject: SubjectId) -> bool:
        """Whether ``subject`` has a key (and so possibly records) in this controller.

        :raises AccessDeniedError: if the actor may not read records.
        """
        self._require(_CARE_ROLES, "find records")
        subject = check_subject(subject)
        found = self._keys.find_subject(subject)
        entity = f"subject:{found}" if found else "subject:unknown"
        self._audited("subject.find", "E", entity, lambda: None, write=False)
        return found is not None
