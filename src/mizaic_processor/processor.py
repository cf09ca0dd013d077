"""The imperative shell: :class:`Processor` and the controller scope it hands out.

Loads through the adapters, calls the pure core, writes through the adapters. Every
input is validated before the first request to Azure.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError, field_validator

from mizaic_processor import _subject_ops
from mizaic_processor._audit_writer import AuditWriter, Ticket
from mizaic_processor._azure.blob import BlobStore, Container
from mizaic_processor._content import ContentReader, EncryptingReader, check_content
from mizaic_processor._core import envelope, ids, record_doc
from mizaic_processor._destruction import DestructionEvidence, destroy_record
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._keystore import ControllerKeys, SubjectKey
from mizaic_processor._ledger import Instruction, InstructionAction, Ledger, check_note
from mizaic_processor._subject_ops import Disclosure, ErasureReport, ExportSummary
from mizaic_processor.audit import AuditTrail
from mizaic_processor.errors import (
    AccessDeniedError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    MizaicError,
    NotFoundError,
    ResidencyError,
    RestrictedError,
)
from mizaic_processor.keyring import Keyring
from mizaic_processor.keys import MAX_KEY_CACHE_TTL, KeyRotation
from mizaic_processor.models import (
    Actor,
    ContentInfo,
    Controller,
    Record,
    RecordRef,
    Region,
    Role,
    SubjectId,
    check_region,
    describe_validation_error,
    subject_from,
)
from mizaic_processor.retention import InstructionBook, Retention

if TYPE_CHECKING:  # subject requests (issue 4)
    from mizaic_processor.requests import ControllerRequests, RequestDesk

__all__ = ["ControllerScope", "Processor"]

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

# HL7 v3 ActReason codes recorded as the audit event's purposeOfEvent, by role.
_DEFAULT_PURPOSE = {
    Role.SERVICE: "TREAT",
    Role.CONTROLLER_ADMIN: "HOPERAT",
    Role.PROCESSOR_OPERATOR: "HSYSADMIN",
}
_PURPOSE = re.compile(r"[A-Z][A-Z0-9_-]{1,31}")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class _RecordInput(BaseModel):
    """Validates what a caller hands to a write, before any I/O."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    category: str
    fields: dict[str, JsonValue]
    events: dict[str, dt.date]

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        return ids.category(value)

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if len(value) > MAX_FIELDS:
            raise ValueError("too many fields")
        for name in value:
            ids.field_name(name)
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: dict[str, dt.date]) -> dict[str, dt.date]:
        for name in value:
            ids.event_name(name)
        return value


def _validate_input(
    category: object, fields: object, events: object
) -> _RecordInput:
    if not isinstance(events, Mapping):
        raise InvalidInputError("invalid input: events must be a mapping of name to date")
    for when in events.values():
        if type(when) is not dt.date:
            raise InvalidInputError("invalid input: events are datetime.date values")
    if not isinstance(fields, Mapping):
        raise InvalidInputError("invalid input: fields must be a mapping of name to value")
    message: str | None = None
    try:
        data = _RecordInput(
            category=category,
            fields=fields,
            events=events,
        )
    except ValidationError as exc:
        message = describe_validation_error(exc)
    except InvalidInputError as exc:
        message = str(exc)
    except (ValueError, TypeError, RecursionError):
        message = "invalid input"
    if message is not None:
        # raised outside the except block: the caller's values must not ride along as
        # the exception's __context__
        raise InvalidInputError(message)
    try:
        size = len(record_doc.dumps_json(data.fields))
    except (ValueError, TypeError, RecursionError):
        size = -1
    if size < 0:
        raise InvalidInputError("invalid input: fields: a value is not representable as JSON")
    if size > MAX_RECORD_JSON:
        raise InvalidInputError("invalid input: the fields exceed 4 MiB")
    return data


def _check_subject(subject: object) -> SubjectId:
    from mizaic_processor.models import HospitalNumber, NHSNumber

    if not isinstance(subject, NHSNumber | HospitalNumber):
        raise InvalidInputError("invalid input: subject must be an NHSNumber or HospitalNumber")
    return subject


def _skid_bytes(skid: str) -> bytes:
    import base64

    return base64.b32decode(skid.upper() + "======")


def _check_etag(etag: object) -> str:
    if not isinstance(etag, str) or not etag or len(etag) > 128 or not etag.isprintable():
        raise InvalidInputError("invalid etag")
    return etag


class Processor:
    """Entry point: connects to Blob Storage in a UK region and hands out controller scopes.

    :param account_url: the storage account's blob endpoint.
    :param credential: an azure-identity credential (e.g. ``DefaultAzureCredential()``).
    :param region: ``"uksouth"`` or ``"ukwest"``: where the storage account is. Anything
        else raises :class:`~mizaic_processor.errors.ResidencyError` before any I/O.
    :param keyring: where controllers' key-encryption keys live.
    :param retry_total: retries of the Azure SDK's exponential retry on transient faults.
    :param retry_backoff: back-off base in seconds: retry ``n`` waits about
        ``retry_backoff + 2**n`` seconds, jittered by one second.
    :param key_cache_ttl: seconds an unwrapped key stays cached in this process.
    :param chunk_size: plaintext bytes per encrypted content chunk.
    :raises ResidencyError: if the region is not a UK region.
    :raises InvalidInputError: if an option is out of range.
    """

    def __init__(
        self,
        account_url: str,
        credential: Any = None,
        *,
        region: str,
        keyring: Keyring,
        retry_total: int = 5,
        retry_backoff: float = 0.5,
        key_cache_ttl: float = 300.0,
        chunk_size: int = envelope.DEFAULT_CHUNK_SIZE,
        clock: Clock = _utcnow,
        _store: BlobStore | None = None,
    ) -> None:
        self._region = check_region(region)
        self._check_options(keyring, retry_total, key_cache_ttl, chunk_size, retry_backoff)
        if _store is None:
            if credential is None:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            _store = BlobStore.from_url(
                account_url, credential, retry_total=retry_total, retry_backoff=retry_backoff
            )
            self._queue_source = (account_url, credential)  # subject requests (issue 4)
        self._store = _store
        self._keyring = keyring
        self._ttl = key_cache_ttl
        self._chunk_size = chunk_size
        self._clock = clock
        self._registry = _store.container(ids.REGISTRY_CONTAINER)
        self._controllers: dict[str, Controller] = {}
        self._keys: dict[str, ControllerKeys] = {}
        self._writers: dict[str, AuditWriter] = {}
        self._alarms: dict[str, dt.datetime] = {}
        self._states: dict[str, tuple[ControllerDocs, Ledger, InstructionBook]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _check_options(
        keyring: object, retry_total: object, key_cache_ttl: object, chunk_size: object,
        retry_backoff: object = 0.5,
    ) -> None:
        if not all(hasattr(keyring, m) for m in ("create_key", "wrap_key", "unwrap_key")):
            raise InvalidInputError("keyring must implement the Keyring protocol")
        if not isinstance(retry_total, int) or not 0 <= retry_total <= 20:
            raise InvalidInputError("retry_total must be 0..20")
        if not isinstance(retry_backoff, int | float) or not 0 <= retry_backoff <= 60:
            raise InvalidInputError("retry_backoff must be 0..60 seconds")
        if not isinstance(key_cache_ttl, int | float) or not 0 < key_cache_ttl <= MAX_KEY_CACHE_TTL:
            raise InvalidInputError("key_cache_ttl must be in (0, 3600] seconds")
        if not isinstance(chunk_size, int) or not (
            envelope.MIN_CHUNK_SIZE <= chunk_size <= envelope.MAX_CHUNK_SIZE
        ):
            raise InvalidInputError("chunk_size out of range")

    @classmethod
    def from_connection_string(
        cls,
        conn_str: str,
        *,
        region: str,
        keyring: Keyring,
        retry_total: int = 5,
        retry_backoff: float = 0.5,
        key_cache_ttl: float = 300.0,
        chunk_size: int = envelope.DEFAULT_CHUNK_SIZE,
        clock: Clock = _utcnow,
    ) -> Processor:
        """Connect with a storage connection string (Azurite, development).

        :raises ResidencyError: if the region is not a UK region.
        :raises InvalidInputError: if an option is out of range.
        :raises StorageError: if the connection string is malformed.
        """
        check_region(region)
        cls._check_options(keyring, retry_total, key_cache_ttl, chunk_size, retry_backoff)
        if not isinstance(conn_str, str) or not conn_str:
            raise InvalidInputError("a connection string is required")
        store = BlobStore.from_connection_string(
            conn_str, retry_total=retry_total, retry_backoff=retry_backoff
        )
        processor = cls(
            "", None, region=region, keyring=keyring, retry_total=retry_total,
            retry_backoff=retry_backoff, key_cache_ttl=key_cache_ttl, chunk_size=chunk_size,
            clock=clock, _store=store,
        )
        processor._queue_source = conn_str  # subject requests (issue 4): Queue Storage
        return processor

    @classmethod
    def from_settings(cls, settings: Any = None) -> Processor:
        """Build a processor from ``MIZAIC_*`` environment variables.

        See :class:`~mizaic_processor.Settings` for the variables.

        :raises ConfigurationError: if the settings are incomplete or inconsistent.
        :raises ResidencyError: if the region is not a UK region.
        """
        from mizaic_processor.settings import Settings

        if settings is None:
            settings = Settings.load()
        if not isinstance(settings, Settings):
            raise InvalidInputError("settings must be a Settings instance")
        keyring = settings.build_keyring()
        common: dict[str, Any] = {
            "region": settings.region,
            "keyring": keyring,
            "retry_total": settings.retry_total,
            "retry_backoff": settings.retry_backoff,
            "key_cache_ttl": settings.key_cache_ttl,
        }
        if settings.connection_string is not None:
            return cls.from_connection_string(
                settings.connection_string.get_secret_value(), **common
            )
        if settings.account_url is None:
            raise ConfigurationError(
                "set MIZAIC_CONNECTION_STRING or MIZAIC_ACCOUNT_URL"
            )
        return cls(settings.account_url, None, **common)

    def __repr__(self) -> str:
        return f"Processor(account={self._store.account_name!r}, region={self._region!r})"

    # -- subject requests (issue 4): the hooks requests.py needs, nothing else ------------
    # How to reach Queue Storage of the same account: a connection string, or the blob
    # endpoint and credential (the queue endpoint is derived from it).
    _queue_source: str | tuple[str, Any] | None = None
    _request_desk: RequestDesk | None = None

    @property
    def requests(self) -> RequestDesk:
        """Subject requests at the processor: intake, triage, routes, the delivery pump,
        reminders and breach notices (see :class:`~mizaic_processor.RequestDesk`)."""
        from mizaic_processor.requests import RequestDesk

        with self._lock:
            if self._request_desk is None:
                self._request_desk = RequestDesk(self)
            return self._request_desk

    def __enter__(self) -> Processor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Commit and seal pending audit events, then close the connection pool."""
        with self._lock:
            writers = list(self._writers.values())
            self._writers.clear()
        for writer in writers:
            writer.close()
        self._store.close()

    @property
    def region(self) -> Region:
        """The UK region the storage account is in."""
        return self._region

    @property
    def request_count(self) -> int:
        """HTTP requests sent to Blob Storage so far (retries and pages included)."""
        return self._store.requests.count

    # -- controllers ---------------------------------------------------------------------

    def register_controller(
        self, controller_id: str, *, name: str, actor: Actor, region: str | None = None
    ) -> Controller:
        """Register a Data Controller: its container, its KEK and its controller keys.

        Idempotent: registering an existing controller returns it unchanged.

        :param controller_id: 2-40 lower-case letters, digits and single hyphens (an ODS
            code such as ``rj1`` fits).
        :param name: the controller's name (an organisation, not a patient).
        :param actor: a ``processor_operator``.
        :param region: the controller's region: it must be the processor's (the
            storage account's) region; the processor's when omitted.
        :raises ResidencyError: if the region is not ``uksouth`` or ``ukwest``, or is not
            the region of this processor's storage account.
        :raises InvalidInputError: if the id or name is malformed.
        :raises AccessDeniedError: if the actor is not a ``processor_operator``.
        """
        chosen = check_region(region if region is not None else self._region)
        if chosen != self._region:
            raise ResidencyError(
                "this processor's storage account is in " + self._region
                + "; a controller in another UK region needs a processor for that account"
            )
        cid = ids.controller_id(controller_id)
        if not isinstance(name, str) or not 0 < len(name.strip()) <= 200 or not name.isprintable():
            raise InvalidInputError("invalid controller name")
        if not isinstance(actor, Actor) or actor.role is not Role.PROCESSOR_OPERATOR:
            raise AccessDeniedError("only a processor_operator registers controllers")
        try:
            return self.get_controller(cid)
        except NotFoundError:
            pass
        self._registry.create()
        container = self._store.container(ids.container_name(cid))
        container.create()
        now = self._clock()
        kek_name = f"mizaic-{cid}"
        try:
            kek_id = self._keyring.create_key(kek_name)
        except MizaicError:
            kek_id = self._keyring.rotate_key(kek_name)
        ControllerKeys.initialise(cid, container, self._keyring, kek_id, now.isoformat())
        controller = Controller(
            controller_id=cid,
            name=name.strip(),
            region=chosen,
            container=container.name,
            created_at=now,
            created_by=actor.id,
        )
        self._audit_writer(controller).submit(
            _event(actor, "controller.register", "C", f"controller:{cid}", "HSYSADMIN",
                   at=now)
        ).wait()
        try:
            self._registry.put(
                f"controllers/{cid}.json",
                controller.model_dump_json().encode(),
                what="controller registration",
            )
        except ConflictError:
            return self.get_controller(cid)
        with self._lock:
            self._controllers[cid] = controller
        return controller

    def get_controller(self, controller_id: str) -> Controller:
        """The registration of ``controller_id``.

        :raises InvalidInputError: if the id is malformed.
        :raises NotFoundError: if no such controller is registered.
        """
        cid = ids.controller_id(controller_id)
        with self._lock:
            cached = self._controllers.get(cid)
        if cached is not None:
            return cached
        stored = self._registry.get(f"controllers/{cid}.json", what="controller")
        try:
            controller = Controller.model_validate_json(stored.data)
        except ValidationError:
            raise IntegrityError("stored data failed integrity verification") from None
        if controller.controller_id != cid:
            raise IntegrityError("stored data failed integrity verification")
        with self._lock:
            self._controllers[cid] = controller
        return controller

    def list_controllers(self) -> Iterator[Controller]:
        """Every registered controller."""
        if not self._registry.exists():
            return
        for name in self._registry.list_names("controllers/"):
            yield self.get_controller(name.removeprefix("controllers/").removesuffix(".json"))

    def _controller_keys(self, controller: Controller) -> ControllerKeys:
        with self._lock:
            keys = self._keys.get(controller.controller_id)
            if keys is None:
                keys = ControllerKeys(
                    controller.controller_id,
                    self._store.container(controller.container),
                    self._keyring,
                    ttl=self._ttl,
                )
                self._keys[controller.controller_id] = keys
            return keys

    def _state(self, controller: Controller) -> tuple[ControllerDocs, Ledger, InstructionBook]:
        keys = self._controller_keys(controller)
        with self._lock:
            state = self._states.get(controller.controller_id)
            if state is None:
                docs = ControllerDocs(
                    self._store.container(controller.container), controller.controller_id,
                    keys.data_key,
                )
                state = (docs, Ledger(docs), InstructionBook(docs))
                self._states[controller.controller_id] = state
            return state

    def _audit_writer(self, controller: Controller) -> AuditWriter:
        keys = self._controller_keys(controller)
        with self._lock:
            writer = self._writers.get(controller.controller_id)
            if writer is None or writer.pid != os.getpid():
                writer = AuditWriter(
                    self._store.container(controller.container),
                    audit_key=keys.audit_key,
                    clock=self._clock,
                    on_checkpoint=lambda doc: self._deliver_checkpoint(controller, doc),
                )
                self._writers[controller.controller_id] = writer
            return writer

    def disclose_required_by_law(
        self,
        controller_id: str,
        subject: SubjectId,
        destination: IO[bytes],
        *,
        actor: Actor,
        legal_basis: str,
        requesting_authority: str,
        reference: str,
        controller_notified: bool = True,
        withheld_reason: str | None = None,
    ) -> Disclosure:
        """The one path by which patient data leaves for anyone but the controller: a
        disclosure the law requires of the processor (a court order, a statutory demand).

        It is recorded before any data is written (legal basis, requesting authority,
        reference, who and when: sealed in the controller's container), audited, and
        the controller is notified through its route, unless ``controller_notified`` is
        ``False`` with the ``withheld_reason`` the law gives for not telling them.
        Writes the same archive as :meth:`ControllerScope.export_subject`.

        :param actor: a ``processor_operator`` acting on Mizaic's legal obligation.
        :raises InvalidInputError: if the basis, authority or reference is missing, or
            notification is withheld without a reason (before any I/O).
        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises NotFoundError: if the controller or subject does not exist.
        """
        if not isinstance(actor, Actor) or actor.role is not Role.PROCESSOR_OPERATOR:
            raise AccessDeniedError("only a processor_operator records a legal disclosure")
        subject = _check_subject(subject)
        if not callable(getattr(destination, "write", None)):
            raise InvalidInputError("destination must be a writable binary stream")
        basis = check_note(legal_basis, "legal basis", required=True) or ""
        authority = check_note(requesting_authority, "requesting authority", required=True) or ""
        ref = check_note(reference, "reference", required=True) or ""
        if not isinstance(controller_notified, bool):
            raise InvalidInputError("controller_notified must be True or False")
        withheld = check_note(withheld_reason, "withheld reason",
                              required=not controller_notified)
        scope = self.tenant(controller_id, actor=actor, purpose="HLEGAL")
        cid = scope.controller_id

        def notify(disclosure_id: str) -> None:
            from mizaic_processor import _routing

            now = self._clock()
            note = _routing.notification(
                "disclosure.made", _routing.delivery_id(cid, "disclosure", disclosure_id),
                cid, now, disclosure_id=disclosure_id,
            )
            _routing.enqueue(scope._docs, note, at=now)

        return scope._audited(
            "subject.disclose", "E", f"controller:{cid}",
            lambda: _subject_ops.disclose_required_by_law(
                scope, subject, destination, legal_basis=basis,
                requesting_authority=authority, reference=ref,
                controller_notified=controller_notified, withheld_reason=withheld,
                notify=notify,
            ),
            write=True,
        )

    def _deliver_checkpoint(self, controller: Controller, checkpoint: dict[str, Any]) -> None:
        """Queue a sealed checkpoint for the controller (its outbox, delivered by the
        pump through its route), so the controller holds a trust root outside storage
        the processor writes to."""
        from mizaic_processor import _routing

        body = checkpoint["body"]
        cid = controller.controller_id
        now = self._clock()
        docs, _ledger, _book = self._state(controller)
        note = _routing.notification(
            "audit.checkpoint",
            _routing.delivery_id(cid, "checkpoint", str(body["chain"]), str(body["seq"])),
            cid, now, checkpoint=checkpoint,
        )
        _routing.enqueue(docs, note, at=now)

    def _integrity_alarm(self, controller_id: str, operation: str) -> None:
        """Raise a breach notice to the controller when stored data fails verification
        (at most one per controller per hour from this process). Best effort: the
        failing operation raises its own error whatever happens here."""
        now = self._clock()
        with self._lock:
            last = self._alarms.get(controller_id)
            if last is not None and (now - last).total_seconds() < 3600:
                return
            self._alarms[controller_id] = now
        try:
            self.requests.report_breach(
                controller_id,
                nature="stored data failed integrity verification (automatic notice from "
                       f"mizaic_processor during {operation}); it may have been altered "
                       "or corrupted in storage",
                categories=["health"],
                subjects_approx=1,
                records_approx=1,
                consequences="the affected operation was refused; data may have been "
                             "altered by someone with access to storage",
                measures="the operation was refused and the failure recorded in the "
                         "audit trail; Mizaic is investigating",
                detected_at=now,
                actor=Actor.processor_operator("mizaic-integrity-monitor"),
            )
        except MizaicError:
            logger.exception("the automatic integrity breach notice could not be raised")

    def tenant(
        self, controller_id: str, *, actor: Actor, purpose: str | None = None
    ) -> ControllerScope:
        """A scope that can only ever touch ``controller_id``'s data, acting as ``actor``.

        :param purpose: the HL7 v3 ActReason code recorded with every audit event
            (``TREAT``, ``HOPERAT``, ...); by default ``TREAT`` for a service,
            ``HOPERAT`` for a controller admin.
        :raises InvalidInputError: if the id or purpose is malformed or ``actor`` is not
            an Actor.
        :raises NotFoundError: if no such controller is registered.
        """
        if not isinstance(actor, Actor):
            raise InvalidInputError("actor must be an Actor")
        if purpose is None:
            purpose = _DEFAULT_PURPOSE[actor.role]
        elif not isinstance(purpose, str) or _PURPOSE.fullmatch(purpose) is None:
            raise InvalidInputError("invalid purpose code")
        controller = self.get_controller(controller_id)
        docs, ledger, instructions = self._state(controller)
        return ControllerScope(
            controller=controller,
            actor=actor,
            purpose=purpose,
            container=self._store.container(controller.container),
            keys=self._controller_keys(controller),
            audit=self._audit_writer(controller),
            docs=docs,
            ledger=ledger,
            instructions=instructions,
            keyring=self._keyring,
            key_cache_ttl=self._ttl,
            integrity_alarm=self._integrity_alarm,
            chunk_size=self._chunk_size,
            clock=self._clock,
        )


def _event(
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


class ControllerScope:
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
        audit: AuditWriter,
        docs: ControllerDocs,
        ledger: Ledger,
        instructions: InstructionBook,
        keyring: Keyring,
        key_cache_ttl: float,
        integrity_alarm: Callable[[str, str], None],
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
        self._writer = audit
        self._container = container
        self._keys = keys
        self._chunk_size = chunk_size
        self._clock = clock
        self._random = random_bytes

    def __repr__(self) -> str:
        return (
            f"ControllerScope(controller={self.controller_id!r}, actor={self._actor.id!r}, "
            f"role={self._actor.role.value!r})"
        )

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
        event = _event(
            self._actor, op, action, entity, self._purpose, outcome=outcome, policy=policy,
            ref=ref, at=self._clock(),
        )
        return event["id"], self._writer.submit(event)

    def _audited(
        self, op: str, action: str, entity: str, run: Callable[[], T], *,
        write: bool, policy: str | None = None,
    ) -> T:
        """Run ``run`` as one audited operation.

        A change (``write``) runs only after its event is durable: if the event cannot
        be recorded, nothing is changed. A read is issued while its event is being
        committed, and its result is handed out only once the event is durable. If the
        operation itself fails, a failure event referring to the first follows.
        """
        event_id, ticket = self._emit(op, action, entity, policy=policy)
        if write:
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
        return self._keys.find_subject(_check_subject(subject))

    def _record_keys(self, key: SubjectKey, record_id: str) -> envelope.RecordKeys:
        return envelope.derive_record_keys(
            key.key,
            skid=key.skid_bytes,
            key_version=key.version,
            controller_id=self.controller_id,
            record_id=record_id,
        )

    def _nonce(self) -> bytes:
        return self._random(envelope.NONCE_BYTES)

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
        subject = _check_subject(subject)
        data = _validate_input(category, fields or {}, events or {})
        content_type = check_content(content, content_type)
        skid = self._keys.find_subject(subject)
        proposed = skid is None
        if skid is None:
            skid = ids.b32(self._random(16))
        suffix = self._random(16)
        record_id = ids.make_record_id(_skid_bytes(skid), suffix)

        def run() -> RecordRef:
            key = (
                self._keys.subject_for_write(subject, proposed_skid=skid)
                if proposed else self._keys.subject_key(skid)
            )
            rid = record_id
            if key.skid != skid:  # lost a race to create the subject: use the winner's key
                rid = ids.make_record_id(key.skid_bytes, suffix)
                self._emit("record.create", "C", rid)[1].wait()
            now = self._clock()
            return self._write(
                key,
                rid,
                category=data.category,
                version=1,
                field_envelopes=record_doc.encrypt_fields(
                    self._record_keys(key, rid), data.fields,
                    controller_id=self.controller_id, record_id=rid, nonce=self._nonce,
                ),
                meta={
                    "subject": {"kind": subject.kind, "value": subject.value},
                    "names": sorted(data.fields),
                    "events": {k: v.isoformat() for k, v in data.events.items()},
                    "created_at": now.isoformat(),
                    "updated_at": now.isoformat(),
                },
                content=content,
                content_type=content_type,
                etag=None,
            )

        return self._audited("record.create", "C", record_id, run, write=True)

    def _write(
        self,
        key: SubjectKey,
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
    ) -> RecordRef:
        keys = self._record_keys(key, record_id)
        if content is not None and content_type is not None:
            content_id = ids.b32(self._random(16))
            try:
                meta["content"] = self._upload_content(keys, record_id, content_id, content,
                                                       content_type)
            except BaseException:
                # a failed upload may still have committed the blob (a retried commit)
                with contextlib.suppress(MizaicError):
                    self._container.delete(
                        self._content_blob(record_id, content_id), what="content"
                    )
                raise
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
                # the record write lost (stale etag, failure): the new content it
                # would have pointed at must not be left behind
                with contextlib.suppress(MizaicError):
                    self._container.delete(
                        self._content_blob(record_id, content_id), what="content"
                    )
            raise
        return RecordRef(record_id=record_id, etag=new_etag, version=version)

    def _upload_content(
        self,
        keys: envelope.RecordKeys,
        record_id: str,
        content_id: str,
        content: bytes | IO[bytes],
        content_type: str,
    ) -> dict[str, Any]:
        encryptor = envelope.ContentEncryptor(
            keys,
            controller_id=self.controller_id,
            record_id=record_id,
            salt=self._random(envelope.SALT_BYTES),
            chunk_size=self._chunk_size,
        )
        reader = EncryptingReader(encryptor, content, self._chunk_size)
        self._container.put_stream(
            self._content_blob(record_id, content_id),
            reader,
            length=reader.encrypted_length,
            what="content",
        )
        return {
            "type": content_type,
            "length": encryptor.plaintext_length,
            "sha256": encryptor.plaintext_sha256.hex(),
        }

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
        etag = _check_etag(etag)
        if isinstance(remove_fields, str) or not isinstance(remove_fields, Sequence):
            raise InvalidInputError("remove_fields must be a sequence of field names")
        removed = [ids.field_name(n) for n in remove_fields]
        data = _validate_input("x", fields or {}, events or {})
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
        data: _RecordInput,
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
            (set(self._all_field_names(keys, doc, meta)) - set(removed)) | set(data.fields)
        )
        merged_events = dict(meta.get("events", {}))
        merged_events.update({k: v.isoformat() for k, v in data.events.items()})
        meta["events"] = merged_events
        meta["updated_at"] = self._clock().isoformat()
        old_content = doc.content_id
        ref = self._write(
            key, record_id, category=doc.category, version=doc.version + 1,
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

    def _get(self, record_id: str, wanted: list[str] | None) -> Record:
        key, doc, etag = self._load(record_id)
        keys = self._record_keys(key, record_id)
        meta = record_doc.decrypt_meta(
            keys, doc, controller_id=self.controller_id, record_id=record_id
        )
        listed = self._all_field_names(keys, doc, meta)
        names = wanted if wanted is not None else listed
        values = record_doc.decrypt_fields(
            keys, doc, names, controller_id=self.controller_id, record_id=record_id,
            present=frozenset(listed),
        )
        return self._to_record(record_id, doc, meta, values, etag)

    def _all_field_names(
        self, keys: envelope.RecordKeys, doc: record_doc.RecordDoc, meta: dict[str, Any]
    ) -> list[str]:
        names = meta.get("names")
        if not isinstance(names, list):
            raise IntegrityError("stored data failed integrity verification")
        if {envelope.field_tag(keys, str(n)) for n in names} != set(doc.fields):
            raise IntegrityError("stored data failed integrity verification")
        return [str(n) for n in names]

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
        key, doc, _ = self._load(record_id, for_admin=for_admin)
        keys = self._record_keys(key, record_id)
        meta = record_doc.decrypt_meta(
            keys, doc, controller_id=self.controller_id, record_id=record_id
        )
        info = meta.get("content")
        if doc.content_id is None or not isinstance(info, dict):
            raise NotFoundError("record has no content")
        pieces = self._container.open(self._content_blob(record_id, doc.content_id))
        decryptor = envelope.ContentDecryptor(
            keys, controller_id=self.controller_id, record_id=record_id
        )
        return ContentReader(
            pieces, decryptor, expected_length=info.get("length"),
            expected_sha256=info.get("sha256"),
        )

    def list_records(self, subject: SubjectId) -> Iterator[str]:
        """The ids of every record of ``subject``, found through the blind index.

        Costs one index lookup and a listing of that subject's records only, never a
        scan of the controller's data.

        :raises InvalidInputError: if ``subject`` is not a subject identifier.
        :raises AccessDeniedError: if the actor may not read records.
        """
        self._require(_CARE_ROLES, "find records")
        subject = _check_subject(subject)
        skid = self._keys.find_subject(subject)
        if skid is None:
            self._audited("subject.find", "E", "subject:unknown", lambda: None, write=False)
            return iter(())
        if self._keys.subject_key(skid).restricted:
            self._check_restriction()
        prefix = f"{RECORD_PREFIX}{skid}/"
        names = self._audited(
            "subject.find", "E", f"subject:{skid}",
            lambda: list(self._container.list_names(prefix)), write=False,
        )
        return iter(["r" + skid + name[len(prefix):] for name in names])

    def delete_record(self, record_id: str, *, instruction_id: str) -> DestructionEvidence:
        """Destroy one record on a documented instruction, leaving destruction evidence.

        Idempotent: deleting a destroyed record returns its evidence. When the subject
        has no records left, the subject's key is destroyed too (crypto-shredding).

        :param instruction_id: a ``deletion``, ``erasure`` or ``destruction`` instruction
            from this controller's ledger that covers the record (see
            :meth:`create_instruction`).
        :raises InvalidInputError: if an id is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if the instruction or the record does not exist.
        :raises HoldError: if a hold covers the record.
        """
        self._require(_ADMIN_ROLES, "delete records")
        record_id = ids.record_id(record_id)
        instruction = self._ledger.require(
            instruction_id, _DELETE_ACTIONS, record_id=record_id
        )
        return destroy_record(
            self, record_id, reason=instruction.action, approved_by=instruction.issued_by,
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
        self._require(_ADMIN_ROLES, "record instructions")
        if action not in _INSTRUCTION_ACTIONS:
            raise InvalidInputError("unknown instruction action")
        if isinstance(record_ids, str):
            raise InvalidInputError("record_ids must be a sequence of record ids")
        records = [ids.record_id(r) for r in record_ids]
        skid = None
        if subject is not None:
            skid = self._keys.find_subject(_check_subject(subject))
            if skid is None:
                raise NotFoundError("no records of that subject here")
        check_note(note)
        return self._audited(
            "instruction.create", "C", f"controller:{self.controller_id}",
            lambda: self._ledger.create_instruction(
                action, issued_by=self._actor.id, issued_at=self._clock(),
                subject_ref=skid, record_ids=records, note=note,
            ),
            write=True,
        )

    def get_instruction(self, instruction_id: str) -> Instruction:
        """An instruction from the ledger. ``controller_admin`` only.

        :raises NotFoundError: if there is no such instruction.
        """
        self._require(_ADMIN_ROLES, "read instructions")
        return self._ledger.get_instruction(instruction_id)

    def erase_subject(self, subject: SubjectId, *, instruction_id: str) -> ErasureReport:
        """Erase a subject on the controller's instruction: destroy every record (with
        evidence) and then the subject's key, so surviving copies cannot be decrypted.

        Nothing is destroyed if any hold covers the subject or one of its records.

        :param instruction_id: an ``erasure`` instruction covering the subject.
        :raises HoldError: if a hold applies (report it to the controller).
        :raises NotFoundError: if the subject or instruction does not exist here.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._require(_ADMIN_ROLES, "erase subjects")
        subject = _check_subject(subject)
        return self._audited(
            "subject.erase", "D", f"controller:{self.controller_id}",
            lambda: _subject_ops.erase_subject(self, subject, instruction_id), write=True,
            policy=instruction_id if isinstance(instruction_id, str) else None,
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
        self._require(_ADMIN_ROLES, "restrict processing")
        subject = _check_subject(subject)
        if not isinstance(restricted, bool):
            raise InvalidInputError("restricted must be True or False")
        self._audited(
            "subject.restrict" if restricted else "subject.unrestrict", "U",
            f"controller:{self.controller_id}",
            lambda: _subject_ops.set_restriction(self, subject, restricted, instruction_id),
            write=True, policy=instruction_id if isinstance(instruction_id, str) else None,
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
        self._require(_ADMIN_ROLES, "rectify records")
        record_id = ids.record_id(record_id)
        etag = _check_etag(etag)
        self._ledger.require(instruction_id, frozenset({"rectification"}), record_id=record_id)
        if isinstance(remove_fields, str) or not isinstance(remove_fields, Sequence):
            raise InvalidInputError("remove_fields must be a sequence of field names")
        removed = [ids.field_name(n) for n in remove_fields]
        data = _validate_input("x", fields or {}, events or {})

        def run() -> RecordRef:
            _subject_ops.keep_history(self, record_id)
            return self._update(record_id, etag, removed, data, None, None)

        return self._audited("record.rectify", "U", record_id, run, write=True,
                             policy=instruction_id)

    def list_record_versions(self, record_id: str) -> list[Record]:
        """Earlier versions of a rectified record, oldest first (the current one is
        :meth:`get_record`). ``controller_admin`` only.

        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        """
        self._require(_ADMIN_ROLES, "read record history")
        record_id = ids.record_id(record_id)

        def run() -> list[Record]:
            key = self._keys.subject_key(ids.skid_of_record(record_id))
            keys = self._record_keys(key, record_id)
            out = []
            for _version, data in _subject_ops.history_versions(self, record_id):
                doc = record_doc.decode(data)
                meta = record_doc.decrypt_meta(
                    keys, doc, controller_id=self.controller_id, record_id=record_id
                )
                listed = self._all_field_names(keys, doc, meta)
                values = record_doc.decrypt_fields(
                    keys, doc, listed, controller_id=self.controller_id,
                    record_id=record_id, present=frozenset(listed),
                )
                out.append(self._to_record(record_id, doc, meta, values, ""))
            return out

        return self._audited("record.history", "R", record_id, run, write=False)

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
        self._require(_ADMIN_ROLES, "export subject data")
        subject = _check_subject(subject)
        return self._audited(
            "subject.export", "E", f"controller:{self.controller_id}",
            lambda: _subject_ops.export_subject(self, subject, destination, instruction_id),
            write=True, policy=instruction_id if isinstance(instruction_id, str) else None,
        )

    def _read_for_export(self, record_id: str) -> Record:
        key, doc, etag = self._load(record_id, for_admin=True)
        keys = self._record_keys(key, record_id)
        meta = record_doc.decrypt_meta(
            keys, doc, controller_id=self.controller_id, record_id=record_id
        )
        listed = self._all_field_names(keys, doc, meta)
        values = record_doc.decrypt_fields(
            keys, doc, listed, controller_id=self.controller_id, record_id=record_id,
            present=frozenset(listed),
        )
        return self._to_record(record_id, doc, meta, values, etag)

    def _open_for_export(self, record_id: str) -> ContentReader:
        return self._open(record_id, for_admin=True)

    def _record_category(self, record_id: str) -> str | None:
        try:
            stored = self._container.get(self._record_blob(record_id), what="record")
        except NotFoundError:
            return None
        return record_doc.decode(stored.data).category

    @property
    def keys(self) -> KeyRotation:
        """Key rotation for this controller (see :class:`~mizaic_processor.keys.KeyRotation`)."""
        return KeyRotation(self)

    @property
    def retention(self) -> Retention:
        """Retention instructions, holds, appraisal and destruction (see
        :class:`~mizaic_processor.retention.Retention`)."""
        return Retention(self)

    def _record_category_and_events(
        self, record_id: str
    ) -> tuple[str, dict[str, dt.date]] | None:
        """A record's category and dated events (decrypts the meta only), or None."""
        try:
            key, doc, _ = self._load(record_id, for_admin=True)
        except NotFoundError:
            return None
        meta = record_doc.decrypt_meta(
            self._record_keys(key, record_id), doc, controller_id=self.controller_id,
            record_id=record_id,
        )
        try:
            events = {k: dt.date.fromisoformat(v) for k, v in meta["events"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise IntegrityError("stored data failed integrity verification") from None
        return doc.category, events

    def _record_events(self, record_id: str) -> dict[str, dt.date] | None:
        loaded = self._record_category_and_events(record_id)
        return None if loaded is None else loaded[1]

    def subject_exists(self, subject: SubjectId) -> bool:
        """Whether ``subject`` has a key (and so possibly records) in this controller.

        :raises AccessDeniedError: if the actor may not read records.
        """
        self._require(_CARE_ROLES, "find records")
        subject = _check_subject(subject)
        found = self._keys.find_subject(subject)
        entity = f"subject:{found}" if found else "subject:unknown"
        self._audited("subject.find", "E", entity, lambda: None, write=False)
        return found is not None
