"""The controller's side of subject requests: ``scope.requests`` (see :mod:`.requests`).

Everything here is for the controller's ``controller_admin``: reading requests (the only
path to the subject identifier, contact details and text), the lifecycle and the clock,
and fulfilment on the controller's instruction, which cites an instruction recorded in
the controller's ledger and calls the scope's own data operations.
"""

from __future__ import annotations

import builtins
import datetime as dt
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from mizaic_processor import _breach
from mizaic_processor._core import ids
from mizaic_processor._core.deadlines import ClockHistory, WaitingFor, uk_day
from mizaic_processor._core.validation import describe_validation_error
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._ledger import Hold
from mizaic_processor._request_models import (
    BreachNotice,
    Fulfilment,
    QueueRoute,
    RequestDetails,
    RequestKind,
    RequestStatus,
    RequestSummary,
    Route,
    RouteInfo,
    WebhookRoute,
)
from mizaic_processor._request_store import (
    RequestBook,
    RequestState,
    details,
    status_for_clock,
    summarise,
)
from mizaic_processor._routing import load_route, store_route
from mizaic_processor._validation import (
    change_input,
    check_destination,
    check_etag,
    plain_text,
    whole_number,
)
from mizaic_processor.errors import (
    ConflictError,
    HoldError,
    InvalidInputError,
)
from mizaic_processor.models import HospitalNumber, NHSNumber, Role

if TYPE_CHECKING:
    from mizaic_processor._scope import ControllerScope

__all__ = ["ControllerRequests"]

_ADMIN = frozenset({Role.CONTROLLER_ADMIN})
_NO_DATA_ACTION = frozenset({RequestKind.OBJECTION, RequestKind.COMPLAINT})
_EXPORTS = frozenset({RequestKind.ACCESS, RequestKind.PORTABILITY})
_AWAITING = frozenset({RequestStatus.AWAITING_IDENTITY, RequestStatus.AWAITING_FEE,
                       RequestStatus.AWAITING_CLARIFICATION})
_ROUTE: TypeAdapter[QueueRoute | WebhookRoute] = TypeAdapter(Route)
_NHS_LIKE = re.compile(r"(?:nhs(?:\s*(?:no\.?|number))?\s*:?\s*)?([0-9][0-9 -]{8,14}[0-9])",
                       re.IGNORECASE)

_M = TypeVar("_M", bound=BaseModel)


# -- helpers shared with the processor's side ---------------------------------------------


def validated(model: type[_M], values: dict[str, Any]) -> _M:
    """Validate ``values`` into ``model``; a message names fields, never values.

    :raises InvalidInputError: if they do not validate.
    """
    message = "invalid input"
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        message = describe_validation_error(exc)
    except InvalidInputError:  # a nested model's own, already data-free
        raise
    except (TypeError, ValueError, RecursionError):
        # e.g. a nested model built from a mapping with keys that are not strings
        pass
    raise InvalidInputError(message)  # outside the handlers: no context with the values


def checked_route(route: object) -> QueueRoute | WebhookRoute:
    """A route instance, or a mapping validated into one.

    :raises InvalidInputError: if it is neither.
    """
    if isinstance(route, QueueRoute | WebhookRoute):
        return route
    if not isinstance(route, Mapping):
        raise InvalidInputError("route must be a QueueRoute or a WebhookRoute")
    try:
        return _ROUTE.validate_python(dict(route))
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


def text(value: object, what: str, limit: int) -> str:
    """Free text of 1 to ``limit`` characters, stripped.

    :raises InvalidInputError: otherwise.
    """
    if not isinstance(value, str) or not 0 < len(value.strip()) <= limit:
        raise InvalidInputError(f"{what} must be 1 to {limit} characters")
    if not plain_text(value):
        # lone surrogates could be stored but never shown or exported as JSON
        raise InvalidInputError(f"{what} must be text without control characters")
    return value.strip()


def docs_of(scope: ControllerScope) -> ControllerDocs:
    """The controller documents of the scope's controller."""
    return ControllerDocs(scope._container, scope.controller_id, scope._keys.data_key)


def day_of(value: object, now: dt.datetime) -> dt.date:
    """A date (a datetime becomes its UK day; ``None`` is today in the UK).

    :raises InvalidInputError: for anything else.
    """
    if value is None:
        return uk_day(now)
    if isinstance(value, dt.datetime):
        return uk_day(value)
    if isinstance(value, dt.date):
        return value
    raise InvalidInputError("expected a date")


def subject_in(given: str) -> NHSNumber | None:
    """The NHS number in a subject identifier as given, if it plainly is one."""
    match = _NHS_LIKE.fullmatch(given.strip())
    if match is None:
        return None
    try:
        return NHSNumber(match.group(1))
    except InvalidInputError:
        return None


def auto_hold(scope: ControllerScope, skid: str, request_id: str) -> Hold:
    """Place the automatic hold of an open access request on a subject (audited).

    Placed through the ledger directly, so intake by a ``processor_operator`` can place it
    as soon as the request is stored: a hold only ever protects data.
    """
    hold = Hold(
        hold_id=ids.new_opaque_id("h"), kind="access_request", placed_by=scope.actor.id,
        placed_at=scope._clock(), subject_ref=skid, request_id=request_id,
        reason=f"automatic hold: open access request {request_id}",
    )
    return scope._audited("hold.place", "C", f"hold:{hold.hold_id}",
                          lambda: scope._ledger.place_hold(hold), write=True)


def _waiting(value: object) -> WaitingFor:
    try:
        return WaitingFor(str(value))
    except ValueError:
        raise InvalidInputError("waiting_for must be identity, fee or clarification") from None


def _subject(value: object) -> NHSNumber | HospitalNumber:
    if not isinstance(value, NHSNumber | HospitalNumber):
        raise InvalidInputError("subject must be an NHSNumber or HospitalNumber")
    return value


class ControllerRequests:
    """One controller's subject requests. Obtain it as ``scope.requests``.

    Everything here is for the controller's ``controller_admin`` (setting and reading
    the route also for a ``processor_operator``): any other role is refused, and a scope
    only ever sees its own controller's requests.
    """

    def __init__(self, scope: ControllerScope) -> None:
        self._scope = scope
        self._docs = docs_of(scope)
        self._book = RequestBook(self._docs)

    def __repr__(self) -> str:
        return f"ControllerRequests(controller={self._scope.controller_id!r})"

    def _admin(self, what: str) -> None:
        self._scope._require(_ADMIN, what)

    def _today(self) -> dt.date:
        return uk_day(self._scope._clock())

    def _on(self, on: object) -> dt.date:
        day = day_of(on, self._scope._clock())
        if day > self._today():
            raise InvalidInputError("the day must not be in the future")
        return day

    def _change(
        self, op: str, request_id: str, change: Callable[[RequestState], RequestState | None],
        *, policy: str | None = None,
    ) -> RequestState:
        return self._scope._audited(
            op, "U", f"request:{request_id}", lambda: self._book.update(request_id, change),
            write=True, policy=policy,
        )

    def _step(self, state: RequestState, event: str, status: RequestStatus,
              **parts: Any) -> RequestState:
        return state.step(event, status, at=self._scope._clock(), actor=self._scope.actor.id,
                          **parts)

    def _summary(self, state: RequestState) -> RequestSummary:
        return summarise(state, self._today())

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
        if due_within_days is not None:
            whole_number(due_within_days, 0, 366, "due_within_days must be 0..366")
        day = day_of(as_of, self._scope._clock())

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
                summary = summarise(self._book.load(request_id)[0], day)
                if keep(summary):
                    found.append(summary)
            return found

        entity = f"controller:{self._scope.controller_id}"
        return iter(self._scope._audited("request.list", "R", entity, run, write=False))

    def get(self, request_id: str) -> RequestDetails:
        """Everything about one request, personal data included (the subject identifier
        as given, contact details, text): the only way to read them, and only for this
        controller's ``controller_admin``.

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

    def acknowledge(
        self, request_id: str, *, subject: NHSNumber | HospitalNumber | None = None
    ) -> RequestSummary:
        """Acknowledge a received or forwarded request (idempotent once acknowledged).

        :param subject: the subject the controller has identified; for an access or
            portability request it places the automatic hold on the subject's data
            (if not placed at intake), released when the request is closed.
        :raises InvalidInputError: if an argument is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request is already closed.
        """
        self._admin("acknowledge subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        who = None if subject is None else _subject(subject)

        def change(state: RequestState) -> RequestState | None:
            if state.status in (RequestStatus.RECEIVED, RequestStatus.FORWARDED):
                return self._step(state, "acknowledged", RequestStatus.ACKNOWLEDGED)
            if state.status.is_open:
                return None
            raise ConflictError(f"request {request_id} is {state.status.value}")

        state = self._change("request.acknowledge", request_id, change)
        if who is not None:
            state = self._ensure_hold(state, who)
        return self._summary(state)

    def _ensure_hold(self, state: RequestState, subject: NHSNumber | HospitalNumber
                     ) -> RequestState:
        if state.kind not in _EXPORTS or state.public.hold_id is not None:
            return state
        if not state.status.is_open:
            return state
        skid = self._scope._keys.find_subject(subject)
        if skid is None:
            return state
        hold = auto_hold(self._scope, skid, state.request_id)
        return self._change("request.hold", state.request_id, lambda s: s.step(
            "hold_placed", s.status, at=self._scope._clock(), actor=self._scope.actor.id,
            public={"hold_id": hold.hold_id},
        ) if s.public.hold_id is None else None)

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
            clock = _clock_of(state, "pause")
            if state.status is not RequestStatus.ACKNOWLEDGED and state.status not in _AWAITING:
                raise ConflictError(
                    f"request {request_id} is {state.status.value}; acknowledge it first"
                )
            new_clock = clock.request_information(what, on=day)
            status = status_for_clock(new_clock, RequestStatus.ACKNOWLEDGED)
            return self._step(state, f"paused:{what.value}", status,
                              secret={"clock": new_clock})

        return self._summary(self._change("request.pause", request_id, change))

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
            clock = _clock_of(state, "resume")
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

        return self._summary(self._change("request.resume", request_id, change))

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
        whole_number(months, 1, 2, "months must be 1 or 2")
        reason = text(reason, "reason", 1000)
        day = self._on(on)

        def change(state: RequestState) -> RequestState:
            new_clock = _clock_of(state, "extend").extend(on=day, months=months, reason=reason)
            return self._step(state, "extended", state.status, secret={"clock": new_clock})

        return self._summary(self._change("request.extend", request_id, change))

    def complete(self, request_id: str, *, note: str | None = None) -> RequestSummary:
        """Close a request as completed: an objection or complaint once acknowledged or
        instructed, any other kind once instructed. Releases the automatic hold of an
        access or portability request.

        :raises InvalidInputError: if an argument is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request is not ready to complete, or was refused.
        """
        self._admin("complete subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        outcome = None if note is None else text(note, "note", 4000)

        def change(state: RequestState) -> RequestState | None:
            if state.status is RequestStatus.COMPLETED:
                return None
            ready = state.status is RequestStatus.INSTRUCTED or (
                state.kind in _NO_DATA_ACTION and state.status is RequestStatus.ACKNOWLEDGED
            )
            if not ready:
                raise ConflictError(
                    f"request {request_id} is {state.status.value}; it cannot complete yet"
                )
            return self._step(state, "completed", RequestStatus.COMPLETED,
                              secret={"outcome_note": outcome})

        state = self._change("request.complete", request_id, change)
        self._release_hold(state)
        return self._summary(state)

    def refuse(self, request_id: str, *, reason: str) -> RequestSummary:
        """Close an open request as refused, with the controller's reason (kept sealed).
        Releases the automatic hold of an access or portability request.

        :raises InvalidInputError: if an argument is malformed.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request.
        :raises ConflictError: if the request was completed.
        """
        self._admin("refuse subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        reason = text(reason, "reason", 4000)

        def change(state: RequestState) -> RequestState | None:
            if state.status is RequestStatus.REFUSED:
                return None
            if not state.status.is_open:
                raise ConflictError(f"request {request_id} is {state.status.value}")
            return self._step(state, "refused", RequestStatus.REFUSED,
                              secret={"refusal_reason": reason})

        state = self._change("request.refuse", request_id, change)
        self._release_hold(state)
        return self._summary(state)

    def _release_hold(self, state: RequestState) -> None:
        hold_id = state.public.hold_id
        if hold_id is not None:
            self._scope.retention.release_hold(
                hold_id, reason=f"{state.kind.value} request {state.request_id} "
                                f"{state.status.value}",
            )

    # -- fulfilment ----------------------------------------------------------------------

    def instruct(
        self,
        request_id: str,
        *,
        note: str | None = None,
        subject: NHSNumber | HospitalNumber | None = None,
        destination: IO[bytes] | None = None,
        record_id: str | None = None,
        etag: str | None = None,
        fields: Mapping[str, Any] | None = None,
        remove_fields: Sequence[str] = (),
        events: Mapping[str, dt.date] | None = None,
        restricted: bool = True,
    ) -> Fulfilment:
        """Instruct the processor to carry out a request, and carry it out.

        The instruction is recorded in the controller's ledger (who, when, what) and the
        request becomes ``instructed``. What each kind needs:

        * access, portability: ``subject`` and ``destination``, a binary stream of this
          controller admin's own (never the requester's): a ZIP with ``records.json``, a
          FHIR R4 Bundle and the original documents is streamed into it;
        * erasure: ``subject``; refused with :class:`HoldError` while a hold applies
          (the refusal is recorded in the request's history);
        * restriction: ``subject``; ``restricted=False`` lifts an earlier restriction;
        * rectification: ``record_id``, ``etag`` and ``fields`` / ``remove_fields`` /
          ``events``; the record gets a new version and keeps the earlier one;
        * objection, complaint: ``note`` only; recorded, no action on data.

        :param note: the instruction's free text (kept sealed).
        :raises InvalidInputError: if an argument is malformed or does not fit the kind.
        :raises AccessDeniedError: unless the actor is a ``controller_admin``.
        :raises NotFoundError: if this controller has no such request, or no such subject
            or record.
        :raises ConflictError: unless the request is acknowledged (clock running) or
            already instructed; or if the record changed since ``etag``.
        :raises HoldError: if a hold forbids the erasure.
        """
        self._admin("instruct on subject requests")
        request_id = ids.opaque_id(request_id, "request id")
        note = None if note is None else text(note, "note", 4000)
        who = None if subject is None else _subject(subject)
        # Everything is checked before the instruction is recorded: a refused call must
        # not leave a permanent instruction (or an access request's hold) behind.
        if destination is not None:
            destination = check_destination(destination)
        if record_id is not None:
            record_id = ids.record_id(record_id)
        if etag is not None:
            etag = check_etag(etag)
        change_input(fields, remove_fields, events)  # rectify_record uses them again
        if not isinstance(restricted, bool):
            raise InvalidInputError("restricted must be True or False")
        state, _ = self._book.load(request_id)
        kind = state.kind
        if state.status not in (RequestStatus.ACKNOWLEDGED, RequestStatus.INSTRUCTED):
            raise ConflictError(
                f"request {request_id} is {state.status.value}; it must be acknowledged"
            )
        _check_arguments(kind, note=note, subject=who, destination=destination,
                         record_id=record_id, etag=etag, fields=fields, remove_fields=remove_fields,
                         events=events, restricted=restricted)
        scope = self._scope
        # a missing or since-changed record is found before the instruction is recorded
        # (one HEAD; a change between it and the rectification is still refused by the
        # rectification's own etag check, after the instruction)
        if kind is RequestKind.RECTIFICATION and record_id is not None and (
            scope._container.etag(scope._record_blob(record_id), what="record") != etag
        ):
            raise ConflictError("record was changed by someone else (stale etag)")
        result: dict[str, Any] = {}
        if kind in _NO_DATA_ACTION:
            instruction_id = ids.new_opaque_id("i")
        else:
            action = {
                RequestKind.ACCESS: "export", RequestKind.PORTABILITY: "export",
                RequestKind.ERASURE: "erasure", RequestKind.RECTIFICATION: "rectification",
                RequestKind.RESTRICTION: "restriction" if restricted else "lift_restriction",
            }[kind]
            instruction = scope.create_instruction(
                action,  # type: ignore[arg-type]
                subject=who, record_ids=[record_id] if record_id else [], note=note,
            )
            instruction_id = instruction.instruction_id
            result = self._carry_out(state, instruction_id, who, destination, record_id,
                                     etag, fields, remove_fields, events, restricted)

        def change(current: RequestState) -> RequestState:
            if current.status not in (RequestStatus.ACKNOWLEDGED, RequestStatus.INSTRUCTED):
                raise ConflictError(f"request {request_id} is {current.status.value}")
            return self._step(current, "instructed", RequestStatus.INSTRUCTED,
                              public={"instruction_id": instruction_id},
                              secret={"instruction_note": note})

        state = self._change("request.instruct", request_id, change, policy=instruction_id)
        return Fulfilment(request=self._summary(state), instruction_id=instruction_id, **result)

    def _carry_out(
        self, state: RequestState, instruction_id: str,
        subject: NHSNumber | HospitalNumber | None, destination: IO[bytes] | None,
        record_id: str | None, etag: str | None, fields: Mapping[str, Any] | None,
        remove_fields: Sequence[str], events: Mapping[str, dt.date] | None, restricted: bool,
    ) -> dict[str, Any]:
        scope = self._scope
        kind = state.kind
        if kind in _EXPORTS and subject is not None and destination is not None:
            state = self._ensure_hold(state, subject)
            return {"export": scope.export_subject(subject, destination,
                                                   instruction_id=instruction_id)}
        if kind is RequestKind.ERASURE and subject is not None:
            try:
                return {"erasure": scope.erase_subject(subject, instruction_id=instruction_id)}
            except HoldError:
                self._change("request.blocked", state.request_id, lambda s: s.step(
                    "blocked:hold", s.status, at=scope._clock(), actor=scope.actor.id,
                ), policy=instruction_id)
                raise
        if kind is RequestKind.RESTRICTION and subject is not None:
            scope.set_restriction(subject, restricted, instruction_id=instruction_id)
            return {"restricted": restricted}
        if kind is RequestKind.RECTIFICATION and record_id is not None and etag is not None:
            return {"record": scope.rectify_record(
                record_id, etag=etag, instruction_id=instruction_id, fields=fields,
                remove_fields=remove_fields, events=events,
            )}
        raise InvalidInputError("the instruction does not fit the request")  # pragma: no cover

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
        route = checked_route(route)
        scope = self._scope

        def run() -> RouteInfo:
            return store_route(self._docs, scope.controller_id, route,
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
        if version is not None:
            whole_number(version, 1, 10**6 - 1, "invalid version")
        return self._scope._audited(
            "breach.read", "R", f"breach:{breach_id}",
            lambda: _breach.load(self._docs, breach_id, version), write=False,
        )


def _clock_of(state: RequestState, what: str) -> ClockHistory:
    if state.secret.clock is None:
        raise ConflictError(f"a complaint has no request clock to {what}")
    if not state.status.is_open:
        raise ConflictError(f"request {state.request_id} is {state.status.value}")
    return state.secret.clock


def _check_arguments(
    kind: RequestKind, *, note: str | None, subject: object, destination: object,
    record_id: object, etag: object, fields: object, remove_fields: object, events: object,
    restricted: bool,
) -> None:
    given = {
        "subject": subject is not None, "destination": destination is not None,
        "record_id": record_id is not None, "etag": etag is not None,
        "fields": fields is not None,
        "remove_fields": bool(remove_fields), "events": events is not None,
        "restricted": restricted is not True,
    }
    needs: dict[RequestKind, tuple[set[str], set[str]]] = {
        RequestKind.ACCESS: ({"subject", "destination"}, set()),
        RequestKind.PORTABILITY: ({"subject", "destination"}, set()),
        RequestKind.ERASURE: ({"subject"}, set()),
        RequestKind.RESTRICTION: ({"subject"}, {"restricted"}),
        RequestKind.RECTIFICATION: (
            {"record_id", "etag"}, {"fields", "remove_fields", "events"}
        ),
        RequestKind.OBJECTION: (set(), set()),
        RequestKind.COMPLAINT: (set(), set()),
    }
    required, optional = needs[kind]
    missing = sorted(name for name in required if not given[name])
    extra = sorted(name for name, on in given.items()
                   if on and name not in required and name not in optional)
    if missing:
        raise InvalidInputError(f"a {kind.value} instruction needs " + ", ".join(missing))
    if extra:
        raise InvalidInputError(f"a {kind.value} instruction takes no " + ", ".join(extra))
    if kind in _NO_DATA_ACTION and note is None:
        raise InvalidInputError(f"a {kind.value} instruction needs a note")
    if kind is RequestKind.RECTIFICATION and not (
        given["fields"] or given["remove_fields"] or given["events"]
    ):
        raise InvalidInputError("a rectification instruction needs fields, remove_fields "
                                "or events")
