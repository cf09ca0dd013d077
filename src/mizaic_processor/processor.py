"""The imperative shell's entry point: :class:`Processor`.

Connects to Blob Storage in a UK region, registers controllers and hands out controller
scopes (:class:`~mizaic_processor.ControllerScope`). Loads through the adapters, calls
the pure core, writes through the adapters; every input is validated before the first
request to Azure.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from pydantic import ValidationError

from mizaic_processor import _subject_ops
from mizaic_processor._audit_writer import AuditWriter
from mizaic_processor._azure.blob import BlobStore
from mizaic_processor._core import envelope, ids
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._keystore import ControllerKeys
from mizaic_processor._ledger import Ledger, check_note
from mizaic_processor._scope import (
    _DEFAULT_PURPOSE,
    _PURPOSE,
    CONTENT_PREFIX,
    RECORD_PREFIX,
    Clock,
    ControllerScope,
    _utcnow,
    make_event,
)
from mizaic_processor._subject_ops import Disclosure
from mizaic_processor._validation import (
    check_destination,
    check_subject,
    real_number,
    whole_number,
)
from mizaic_processor.errors import (
    AccessDeniedError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    MizaicError,
    NotFoundError,
    ResidencyError,
)
from mizaic_processor.keyring import Keyring
from mizaic_processor.keys import MAX_KEY_CACHE_TTL
from mizaic_processor.models import (
    Actor,
    Controller,
    Region,
    Role,
    SubjectId,
    check_region,
)
from mizaic_processor.retention import InstructionBook

if TYPE_CHECKING:  # subject requests (issue 4)
    from mizaic_processor.requests import RequestDesk

__all__ = ["CONTENT_PREFIX", "RECORD_PREFIX", "ControllerScope", "Processor"]

logger = logging.getLogger("mizaic_processor")


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
        if not callable(clock):
            raise InvalidInputError("clock must be a callable returning an aware datetime")
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
        whole_number(retry_total, 0, 20, "retry_total must be 0..20")
        real_number(retry_backoff, 0, 60, "retry_backoff must be 0..60 seconds")
        real_number(key_cache_ttl, 0, MAX_KEY_CACHE_TTL,
                    "key_cache_ttl must be in (0, 3600] seconds", above_low=True)
        whole_number(chunk_size, envelope.MIN_CHUNK_SIZE, envelope.MAX_CHUNK_SIZE,
                     "chunk_size out of range")

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
            make_event(actor, "controller.register", "C", f"controller:{cid}", "HSYSADMIN",
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
        reference, who and when: sealed), audited, and the controller is notified
        through its route. When ``controller_notified`` is ``False`` (with the
        ``withheld_reason`` the law gives for not telling them), the record and the
        audit event are kept in the processor's own registry and trail instead, so
        nothing in the controller's container reveals the disclosure.
        Writes the same archive as :meth:`ControllerScope.export_subject`.

        :param actor: a ``processor_operator`` acting on Mizaic's legal obligation.
        :raises InvalidInputError: if the basis, authority or reference is missing, or
            notification is withheld without a reason (before any I/O).
        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises NotFoundError: if the controller or subject does not exist.
        """
        if not isinstance(actor, Actor) or actor.role is not Role.PROCESSOR_OPERATOR:
            raise AccessDeniedError("only a processor_operator records a legal disclosure")
        subject = check_subject(subject)
        destination = check_destination(destination)
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

        def run(record_in: ControllerDocs, prefix: str) -> Disclosure:
            return _subject_ops.disclose_required_by_law(
                scope, subject, destination, legal_basis=basis,
                requesting_authority=authority, reference=ref,
                controller_notified=controller_notified, withheld_reason=withheld,
                notify=notify, record_in=record_in, record_prefix=prefix,
            )

        if controller_notified:
            return scope._audited(
                "subject.disclose", "E", f"controller:{cid}",
                lambda: run(scope._docs, "disclosures/"), write=True,
            )
        # The law forbids telling the controller: the record and the audit event go to
        # the processor's own registry, never into the controller's container or trail.
        registry_docs, _writer = self.requests._triage_docs()
        return self.requests._triage_audited(
            actor, "subject.disclose", "E", f"controller:{cid}",
            lambda: run(registry_docs, f"disclosures/{cid}/"),
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
            _routing.delivery_id(cid, "checkpoint", str(body["chain"]), str(body["seq"]),
                                 "final" if body.get("final") else "open"),
            cid, now, checkpoint=checkpoint,
        )
        _routing.enqueue(docs, note, at=now)

    def _integrity_alarm(
        self, controller_id: str, operation: str, consequences: str | None = None
    ) -> None:
        """Raise a breach notice to the controller when stored data fails verification
        (at most one per controller per hour from this process). Best effort: the
        failing operation raises its own error whatever happens here.

        :param consequences: what the finding meant, when it is not that the operation
            was refused (a check that repairs and reports).
        """
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
                consequences=consequences or (
                    "the affected operation was refused; data may have been altered by "
                    "someone with access to storage"
                ),
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
            audit=lambda: self._audit_writer(controller),
            docs=docs,
            ledger=ledger,
            instructions=instructions,
            keyring=self._keyring,
            key_cache_ttl=self._ttl,
            integrity_alarm=self._integrity_alarm,
            chunk_size=self._chunk_size,
            clock=self._clock,
        )
