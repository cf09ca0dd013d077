"""Subject-request documents: their stored form, their clock and their status lifecycle.

A request is one sealed controller document, ``requests/<request id>`` in the controller's
container (``triage/<request id>`` in the registry while no controller is known):

* plaintext part (what storage sees): the opaque request id, controller id, kind, channel
  code, day received, status and the history of ``{event, status, at, actor}``;
* sealed part: the moment received, the subject identifier as given, contact details, free
  text, the clock history (extension reasons are free text), notes and reasons.

Every change is read-modify-write with the document's etag, retried on a lost race.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from mizaic_processor._core import ids
from mizaic_processor._core.deadlines import (
    ClockHistory,
    WaitingFor,
    complaint_acknowledgement_due,
    compute_deadline,
)
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._request_models import (
    AWAITING,
    Channel,
    ContactDetails,
    HistoryEntry,
    RequestDetails,
    RequestKind,
    RequestStatus,
    RequestSummary,
)
from mizaic_processor.errors import ConflictError, IntegrityError

REQUEST_PREFIX = "requests/"
TRIAGE_PREFIX = "triage/"
_TRIES = 5


class _Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _Public(_Stored):
    format: Literal["mizaic.request"] = "mizaic.request"
    v: Literal[1] = 1
    request_id: str
    controller_id: str | None
    kind: RequestKind
    channel: Channel
    received_on: dt.date
    status: RequestStatus
    history: tuple[HistoryEntry, ...]
    instruction_id: str | None = None
    hold_id: str | None = None


class _Secret(_Stored):
    received_at: dt.datetime
    subject: str
    contact: ContactDetails
    text: str
    clock: ClockHistory | None
    named_controller: str | None = None
    instruction_note: str | None = None
    outcome_note: str | None = None
    refusal_reason: str | None = None


@dataclass(frozen=True)
class RequestState:
    """A request as loaded: both parts, parsed and verified."""

    public: _Public
    secret: _Secret

    @property
    def request_id(self) -> str:
        return self.public.request_id

    @property
    def status(self) -> RequestStatus:
        return self.public.status

    @property
    def kind(self) -> RequestKind:
        return self.public.kind

    def step(
        self, event: str, status: RequestStatus, *, at: dt.datetime, actor: str,
        public: dict[str, Any] | None = None, secret: dict[str, Any] | None = None,
    ) -> RequestState:
        """A new state with ``status`` and one more history entry."""
        entry = HistoryEntry(event=event, status=status, at=at, actor=actor)
        new_public = self.public.model_copy(
            update={"status": status, "history": (*self.public.history, entry), **(public or {})}
        )
        new_secret = self.secret.model_copy(update=secret or {})
        return replace(self, public=new_public, secret=new_secret)

    def dump(self) -> tuple[dict[str, Any], dict[str, Any]]:
        return self.public.model_dump(mode="json"), self.secret.model_dump(mode="json")


def new_request(
    *, request_id: str, controller_id: str | None, kind: RequestKind, channel: Channel,
    received_at: dt.datetime, received_on: dt.date, subject: str, contact: ContactDetails,
    text: str, actor: str, at: dt.datetime, named_controller: str | None,
) -> RequestState:
    """The state of a request just received."""
    clock = None if kind is RequestKind.COMPLAINT else ClockHistory(received_on=received_on)
    entry = HistoryEntry(event="received", status=RequestStatus.RECEIVED, at=at, actor=actor)
    return RequestState(
        public=_Public(
            request_id=request_id, controller_id=controller_id, kind=kind, channel=channel,
            received_on=received_on, status=RequestStatus.RECEIVED, history=(entry,),
        ),
        secret=_Secret(
            received_at=received_at, subject=subject, contact=contact, text=text, clock=clock,
            named_controller=named_controller,
        ),
    )


def _load(public: dict[str, Any], secret: dict[str, Any], request_id: str) -> RequestState:
    try:
        state = RequestState(
            public=_Public.model_validate(public), secret=_Secret.model_validate(secret)
        )
    except (ValidationError, ValueError, TypeError):
        raise IntegrityError("stored data failed integrity verification") from None
    if state.request_id != request_id:
        raise IntegrityError("stored data failed integrity verification")
    return state


def status_for_clock(clock: ClockHistory | None, fallback: RequestStatus) -> RequestStatus:
    """``awaiting_<first awaited>`` while the clock waits, else ``fallback``."""
    if clock is None:
        return fallback
    waiting = compute_deadline(clock).waiting_for
    return AWAITING[waiting[0]] if waiting else fallback


def summarise(state: RequestState, as_of: dt.date) -> RequestSummary:
    """The request's summary (no personal data) as of the day ``as_of``."""
    public = state.public
    clock = state.secret.clock
    waiting: tuple[WaitingFor, ...] = ()
    extension = 0
    due: dt.date | None
    if clock is None:  # a complaint: acknowledged within 30 days
        unacknowledged = public.status in (RequestStatus.RECEIVED, RequestStatus.FORWARDED)
        due = complaint_acknowledgement_due(public.received_on) if unacknowledged else None
    else:
        deadline = compute_deadline(clock)
        due, waiting, extension = (
            deadline.due_date, deadline.waiting_for, deadline.extension_months
        )
    is_open = public.status.is_open
    remaining = (due - as_of).days if due is not None and is_open else None
    return RequestSummary(
        request_id=public.request_id,
        controller_id=public.controller_id or "",
        kind=public.kind,
        channel=public.channel,
        status=public.status,
        received_on=public.received_on,
        due_on=due,
        waiting_for=waiting,
        extension_months=extension,
        days_remaining=remaining,
        overdue=remaining is not None and remaining < 0,
    )


def details(state: RequestState, as_of: dt.date) -> RequestDetails:
    """Everything about the request (personal data included): controller admin only."""
    summary = summarise(state, as_of)
    secret = state.secret
    return RequestDetails(
        **summary.model_dump(),
        received_at=secret.received_at,
        subject=secret.subject,
        contact=secret.contact,
        text=secret.text,
        history=state.public.history,
        clock=secret.clock,
        instruction_id=state.public.instruction_id,
        hold_id=state.public.hold_id,
        instruction_note=secret.instruction_note,
        outcome_note=secret.outcome_note,
        refusal_reason=secret.refusal_reason,
    )


class RequestBook:
    """The request documents under one prefix of one container."""

    def __init__(self, docs: ControllerDocs, prefix: str = REQUEST_PREFIX) -> None:
        self._docs = docs
        self._prefix = prefix

    def _name(self, request_id: str) -> str:
        return self._prefix + ids.opaque_id(request_id, "request id")

    def create(self, state: RequestState) -> str:
        """Store a new request (create-only).

        :raises ConflictError: if it exists.
        """
        public, secret = state.dump()
        return self._docs.create(self._name(state.request_id), public, secret, what="request")

    def load(self, request_id: str) -> tuple[RequestState, str]:
        """Load and verify a request.

        :raises NotFoundError: if there is no such request here.
        :raises IntegrityError: if it fails verification.
        """
        doc = self._docs.get(self._name(request_id), what="request")
        return _load(doc.public, doc.secret, request_id), doc.etag

    def update(
        self, request_id: str, change: Callable[[RequestState], RequestState | None]
    ) -> RequestState:
        """Apply ``change`` and write the result if unchanged since read (retried).

        ``change`` returning ``None`` means nothing to do; the current state is returned.

        :raises NotFoundError: if there is no such request here.
        :raises ConflictError: if concurrent writers keep winning.
        """
        for _ in range(_TRIES):
            state, etag = self.load(request_id)
            changed = change(state)
            if changed is None:
                return state
            public, secret = changed.dump()
            try:
                self._docs.replace(self._name(request_id), public, secret, etag=etag,
                                   what="request")
            except ConflictError:
                continue
            return changed
        raise ConflictError(f"request {request_id} keeps changing; try again")

    def delete(self, request_id: str) -> None:
        """Delete a request document (idempotent)."""
        self._docs.delete(self._name(request_id), what="request")

    def ids(self) -> Iterator[str]:
        """The ids of every request here, in order."""
        for name in self._docs.names(self._prefix):
            yield name[len(self._prefix):]
