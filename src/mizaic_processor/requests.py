"""Subject requests: intake, routing to the Data Controller, the clock and the lifecycle.

A request that reaches Mizaic is never answered by Mizaic (DESIGN.md §6). It is stored
durably, forwarded to its controller at once through the controller's route, tracked
against the statutory clock, and acted on only on the controller's instruction.

* :class:`RequestDesk` (``processor.requests``) is the processor's side, for a
  ``processor_operator``: :meth:`~RequestDesk.receive`, triage of requests naming no
  registered controller, routes, the delivery pump, reminders and breach notices.
* :class:`ControllerRequests` (``scope.requests``) is the controller's side, for its
  ``controller_admin`` only: list, read, acknowledge, pause and resume the clock, extend,
  instruct, complete or refuse.

What is forwarded is an opaque notification (ids, kind, dates, event type, delivery id);
the controller reads the subject identifier, contact details and text through its own
scope with :meth:`ControllerRequests.get`. Nothing else returns them.
"""

from __future__ import annotations

import builtins
import datetime as dt
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from mizaic_processor import _breach
from mizaic_processor._audit_writer import AuditWriter
from mizaic_processor._azure.queue import QueueService, queue_endpoint
from mizaic_processor._core import ids
from mizaic_processor._core.deadlines import WaitingFor, uk_day
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._keystore import ControllerKeys
from mizaic_processor._request_models import (
    BreachNotice,
    BreachRef,
    Channel,
    ContactDetails,
    DeliveryInfo,
    DeliveryReport,
    QueueRoute,
    Receipt,
    RequestDetails,
    RequestKind,
    RequestStatus,
    RequestSummary,
    Route,
    RouteInfo,
    TriagedRequest,
    WebhookRoute,
    _BreachInput,
    _Intake,
)
from mizaic_processor._request_store import (
    TRIAGE_PREFIX,
    RequestBook,
    RequestState,
    details,
    new_request,
    status_for_clock,
    summarise,
)
from mizaic_processor._routing import (
    Deliverer,
    delivery_id,
    enqueue,
    load_route,
    notification,
    pending,
    store_route,
)
from mizaic_processor._webhook import verify_webhook
from mizaic_processor.errors import (
    AccessDeniedError,
    ConfigurationError,
    ConflictError,
    InvalidInputError,
    MizaicError,
    NotFoundError,
)
from mizaic_processor.models import Actor, Role, describe_validation_error

if TYPE_CHECKING:
    from mizaic_processor.processor import ControllerScope, Processor

__all__ = [
    "BreachNotice",
    "BreachRef",
    "Channel",
    "ContactDetails",
    "ControllerRequests",
    "DeliveryInfo",
    "DeliveryReport",
    "QueueRoute",
    "Receipt",
    "RequestDesk",
    "RequestDetails",
    "RequestKind",
    "RequestStatus",
    "RequestSummary",
    "RouteInfo",
    "TriagedRequest",
    "WaitingFor",
    "WebhookRoute",
    "verify_webhook",
]

DELIVERY_ACTOR = "mizaic-delivery"
"""The actor id recorded for deliveries and reminders the library makes on its own."""

TRIAGE_ID = "triage"
TRIAGE_KEK = "mizaic--triage"  # a double hyphen: never the KEK name of a controller
_TRIAGE_WRITER = "~triage"  # never a controller id
_FUTURE_SKEW = dt.timedelta(minutes=10)
_ADMIN = frozenset({Role.CONTROLLER_ADMIN})
_NO_DATA_ACTION = frozenset({RequestKind.OBJECTION, RequestKind.COMPLAINT})
_ROUTE: TypeAdapter[QueueRoute | WebhookRoute] = TypeAdapter(Route)

_M = TypeVar("_M", bound=BaseModel)
_T = TypeVar("_T")


def _validated(model: type[_M], values: dict[str, Any]) -> _M:
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


def _route(route: object) -> QueueRoute | WebhookRoute:
    if isinstance(route, QueueRoute | WebhookRoute):
        return route
    if not isinstance(route, Mapping):
        raise InvalidInputError("route must be a QueueRoute or a WebhookRoute")
    try:
        return _ROUTE.validate_python(dict(route))
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


def _operator(actor: object, what: str) -> Actor:
    if not isinstance(actor, Actor):
        raise InvalidInputError("actor must be an Actor")
    if actor.role is not Role.PROCESSOR_OPERATOR:
        raise AccessDeniedError(f"only a processor_operator may {what}")
    return actor


def _text(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str) or not 0 < len(value.strip()) <= limit:
        raise InvalidInputError(f"{what} must be 1 to {limit} characters")
    return value.strip()


def _docs_of(scope: ControllerScope) -> ControllerDocs:
    return ControllerDocs(scope._container, scope.controller_id, scope._keys.data_key)


def _queues_of(processor: Processor) -> Callable[[], QueueService]:
    source = processor._queue_source

    def build() -> QueueService:
        if isinstance(source, str):
            return QueueService.from_connection_string(source)
        if source is None:
            raise ConfigurationError("this processor has no Queue Storage endpoint")
        blob_url, credential = source
        return QueueService.from_url(queue_endpoint(blob_url), credential)

    return build


def _request_note(state: RequestState, event: str, *, at: dt.datetime, key: str) -> dict[str, Any]:
    cid = state.public.controller_id or ""
    summary = summarise(state, uk_day(at))
    return notification(
        event, delivery_id(cid, state.request_id, key), cid, at,
        request_id=state.request_id, kind=state.kind.value,
        received_on=state.public.received_on.isoformat(),
        due_on=summary.due_on.isoformat() if summary.due_on else None,
    )


class RequestDesk:
    """The processor's side of subject requests. Obtain it as ``processor.requests``.

    Every method is for a ``processor_operator`` (the pump and reminders default to the
    library's own delivery actor) and never returns a subject identifier, contact
    details or request text.
    """

    def __init__(self, processor: Processor) -> None:
        self._p = processor
        self._lock = threading.Lock()
        self._triage: tuple[ControllerDocs, AuditWriter] | None = None

    def __repr__(self) -> str:
        return f"RequestDesk({self._p!r})"

    # -- helpers -------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return self._p._clock()

    def _known_controller(self, named: str) -> str | None:
        try:
            return self._p.get_controller(named).controller_id
        except (InvalidInputError, NotFoundError):
            return None

    def _triage_docs(self) -> tuple[ControllerDocs, AuditWriter]:
        with self._lock:
            if self._triage is not None:
                return self._triage
            p = self._p
            registry = p._registry
            keys = ControllerKeys(TRIAGE_ID, registry, p._keyring, ttl=p._ttl)
            try:
                keys.data_key()
            except NotFoundError:
                registry.create()
                try:
                    kek = p._keyring.create_key(TRIAGE_KEK)
                except MizaicError:
                    kek = p._keyring.rotate_key(TRIAGE_KEK)
                ControllerKeys.initialise(TRIAGE_ID, registry, p._keyring, kek,
                                          self._now().isoformat())
            writer = AuditWriter(registry, audit_key=keys.audit_key, clock=p._clock)
            with p._lock:  # Processor.close() seals and closes it with the others
                p._writers[_TRIAGE_WRITER] = writer
            self._triage = (ControllerDocs(registry, TRIAGE_ID, keys.data_key), writer)
            return self._triage

    def _triage_audited(
        self, actor: Actor, op: str, action: str, entity: str, run: Callable[[], _T]
    ) -> _T:
        from mizaic_processor.processor import _event

        _, writer = self._triage_docs()
        event = _event(actor, op, action, entity, "HSYSADMIN", at=self._now())
        writer.submit(event).wait()
        try:
            return run()
        except BaseException:
            failure = _event(actor, op, action, entity, "HSYSADMIN", outcome="failure",
                             ref=event["id"], at=self._now())
            try:
                writer.submit(failure).wait()
            except MizaicError:
                pass
            raise

    def _deliverer(self, scope: ControllerScope) -> Deliverer:
        docs = _docs_of(scope)
        book = RequestBook(docs)
        actor = scope.actor.id

        def exists(note: dict[str, Any]) -> bool:
            try:
                if "request_id" in note:
                    book.load(note["request_id"])
                elif "breach_id" in note:
                    _breach.load(docs, note["breach_id"], note["version"])
            except NotFoundError:
                return False
            return True

        def on_delivered(note: dict[str, Any]) -> None:
            if note.get("type") != "request.received":
                return
            now = self._now()
            book.update(note["request_id"], lambda s: s.step(
                "forwarded", RequestStatus.FORWARDED, at=now, actor=actor
            ) if s.status is RequestStatus.RECEIVED else None)

        def audited(op: str, entity: str, send: Callable[[], None]) -> None:
            scope._audited(op, "E", entity, send, write=True)

        return Deliverer(
            docs=docs, controller_id=scope.controller_id, clock=self._p._clock,
            queues=_queues_of(self._p), audited=audited, exists=exists,
            on_delivered=on_delivered,
        )

    def _attempt(self, scope: ControllerScope, delivery: str) -> bool:
        try:
            return self._deliverer(scope).attempt(delivery) == "delivered"
        except MizaicError:
            return False  # it stays in the outbox; deliver_pending() retries it

    def _system(self, actor: Actor | None) -> Actor:
        if actor is None:
            return Actor.processor_operator(DELIVERY_ACTOR)
        return _operator(actor, "deliver notifications")

    # -- intake --------------------------------------------------------------------------

    def receive(
        self,
        *,
        kind: RequestKind | str,
        controller: str,
        subject: str,
        contact: ContactDetails | Mapping[str, str],
        received_at: dt.datetime,
        channel: Channel | str,
        text: str = "",
        actor: Actor,
    ) -> Receipt:
        """Record a subject request and forward it to its controller at once.

        The request is stored durably (sealed: the subject identifier, contact details and
        text are encrypted) before anything is sent; a failed forward is retried by
        :meth:`deliver_pending`. A request naming no registered controller goes to the
        triage list (:meth:`list_triage`), never dropped.

        :param kind: ``access``, ``rectification``, ``erasure``, ``restriction``,
            ``portability``, ``objection`` or ``complaint``.
        :param controller: the controller's id, or how the requester named it.
        :param subject: the subject identifier as the requester gave it.
        :param contact: how to reach the requester (at least one of email, phone, address).
        :param received_at: when the request arrived (timezone-aware); the clock starts on
            its UK day.
        :param channel: how it arrived (``email``, ``post``, ``phone``, ``web``, ...).
        :param text: the requester's own words.
        :param actor: a ``processor_operator``.
        :raises InvalidInputError: on bad input (before any I/O; nothing stored).
        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises AuditError: if the intake cannot be audited (nothing stored).
        :raises StorageError: if the request cannot be stored.
        """
        actor = _operator(actor, "receive subject requests")
        data = _validated(_Intake, {
            "kind": kind, "controller": controller, "subject": subject, "contact": contact,
            "received_at": received_at, "channel": channel, "text": text,
        })
        now = self._now()
        if data.received_at > now + _FUTURE_SKEW:
            raise InvalidInputError("invalid input: received_at is in the future")
        request_id = ids.new_opaque_id("q")
        cid = self._known_controller(data.controller)
        state = new_request(
            request_id=request_id, controller_id=cid, kind=data.kind, channel=data.channel,
            received_at=data.received_at, received_on=uk_day(data.received_at),
            subject=data.subject, contact=data.contact, text=data.text, actor=actor.id, at=now,
            named_controller=None if cid else data.controller,
        )
        due = summarise(state, state.public.received_on).due_on
        if cid is None:
            docs, _ = self._triage_docs()
            self._triage_audited(actor, "request.triage", "C", f"request:{request_id}",
                                 lambda: RequestBook(docs, TRIAGE_PREFIX).create(state))
            return Receipt(request_id=request_id, kind=data.kind, controller_id=None,
                           triaged=True, delivered=False, due_on=due)
        delivered = self._store_and_forward(cid, state, actor)
        return Receipt(request_id=request_id, kind=data.kind, controller_id=cid,
                       triaged=False, delivered=delivered, due_on=due)

    def _store_and_forward(self, cid: str, state: RequestState, actor: Actor) -> bool:
        scope = self._p.tenant(cid, actor=actor)
        docs = _docs_of(scope)
        now = self._now()
        note = _request_note(state, "request.received", at=now, key="received")

        def run() -> None:
            enqueue(docs, note, at=now)  # first: a crash after it loses nothing
            try:
                RequestBook(docs).create(state)
            except ConflictError:
                pass  # already routed here (a repeated re-route)

        scope._audited("request.receive", "C", f"request:{state.request_id}", run, write=True)
        return self._attempt(scope, note["delivery_id"])

    # -- triage --------------------------------------------------------------------------

    def list_triage(self, *, actor: Actor) -> Iterator[TriagedRequest]:
        """Requests that named no registered controller, oldest id order.

        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises IntegrityError: if a stored request fails verification.
        """
        actor = _operator(actor, "list triage")
        docs, _ = self._triage_docs()
        book = RequestBook(docs, TRIAGE_PREFIX)

        def run() -> builtins.list[TriagedRequest]:
            found = []
            for request_id in book.ids():
                try:
                    state, _ = book.load(request_id)
                except NotFoundError:
                    continue
                found.append(TriagedRequest(
                    request_id=state.request_id, kind=state.kind,
                    channel=state.public.channel, received_on=state.public.received_on,
                    named_controller=state.secret.named_controller or "",
                ))
            return found

        return iter(self._triage_audited(actor, "request.triage.list", "R", "triage:list", run))

    def route_triaged(self, request_id: str, controller_id: str, *, actor: Actor) -> Receipt:
        """Route a triaged request to a (now registered) controller and forward it.

        Idempotent: routing it again to the same controller changes nothing.

        :raises InvalidInputError: if an id is malformed.
        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises NotFoundError: if there is no such triaged request or controller.
        :raises StorageError: if storage fails (the request then stays in triage).
        """
        actor = _operator(actor, "route requests")
        request_id = ids.opaque_id(request_id, "request id")
        cid = self._p.get_controller(controller_id).controller_id
        docs, _ = self._triage_docs()
        triage = RequestBook(docs, TRIAGE_PREFIX)
        try:
            state, _ = triage.load(request_id)
        except NotFoundError:
            scope = self._p.tenant(cid, actor=actor)
            routed, _ = RequestBook(_docs_of(scope)).load(request_id)  # already moved?
            return self._receipt(routed, delivered=False)
        now = self._now()
        moved = state.step("routed", RequestStatus.RECEIVED, at=now, actor=actor.id,
                           public={"controller_id": cid}, secret={"named_controller": None})

        def run() -> bool:
            delivered = self._store_and_forward(cid, moved, actor)
            triage.delete(request_id)
            return delivered

        delivered = self._triage_audited(actor, "request.route", "U", f"request:{request_id}",
                                         run)
        return self._receipt(moved, delivered=delivered)

    @staticmethod
    def _receipt(state: RequestState, *, delivered: bool) -> Receipt:
        return Receipt(
            request_id=state.request_id, kind=state.kind, controller_id=state.public.controller_id,
            triaged=False, delivered=delivered,
            due_on=summarise(state, state.public.received_on).due_on,
        )

    # -- routes --------------------------------------------------------------------------

    def set_route(
        self, controller_id: str, route: QueueRoute | WebhookRoute, *, actor: Actor,
        create_queue: bool = False,
    ) -> RouteInfo:
        """Set where ``controller_id``'s notifications go (replacing any earlier route).

        :param route: a :class:`QueueRoute` or a :class:`WebhookRoute`.
        :param create_queue: for a queue route, create the queue if it does not exist.
        :raises InvalidInputError: if the id or route is malformed.
        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises NotFoundError: if no such controller is registered.
        :raises StorageError: if storage fails.
        """
        actor = _operator(actor, "set routes")
        checked = _route(route)
        if not isinstance(create_queue, bool):
            raise InvalidInputError("create_queue must be a bool")
        scope = self._p.tenant(controller_id, actor=actor)
        if create_queue and isinstance(checked, QueueRoute):
            with _queues_of(self._p)() as queues:
                queues.create_queue(checked.queue_name)
        return scope.requests.set_route(checked)

    # -- delivery ------------------------------------------------------------------------

    def deliver_pending(self, *, actor: Actor | None = None) -> DeliveryReport:
        """Attempt every notification that is due for (another) attempt; the pump.

        Run it periodically. A delivered notification is never sent again; a failed one
        waits (30 s, doubling to 1 h) and is retried on a later run, never dropped.

        :param actor: a ``processor_operator``; the library's delivery actor by default.
        :raises AccessDeniedError: if ``actor`` is given and is not a ``processor_operator``.
        :raises StorageError: if the controllers cannot be listed.
        """
        actor = self._system(actor)
        counts = {"delivered": 0, "failed": 0, "waiting": 0, "gone": 0}
        for controller in self._p.list_controllers():
            scope = self._p.tenant(controller.controller_id, actor=actor)
            deliverer = self._deliverer(scope)
            for info in pending(deliverer.docs, controller.controller_id):
                try:
                    outcome = deliverer.attempt(info.delivery_id)
                except MizaicError:
                    outcome = "failed"
                counts[outcome] += 1
        return DeliveryReport(delivered=counts["delivered"], failed=counts["failed"],
                              waiting=counts["waiting"])

    def list_pending_deliveries(self, *, actor: Actor) -> Iterator[DeliveryInfo]:
        """Every notification not yet delivered, with its attempts and last error code.

        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises StorageError: if storage fails.
        """
        _operator(actor, "list deliveries")
        for controller in self._p.list_controllers():
            scope = self._p.tenant(controller.controller_id, actor=actor)
            yield from pending(_docs_of(scope), controller.controller_id)

    def send_reminders(
        self, as_of: dt.date | None = None, *, within_days: int = 7, actor: Actor | None = None
    ) -> int:
        """Forward a ``request.reminder`` for each open request due soon or overdue.

        At most one reminder per request and day (repeating a run sends nothing new).
        Requests whose clock is paused are not reminded.

        :param as_of: the day to evaluate (today in the UK by default).
        :param within_days: how many days ahead counts as due soon.
        :returns: how many reminders were queued.
        :raises InvalidInputError: if ``as_of`` or ``within_days`` is malformed.
        :raises AccessDeniedError: if ``actor`` is given and is not a ``processor_operator``.
        :raises StorageError: if storage fails.
        """
        actor = self._system(actor)
        day = _day(as_of, self._now())
        if not isinstance(within_days, int) or not 0 <= within_days <= 366:
            raise InvalidInputError("within_days must be 0..366")
        queued = 0
        for controller in self._p.list_controllers():
            scope = self._p.tenant(controller.controller_id, actor=actor)
            docs = _docs_of(scope)
            book = RequestBook(docs)
            for request_id in book.ids():
                state, _ = book.load(request_id)
                summary = summarise(state, day)
                remaining = summary.days_remaining
                if remaining is None or remaining > within_days:
                    continue
                note = _request_note(state, "request.reminder", at=self._now(),
                                     key=f"reminder/{day.isoformat()}")
                note["overdue"] = summary.overdue
                if scope._audited("request.remind", "E", f"request:{request_id}",
                                  lambda note=note: enqueue(docs, note, at=self._now()),
                                  write=True):
                    queued += 1
                    self._attempt(scope, note["delivery_id"])
        return queued

    # -- breach notices ------------------------------------------------------------------

    def report_breach(
        self,
        controller_id: str,
        *,
        nature: str,
        categories: Sequence[str],
        subjects_approx: int,
        records_approx: int,
        consequences: str,
        measures: str,
        detected_at: dt.datetime,
        actor: Actor,
    ) -> BreachRef:
        """Report a suspected personal data breach to the controller, forwarded at once.

        :param nature: what happened.
        :param categories: data category codes affected (``health``, ``contact``, ...).
        :param subjects_approx: approximate number of data subjects concerned.
        :param records_approx: approximate number of records concerned.
        :param consequences: likely consequences.
        :param measures: measures taken or proposed.
        :param detected_at: when Mizaic became aware (timezone-aware).
        :raises InvalidInputError: on bad input (before any I/O).
        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises NotFoundError: if no such controller is registered.
        :raises StorageError: if the notice cannot be stored.
        """
        actor = _operator(actor, "report breaches")
        data = _validated(_BreachInput, {
            "nature": nature, "categories": _seq(categories), "subjects_approx": subjects_approx,
            "records_approx": records_approx, "consequences": consequences,
            "measures": measures, "detected_at": detected_at,
        })
        return self._store_breach(controller_id, ids.new_opaque_id("b"), 1, data, actor)

    def update_breach(
        self,
        controller_id: str,
        breach_id: str,
        *,
        nature: str | None = None,
        categories: Sequence[str] | None = None,
        subjects_approx: int | None = None,
        records_approx: int | None = None,
        consequences: str | None = None,
        measures: str | None = None,
        actor: Actor,
    ) -> BreachRef:
        """Append a new version of a breach notice (fields not given are carried over).

        Earlier versions are kept unchanged; the controller is notified at once.

        :raises InvalidInputError: on bad input (before any I/O).
        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises NotFoundError: if there is no such controller or breach.
        :raises StorageError: if the notice cannot be stored.
        """
        actor = _operator(actor, "update breaches")
        breach_id = ids.opaque_id(breach_id, "breach id")
        given = {
            "nature": nature, "categories": None if categories is None else _seq(categories),
            "subjects_approx": subjects_approx, "records_approx": records_approx,
            "consequences": consequences, "measures": measures,
        }
        changes = {k: v for k, v in given.items() if v is not None}
        probe = {"nature": "x", "categories": ["x"], "subjects_approx": 0, "records_approx": 0,
                 "consequences": "x", "measures": "x", "detected_at": self._now(), **changes}
        _validated(_BreachInput, probe)  # refuse bad input before any I/O
        scope = self._p.tenant(controller_id, actor=actor)
        docs = _docs_of(scope)
        for _ in range(5):
            latest = _breach.load(docs, breach_id)
            merged = latest.model_dump(include=set(_BreachInput.model_fields)) | changes
            data = _validated(_BreachInput, merged)
            try:
                return self._store_breach(scope.controller_id, breach_id, latest.version + 1,
                                          data, actor)
            except ConflictError:
                continue
        raise ConflictError("the breach notice keeps changing; try again")

    def _store_breach(
        self, controller_id: str, breach_id: str, version: int, data: _BreachInput,
        actor: Actor,
    ) -> BreachRef:
        scope = self._p.tenant(controller_id, actor=actor)
        docs = _docs_of(scope)
        cid = scope.controller_id
        now = self._now()
        event = "breach.reported" if version == 1 else "breach.updated"
        note = notification(event, delivery_id(cid, breach_id, str(version)), cid, now,
                            breach_id=breach_id, version=version,
                            reported_on=uk_day(now).isoformat())

        def run() -> None:
            enqueue(docs, note, at=now)
            _breach.store(docs, controller_id=cid, breach_id=breach_id, version=version,
                          data=data, actor=actor.id, at=now)

        op = "breach.report" if version == 1 else "breach.update"
        scope._audited(op, "C", f"breach:{breach_id}", run, write=True)
        delivered = self._attempt(scope, note["delivery_id"])
        return BreachRef(controller_id=cid, breach_id=breach_id, version=version,
                         delivered=delivered)


def _seq(values: object) -> object:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidInputError("categories must be a sequence of category codes")
    return builtins.list(values)


def _day(value: object, now: dt.datetime) -> dt.date:
    if value is None:
        return uk_day(now)
    if isinstance(value, dt.datetime):
        return uk_day(value)
    if isinstance(value, dt.date):
        return value
    raise InvalidInputError("expected a date")


class ControllerRequests:
    """One controller's subject requests. Obtain it as ``scope.requests``.

    Everything here is for the controller's ``controller_admin``: any other role is
    refused, and a scope only ever sees its own controller's requests.
    """

    def __init__(self, scope: ControllerScope) -> None:
        self._scope = scope
        self._docs = _docs_of(scope)
        self._book = RequestBook(self._docs)

    def __repr__(self) -> str:
        return f"ControllerRequests(controller={self._scope.controller_id!r})"

    def _admin(self, what: str) -> None:
        self._scope._require(_ADMIN, what)

    def _today(self) -> dt.date:
        return uk_day(self._scope._clock())

    def _on(self, on: object) -> dt.date:
        day = _day(on, self._scope._clock())
        if day > self._today():
            raise InvalidInputError("the day must not be in the future")
        return day

    def _change(
        self, op: str, request_id: str, change: Callable[[RequestState], RequestState | None],
        *, policy: str | None = None,
    ) -> RequestSummary:
        state = self._scope._audited(
            op, "U", f"request:{request_id}", lambda: self._book.update(request_id, change),
            write=True, policy=policy,
        )
        return summarise(state, self._today())

    def _step(self, state: RequestState, event: str, status: RequestStatus,
              **parts: Any) -> RequestState:
        return state.step(event, status, at=self._scope._clock(), actor=self._scope.actor.id,
                          **parts)

    # -- reading -------------------------------------------------------------------------

    def list(
        self,
        *,
        status: RequestStatus | str | None = None,
        open_only: bool = False,
        due_within_days: int | None = None,
        overdue: bool = False,
        as_of: dt.date | None = None,
    ) -> Iterator[RequestSummary]:
        """This controller's requests (summaries without personal data), in id order.

        :param status: only requests in this status.
        :param open_only: only requests not completed or refused.
        :param due_within_days: only open requests due within this many days (not overdue);
            with ``overdue`` as well, those that are due soon *or* overdue.
        :param overdue: only open requests past their due date.
        :param as_of: the day to evaluate (today in the UK by default).
        :raises InvalidInputError: if a filter is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises IntegrityError: if a stored request fails verification.
        """
        self._admin("list subject requests")
        wanted = None
        if status is not None:
            try:
                wanted = RequestStatus(status)
            except ValueError:
                raise InvalidInputError("unknown request status") from None
        if due_within_days is not None and (
            not isinstance(due_within_days, int) or not 0 <= due_within_days <= 366
        ):
            raise InvalidInputError("due_within_days must be 0..366")
        day = _day(as_of, self._scope._clock())

        def keep(summary: RequestSummary) -> bool:
            if wanted is not None and summary.status is not wanted:
                return False
            if open_only and not summary.status.is_open:
                return False
            if due_within_days is None and not overdue:
                return True
            remaining = summary.days_remaining
            soon = due_within_days is not None and remaining is not None and (
                0 <= remaining <= due_within_days
            )
            return soon or (overdue and summary.overdue)

        def run() -> builtins.list[RequestSummary]:
            found = []
            for request_id in self._book.ids():
                try:
                    state, _ = self._book.load(request_id)
                except NotFoundError:
                    continue
                summary = summarise(state, day)
                if keep(summary):
                    found.append(summary)
            return found

        entity = f"controller:{self._scope.controller_id}"
        return iter(self._scope._audited("request.list", "R", entity, run, write=False))

    def get(self, request_id: str) -> RequestDetails:
        """Everything about one request, personal data included (the subject identifier
        as given, contact details, text), for this controller's ``controller_admin``.

        :raises InvalidInputError: if the id is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises IntegrityError: if it fails verification.
        """
        self._admin("read subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        state, _ = self._scope._audited(
            "request.read", "R", f"request:{request_id}",
            lambda: self._book.load(request_id), write=False,
        )
        return details(state, self._today())

    # -- lifecycle -----------------------------------------------------------------------

    def acknowledge(self, request_id: str) -> RequestSummary:
        """Acknowledge a received or forwarded request (idempotent once acknowledged).

        :raises InvalidInputError: if the id is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request is already closed.
        """
        self._admin("acknowledge subject requests")
        request_id = ids.opaque_id(request_id, "request id")

        def change(state: RequestState) -> RequestState | None:
            if state.status in (RequestStatus.RECEIVED, RequestStatus.FORWARDED):
                return self._step(state, "acknowledged", RequestStatus.ACKNOWLEDGED)
            if state.status.is_open:
                return None
            raise ConflictError(f"request {request_id} is {state.status.value}")

        return self._change("request.acknowledge", request_id, change)

    def pause(
        self, request_id: str, waiting_for: WaitingFor | str, *, on: dt.date | None = None
    ) -> RequestSummary:
        """Stop the clock: the controller asked for identity evidence, a fee or clarification.

        Identity or a fee restarts the clock afresh when it arrives; clarification pauses
        it and moves the due date by the days paused.

        :param on: the day it was asked for (today by default; not in the future).
        :raises InvalidInputError: if an argument is malformed, or the clock cannot be
            stopped then (:class:`~mizaic_processor.errors.ClockError`).
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: unless the request is acknowledged (or already waiting), or
            if it is a complaint (which has no request clock).
        """
        self._admin("pause subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        what = _waiting(waiting_for)
        day = self._on(on)

        def change(state: RequestState) -> RequestState:
            clock = self._clock_of(state, "pause")
            if state.status is not RequestStatus.ACKNOWLEDGED and state.status not in (
                RequestStatus.AWAITING_IDENTITY, RequestStatus.AWAITING_FEE,
                RequestStatus.AWAITING_CLARIFICATION,
            ):
                raise ConflictError(
                    f"request {request_id} is {state.status.value}; acknowledge it first"
                )
            new_clock = clock.request_information(what, on=day)
            status = status_for_clock(new_clock, RequestStatus.ACKNOWLEDGED)
            return self._step(state, f"paused:{what.value}", status,
                              secret={"clock": new_clock})

        return self._change("request.pause", request_id, change)

    def resume(
        self, request_id: str, received: WaitingFor | str | None = None, *,
        on: dt.date | None = None,
    ) -> RequestSummary:
        """Restart the clock: what was asked for arrived.

        :param received: what arrived; may be omitted when only one thing is awaited.
        :param on: the day it arrived (today by default; not in the future).
        :raises InvalidInputError: if an argument is malformed, or it was not awaited.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request is a complaint or closed.
        """
        self._admin("resume subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        what = None if received is None else _waiting(received)
        day = self._on(on)

        def change(state: RequestState) -> RequestState:
            clock = self._clock_of(state, "resume")
            arrived = what
            if arrived is None:
                waiting = summarise(state, day).waiting_for
                if len(waiting) != 1:
                    raise InvalidInputError("say what arrived: identity, fee or clarification")
                arrived = waiting[0]
            new_clock = clock.receive_information(arrived, on=day)
            status = status_for_clock(new_clock, RequestStatus.ACKNOWLEDGED)
            return self._step(state, f"resumed:{arrived.value}", status,
                              secret={"clock": new_clock})

        return self._change("request.resume", request_id, change)

    def extend(
        self, request_id: str, *, months: int, reason: str, on: dt.date | None = None
    ) -> RequestSummary:
        """Extend the time limit by one or two further months (two in total at most).

        Only before the first deadline, and with a reason (kept sealed).

        :raises InvalidInputError: if an argument is malformed, or the extension is not
            allowed (:class:`~mizaic_processor.errors.ClockError`).
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request is a complaint or closed.
        """
        self._admin("extend subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        if not isinstance(months, int) or isinstance(months, bool) or months not in (1, 2):
            raise InvalidInputError("months must be 1 or 2")
        reason = _text(reason, "reason", 1000)
        day = self._on(on)

        def change(state: RequestState) -> RequestState:
            clock = self._clock_of(state, "extend")
            new_clock = clock.extend(on=day, months=months, reason=reason)
            return self._step(state, "extended", state.status, secret={"clock": new_clock})

        return self._change("request.extend", request_id, change)

    def instruct(self, request_id: str, *, note: str) -> RequestSummary:
        """Record the controller's instruction on an objection or a complaint.

        These need no action on data: the instruction (its note kept sealed) is recorded
        under a new instruction id, and the request becomes ``instructed``. Access,
        portability, rectification, erasure and restriction requests cannot be instructed
        through this version (their data operations are not available yet).

        :raises InvalidInputError: if an argument is malformed, or the request is of a
            kind this version cannot fulfil.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: unless the request is acknowledged (clock running).
        """
        self._admin("instruct on subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        note = _text(note, "note", 5000)
        instruction_id = ids.new_opaque_id("i")

        def change(state: RequestState) -> RequestState:
            if state.kind not in _NO_DATA_ACTION:
                raise InvalidInputError(
                    f"{state.kind.value} requests cannot be instructed through this version"
                )
            if state.status is not RequestStatus.ACKNOWLEDGED:
                raise ConflictError(
                    f"request {request_id} is {state.status.value}; it must be acknowledged"
                )
            return self._step(state, "instructed", RequestStatus.INSTRUCTED,
                              public={"instruction_id": instruction_id},
                              secret={"instruction_note": note})

        return self._change("request.instruct", request_id, change, policy=instruction_id)

    def complete(self, request_id: str, *, note: str | None = None) -> RequestSummary:
        """Close a request as completed (an objection or complaint may close once
        acknowledged; other kinds once instructed).

        :raises InvalidInputError: if an argument is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request is not ready to complete.
        """
        self._admin("complete subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        checked = None if note is None else _text(note, "note", 5000)

        def change(state: RequestState) -> RequestState:
            ready = state.status is RequestStatus.INSTRUCTED or (
                state.kind in _NO_DATA_ACTION and state.status is RequestStatus.ACKNOWLEDGED
            )
            if not ready:
                raise ConflictError(
                    f"request {request_id} is {state.status.value}; it cannot complete yet"
                )
            return self._step(state, "completed", RequestStatus.COMPLETED,
                              secret={"outcome_note": checked})

        return self._change("request.complete", request_id, change)

    def refuse(self, request_id: str, *, reason: str) -> RequestSummary:
        """Close an open request as refused, with the controller's reason (kept sealed).

        :raises InvalidInputError: if an argument is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request is already closed.
        """
        self._admin("refuse subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        reason = _text(reason, "reason", 5000)

        def change(state: RequestState) -> RequestState:
            if not state.status.is_open:
                raise ConflictError(f"request {request_id} is {state.status.value}")
            return self._step(state, "refused", RequestStatus.REFUSED,
                              secret={"refusal_reason": reason})

        return self._change("request.refuse", request_id, change)

    @staticmethod
    def _clock_of(state: RequestState, what: str) -> Any:
        if state.secret.clock is None:
            raise ConflictError(f"a complaint has no request clock to {what}")
        if not state.status.is_open:
            raise ConflictError(f"request {state.request_id} is {state.status.value}")
        return state.secret.clock

    # -- route ---------------------------------------------------------------------------

    def set_route(self, route: QueueRoute | WebhookRoute) -> RouteInfo:
        """Set where this controller's notifications go (replacing any earlier route).

        Allowed to this controller's ``controller_admin`` and to a ``processor_operator``.
        A queue route names a queue of the processor's storage account, which must exist
        (``processor.requests.set_route(..., create_queue=True)`` creates it).

        :raises InvalidInputError: if the route is malformed.
        :raises AccessDeniedError: for any other role.
        :raises StorageError: if storage fails.
        """
        self._scope._require(frozenset({Role.CONTROLLER_ADMIN, Role.PROCESSOR_OPERATOR}),
                             "set routes")
        checked = _route(route)
        scope = self._scope

        def run() -> RouteInfo:
            return store_route(self._docs, scope.controller_id, checked,
                               actor=scope.actor.id, at=scope._clock())

        entity = f"controller:{scope.controller_id}"
        return scope._audited("route.set", "U", entity, run, write=True)

    def get_route(self) -> RouteInfo:
        """This controller's route (never the webhook secret).

        :raises AccessDeniedError: unless the actor is a ``controller_admin`` or a
            ``processor_operator``.
        :raises NotFoundError: if no route is set.
        """
        self._scope._require(frozenset({Role.CONTROLLER_ADMIN, Role.PROCESSOR_OPERATOR}),
                             "read routes")
        return load_route(self._docs, self._scope.controller_id)[0]

    # -- breach notices ------------------------------------------------------------------

    def list_breaches(self) -> Iterator[BreachNotice]:
        """The latest version of every breach notice reported to this controller.

        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises IntegrityError: if a stored notice fails verification.
        """
        self._admin("read breach notices")

        def run() -> builtins.list[BreachNotice]:
            return [_breach.load(self._docs, b) for b in _breach.breach_ids(self._docs)]

        entity = f"controller:{self._scope.controller_id}"
        return iter(self._scope._audited("breach.list", "R", entity, run, write=False))

    def get_breach(self, breach_id: str, *, version: int | None = None) -> BreachNotice:
        """One breach notice: the latest version, or ``version``.

        :raises InvalidInputError: if the id or version is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if there is no such notice or version.
        :raises IntegrityError: if it fails verification.
        """
        self._admin("read breach notices")
        breach_id = ids.opaque_id(breach_id, "breach id")
        if version is not None and (not isinstance(version, int) or not 0 < version < 10**6):
            raise InvalidInputError("invalid version")
        return self._scope._audited(
            "breach.read", "R", f"breach:{breach_id}",
            lambda: _breach.load(self._docs, breach_id, version), write=False,
        )


def _waiting(value: object) -> WaitingFor:
    try:
        return WaitingFor(value)
    except ValueError:
        raise InvalidInputError("waiting_for must be identity, fee or clarification") from None

