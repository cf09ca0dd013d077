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
import contextlib
import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from mizaic_processor import _breach
from mizaic_processor._audit_writer import AuditWriter
from mizaic_processor._azure.queue import QueueService, queue_endpoint
from mizaic_processor._controller_requests import (
    ControllerRequests,
    auto_hold,
    checked_route,
    day_of,
    docs_of,
    subject_in,
    validated,
)
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
    Fulfilment,
    QueueRoute,
    Receipt,
    RequestDetails,
    RequestKind,
    RequestStatus,
    RequestSummary,
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
    new_request,
    summarise,
)
from mizaic_processor._routing import (
    Deliverer,
    delivery_id,
    enqueue,
    notification,
    pending,
    pending_ids,
)
from mizaic_processor._validation import whole_number
from mizaic_processor._webhook import verify_webhook
from mizaic_processor.errors import (
    AccessDeniedError,
    ConfigurationError,
    ConflictError,
    IntegrityError,
    InvalidInputError,
    KeyManagementError,
    MizaicError,
    NotFoundError,
)
from mizaic_processor.models import Actor, Role

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope
    from mizaic_processor.processor import Processor

__all__ = [
    "BreachNotice",
    "BreachRef",
    "Channel",
    "ContactDetails",
    "ControllerRequests",
    "DeliveryInfo",
    "DeliveryReport",
    "Fulfilment",
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

logger = logging.getLogger("mizaic_processor.requests")

DELIVERY_ACTOR = "mizaic-delivery"
"""The actor id recorded for deliveries and reminders the library makes on its own."""

TRIAGE_ID = "triage"
TRIAGE_KEK = "mizaic--triage"  # a double hyphen: never the KEK name of a controller
_TRIAGE_WRITER = "~triage"  # never a controller id
_FUTURE_SKEW = dt.timedelta(minutes=10)
_HELD_KINDS = frozenset({RequestKind.ACCESS, RequestKind.PORTABILITY})
_T = TypeVar("_T")


def _operator(actor: object, what: str) -> Actor:
    if not isinstance(actor, Actor):
        raise InvalidInputError("actor must be an Actor")
    if actor.role is not Role.PROCESSOR_OPERATOR:
        raise AccessDeniedError(f"only a processor_operator may {what}")
    return actor


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
            if self._triage is not None and self._triage[1].pid == os.getpid():
                return self._triage
            # first use, or a forked child: its parent's writer has no thread here, and
            # continuing the parent's chain would race it, so the child gets its own
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
        from mizaic_processor._scope import make_event as _event

        _, writer = self._triage_docs()
        event = _event(actor, op, action, entity, "HSYSADMIN", at=self._now())
        writer.submit(event).wait()
        try:
            return run()
        except BaseException:
            failure = _event(actor, op, action, entity, "HSYSADMIN", outcome="failure",
                             ref=event["id"], at=self._now())
            with contextlib.suppress(MizaicError):
                writer.submit(failure).wait()
            raise

    def _deliverer(self, scope: ControllerScope) -> Deliverer:
        docs = docs_of(scope)
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
        return self._try(scope, delivery) == "delivered"

    def _try(self, scope: ControllerScope, delivery: str) -> str:
        """One immediate attempt; its outcome (see :meth:`Deliverer.attempt`)."""
        try:
            return self._deliverer(scope).attempt(delivery)
        except MizaicError:
            return "failed"  # it stays in the outbox; deliver_pending() retries it

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
        data = validated(_Intake, {
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
        docs = docs_of(scope)
        now = self._now()
        note = _request_note(state, "request.received", at=now, key="received")

        def run() -> None:
            enqueue(docs, note, at=now)  # first: a crash after it loses nothing
            with contextlib.suppress(ConflictError):  # already routed here (a re-route)
                RequestBook(docs).create(state)

        scope._audited("request.receive", "C", f"request:{state.request_id}", run, write=True)
        self._hold_at_intake(scope, state)
        return self._attempt(scope, note["delivery_id"])

    @staticmethod
    def _hold_at_intake(scope: ControllerScope, state: RequestState) -> None:
        """An open access request holds the subject's data from the moment it is stored,
        when the identifier given is plainly an NHS number the controller holds."""
        subject = subject_in(state.secret.subject) if state.kind in _HELD_KINDS else None
        skid = None if subject is None else scope._keys.find_subject(subject)
        if skid is None:
            return
        try:
            hold = auto_hold(scope, skid, state.request_id)
            RequestBook(docs_of(scope)).update(state.request_id, lambda s: s.step(
                "hold_placed", s.status, at=scope._clock(), actor=scope.actor.id,
                public={"hold_id": hold.hold_id},
            ) if s.public.hold_id is None else None)
        except MizaicError:
            # The request is stored: failing now would make the caller store it twice.
            # Its history shows no hold; acknowledging or instructing it places one.
            logger.warning("automatic hold not placed at intake for request %s",
                           state.request_id)

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
            routed, _ = RequestBook(docs_of(scope)).load(request_id)  # already moved?
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
        checked = checked_route(route)
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
        waits (30 s, doubling to 1 h) and is retried on a later run, never dropped. Once
        a controller's endpoint times out or cannot be reached, its other notifications
        wait for the next run, so a down or slow webhook (each attempt has a 30 s deadline,
        name resolution included) delays the other controllers by one attempt per run, not
        one per notification. The same holds for a queue route whose Queue service does
        not answer (an attempt then takes the Queue SDK's timeouts and retries, about 40 s
        at worst). An endpoint that answers with an error, and a missing queue, are tried
        for each notification.

        :param actor: a ``processor_operator``; the library's delivery actor by default.
        :raises AccessDeniedError: if ``actor`` is given and is not a ``processor_operator``.
        :raises StorageError: if the controllers cannot be listed.
        """
        actor = self._system(actor)
        counts = {"delivered": 0, "failed": 0, "waiting": 0, "gone": 0}
        for controller in self._p.list_controllers():
            try:  # one controller's failure (its keys, its container) never stops the rest
                scope = self._p.tenant(controller.controller_id, actor=actor)
                deliverer = self._deliverer(scope)
                waiting = pending_ids(deliverer.docs)
            except MizaicError:
                counts["failed"] += 1
                continue
            for done, delivery in enumerate(waiting):
                try:
                    outcome = deliverer.attempt(delivery)
                except MizaicError:  # this entry (a broken one): the others still go
                    counts["failed"] += 1
                    continue
                if outcome == "down":  # no answer: the rest would wait as long, for nothing
                    counts["failed"] += 1
                    counts["waiting"] += len(waiting) - done - 1
                    break
                counts[outcome] += 1
        return DeliveryReport(delivered=counts["delivered"], failed=counts["failed"],
                              waiting=counts["waiting"])

    def list_pending_deliveries(
        self, *, actor: Actor, controller_id: str | None = None
    ) -> Iterator[DeliveryInfo]:
        """Every notification not yet delivered (of every controller, or of one), with
        its attempts and last error code. A controller whose keys this processor cannot
        unwrap is skipped (and logged), as by the pump. An entry that fails verification,
        or (listing every controller) a controller whose outbox cannot be read, does not
        hide the rest: everything else is listed, and then one such error is raised (an
        ``IntegrityError`` before any other).

        :raises AccessDeniedError: unless the actor is a ``processor_operator``.
        :raises NotFoundError: if ``controller_id`` is given and not registered.
        :raises StorageError: if storage fails.
        """
        _operator(actor, "list deliveries")
        if controller_id is not None:
            controllers = [self._p.get_controller(controller_id)]
        else:
            controllers = list(self._p.list_controllers())
        failures: list[MizaicError] = []
        for controller in controllers:
            try:
                scope = self._p.tenant(controller.controller_id, actor=actor)
                found = pending(docs_of(scope), controller.controller_id, failures)
            except KeyManagementError:
                if controller_id is not None:
                    raise
                logger.error("skipping a controller whose keys cannot be unwrapped")
                continue
            except MizaicError as exc:
                if controller_id is not None:
                    raise
                logger.error("deliveries of a controller not listed: %s", type(exc).__name__)
                failures.append(exc)
                continue
            yield from found
        if failures:
            raise _most_serious(failures)

    def send_reminders(
        self, as_of: dt.date | None = None, *, within_days: int = 7, actor: Actor | None = None
    ) -> int:
        """Forward a ``request.reminder`` for each open request due soon or overdue.

        At most one reminder per request and day (repeating a run sends nothing new).
        Requests whose clock is paused are not reminded.

        Each reminder is queued and tried at once; once a controller's webhook times out
        or cannot be reached, or its Queue service does not answer, its further reminders
        are only queued (the pump sends them).
        A controller whose keys cannot be unwrapped is skipped (and logged). Any other
        failure with one controller or one request (a damaged request document, its
        container failing) does not stop the rest: every other reminder is queued first,
        and then one such error is raised (an ``IntegrityError`` before any other). A
        repeated run sends nothing twice.

        :param as_of: the day to evaluate (today in the UK by default).
        :param within_days: how many days ahead counts as due soon.
        :returns: how many reminders were queued.
        :raises InvalidInputError: if ``as_of`` or ``within_days`` is malformed.
        :raises AccessDeniedError: if ``actor`` is given and is not a ``processor_operator``.
        :raises StorageError: if the controllers cannot be listed, or (after the others'
            reminders) if storage failed for one of them.
        :raises IntegrityError: after the others' reminders, if a stored request failed
            verification.
        """
        actor = self._system(actor)
        day = day_of(as_of, self._now())
        whole_number(within_days, 0, 366, "within_days must be 0..366")
        queued = 0
        failures: list[MizaicError] = []
        for controller in self._p.list_controllers():
            queued += self._remind_controller(controller.controller_id, actor, day,
                                              within_days, failures)
        if failures:
            raise _most_serious(failures)
        return queued

    def _remind_controller(
        self, controller_id: str, actor: Actor, day: dt.date, within_days: int,
        failures: list[MizaicError],
    ) -> int:
        """Queue one controller's due reminders; how many. Failures are added to
        ``failures`` (the run goes on); a controller whose keys cannot be unwrapped is
        skipped."""
        queued = 0
        down = False  # its endpoint did not answer: the rest are only queued
        try:
            scope = self._p.tenant(controller_id, actor=actor)
            docs = docs_of(scope)
            book = RequestBook(docs)
            for request_id in book.ids():
                try:
                    state, _ = book.load(request_id)
                    summary = summarise(state, day)
                    remaining = summary.days_remaining
                    if remaining is None or remaining > within_days:
                        continue
                    outcome = self._remind(scope, docs, state, day, overdue=summary.overdue,
                                           attempt=not down)
                except KeyManagementError:
                    raise
                except MizaicError as exc:  # this request: the controller's others still go
                    logger.error("reminder skipped request %s: %s", request_id,
                                 type(exc).__name__)
                    failures.append(exc)
                    continue
                if outcome is not None:
                    queued += 1
                    down = down or outcome == "down"
        except KeyManagementError:
            logger.error("skipping a controller whose keys cannot be unwrapped")
        except MizaicError as exc:  # its container or listing: the others still go
            logger.error("reminders skipped a controller: %s", type(exc).__name__)
            failures.append(exc)
        return queued

    def _remind(
        self, scope: ControllerScope, docs: ControllerDocs, state: RequestState, day: dt.date,
        *, overdue: bool, attempt: bool = True,
    ) -> str | None:
        """Queue a reminder (and try it at once, with ``attempt``): the attempt's outcome,
        ``"queued"`` if not attempted, or ``None`` if it was already queued today."""
        at = self._now()
        note = _request_note(state, "request.reminder", at=at, key=f"reminder/{day.isoformat()}")
        note["overdue"] = overdue

        def run() -> bool:
            return enqueue(docs, note, at=at)

        if not scope._audited("request.remind", "E", f"request:{state.request_id}", run,
                              write=True):
            return None
        return self._try(scope, note["delivery_id"]) if attempt else "queued"

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
        data = validated(_BreachInput, {
            "nature": nature, "categories": _seq(categories), "subjects_approx": subjects_approx,
            "records_approx": records_approx, "consequences": consequences,
            "measures": measures, "detected_at": detected_at,
        })
        if data.detected_at > self._now() + _FUTURE_SKEW:  # as receive() refuses
            raise InvalidInputError("invalid input: detected_at is in the future")
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
        validated(_BreachInput, probe)  # refuse bad input before any I/O
        scope = self._p.tenant(controller_id, actor=actor)
        docs = docs_of(scope)
        for _ in range(5):
            latest = _breach.load(docs, breach_id)
            merged = latest.model_dump(include=set(_BreachInput.model_fields)) | changes
            data = validated(_BreachInput, merged)
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
        docs = docs_of(scope)
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


def _most_serious(failures: list[MizaicError]) -> MizaicError:
    """The error to raise after a run that went on past failures: a sign of tampering
    outranks a passing storage failure."""
    return next((f for f in failures if isinstance(f, IntegrityError)), failures[0])
