"""Public value types of subject requests, routes and breach notices.

Frozen pydantic models, ``extra="forbid"``. Whatever can identify or reach a person (the
subject identifier as given, contact details, free text, reasons and notes) is hidden from
``repr()`` and ``str()`` and from validation messages.
"""

from __future__ import annotations

import datetime as dt
import operator
import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)

from mizaic_processor._core.deadlines import ClockHistory, WaitingFor
from mizaic_processor._core.validation import describe_validation_error
from mizaic_processor._subject_ops import ErasureReport, ExportSummary
from mizaic_processor._webhook import check_webhook_url
from mizaic_processor.errors import InvalidInputError
from mizaic_processor.models import RecordRef

__all__ = [
    "BreachNotice",
    "BreachRef",
    "Channel",
    "ContactDetails",
    "DeliveryInfo",
    "DeliveryReport",
    "Fulfilment",
    "HistoryEntry",
    "QueueRoute",
    "Receipt",
    "RequestDetails",
    "RequestKind",
    "RequestStatus",
    "RequestSummary",
    "RouteInfo",
    "TriagedRequest",
    "WebhookRoute",
]

_QUEUE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    def __init__(self, **data: Any) -> None:
        """Validate; bad input raises :class:`InvalidInputError`, naming fields only.

        :raises InvalidInputError: if the values do not validate.
        """
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise InvalidInputError(describe_validation_error(exc)) from None


Line200 = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200,
                           pattern=r"^[^\x00-\x1f\x7f]*$")
]
Text = Annotated[str, StringConstraints(max_length=20_000)]
Paragraph = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                             max_length=5_000)]


class RequestKind(StrEnum):
    """The right a subject request exercises (UK GDPR Arts 15-22), or a complaint."""

    ACCESS = "access"
    RECTIFICATION = "rectification"
    ERASURE = "erasure"
    RESTRICTION = "restriction"
    PORTABILITY = "portability"
    OBJECTION = "objection"
    COMPLAINT = "complaint"


class Channel(StrEnum):
    """How the request reached Mizaic."""

    EMAIL = "email"
    POST = "post"
    PHONE = "phone"
    WEB = "web"
    IN_PERSON = "in_person"
    SUPPORT_TICKET = "support_ticket"
    OTHER = "other"


class RequestStatus(StrEnum):
    """Where a request stands. ``completed`` and ``refused`` are final."""

    RECEIVED = "received"
    FORWARDED = "forwarded"
    ACKNOWLEDGED = "acknowledged"
    AWAITING_IDENTITY = "awaiting_identity"
    AWAITING_FEE = "awaiting_fee"
    AWAITING_CLARIFICATION = "awaiting_clarification"
    INSTRUCTED = "instructed"
    COMPLETED = "completed"
    REFUSED = "refused"

    @property
    def is_open(self) -> bool:
        """Whether the request still needs the controller's action."""
        return self not in (RequestStatus.COMPLETED, RequestStatus.REFUSED)


AWAITING = {
    WaitingFor.IDENTITY: RequestStatus.AWAITING_IDENTITY,
    WaitingFor.FEE: RequestStatus.AWAITING_FEE,
    WaitingFor.CLARIFICATION: RequestStatus.AWAITING_CLARIFICATION,
}


class ContactDetails(_Frozen):
    """How the requester can be reached. Personal data: stored encrypted, never printed.

    At least one of ``email``, ``phone`` and ``postal_address`` is required.
    """

    name: Line200 | None = Field(default=None, repr=False)
    email: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=254,
                               pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
    ] | None = Field(default=None, repr=False)
    phone: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=3, max_length=40,
                               pattern=r"^\+?[0-9 ()-]+$")
    ] | None = Field(default=None, repr=False)
    postal_address: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)
    ] | None = Field(default=None, repr=False)

    @model_validator(mode="after")
    def _reachable(self) -> ContactDetails:
        if self.email is None and self.phone is None and self.postal_address is None:
            raise ValueError("give at least one of email, phone and postal_address")
        return self

    def __str__(self) -> str:
        return "ContactDetails(<redacted>)"

    def __repr__(self) -> str:
        return "ContactDetails(<redacted>)"


class _Intake(_Frozen):
    """What :meth:`RequestDesk.receive` validates before any I/O."""

    kind: RequestKind
    controller: Line200
    subject: Line200
    contact: ContactDetails
    received_at: AwareDatetime
    channel: Channel
    text: Text = ""


class QueueRoute(_Frozen):
    """Forward to an Azure Storage queue of the processor's account.

    :ivar queue_name: 3-63 lower-case letters, digits and single hyphens.
    """

    kind: Literal["queue"] = "queue"
    queue_name: str

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, value: str) -> str:
        if _QUEUE_NAME.fullmatch(value) is None:
            raise ValueError("invalid queue name")
        return value


class WebhookRoute(_Frozen):
    """Forward by an HTTPS POST signed with HMAC-SHA256 (see :func:`verify_webhook`).

    :ivar url: ``https://...`` (``http`` only to a loopback host, for tests).
    :ivar secret: the shared signing secret, at least 32 characters; never printed.
    """

    kind: Literal["webhook"] = "webhook"
    url: str
    secret: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            return check_webhook_url(value)
        except ValueError:
            raise ValueError("invalid webhook URL") from None

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if not 32 <= len(secret) <= 512:
            raise ValueError("the secret must be 32 to 512 characters")
        if not secret.isprintable():  # also refuses lone surrogates (not encodable)
            # it is signed as UTF-8: a lone surrogate would fail every later delivery
            raise ValueError("the secret must be printable UTF-8 text")
        return value


Route = Annotated[QueueRoute | WebhookRoute, Field(discriminator="kind")]


class RouteInfo(_Frozen):
    """A controller's route as stored (the webhook secret is never returned)."""

    controller_id: str
    kind: Literal["queue", "webhook"]
    target: str
    set_at: dt.datetime
    set_by: str


class HistoryEntry(_Frozen):
    """One step of a request's history."""

    event: str
    status: RequestStatus
    at: dt.datetime
    actor: str


class Receipt(_Frozen):
    """What intake returns: the request id and where it went. No personal data."""

    request_id: str
    kind: RequestKind
    controller_id: str | None
    triaged: bool
    delivered: bool
    due_on: dt.date | None


class TriagedRequest(_Frozen):
    """A request waiting in triage because it named no registered controller.

    ``named_controller`` is the requester's own words for the controller (an organisation),
    shown so an operator can route it; the subject, contact and text are never shown.
    """

    request_id: str
    kind: RequestKind
    channel: Channel
    received_on: dt.date
    named_controller: str


class RequestSummary(_Frozen):
    """A request's state and clock, without personal data."""

    request_id: str
    controller_id: str
    kind: RequestKind
    channel: Channel
    status: RequestStatus
    received_on: dt.date
    due_on: dt.date | None
    waiting_for: tuple[WaitingFor, ...]
    extension_months: int
    days_remaining: int | None
    overdue: bool


class RequestDetails(RequestSummary):
    """Everything about a request: for the controller's ``controller_admin`` only.

    The subject identifier, contact details, free text, reasons and notes are hidden from
    ``repr()``.
    """

    received_at: dt.datetime = Field(repr=False)
    subject: str = Field(repr=False)
    contact: ContactDetails = Field(repr=False)
    text: str = Field(repr=False)
    history: tuple[HistoryEntry, ...]
    clock: ClockHistory | None = Field(repr=False)
    instruction_id: str | None = None
    hold_id: str | None = None
    instruction_note: str | None = Field(default=None, repr=False)
    outcome_note: str | None = Field(default=None, repr=False)
    refusal_reason: str | None = Field(default=None, repr=False)

    def __str__(self) -> str:
        return self.__repr__()


class Fulfilment(_Frozen):
    """What an instruction on a request did: the request's new state, the instruction id
    cited (recorded in the controller's ledger for actions on data), and the outcome."""

    request: RequestSummary
    instruction_id: str
    export: ExportSummary | None = None
    erasure: ErasureReport | None = None
    record: RecordRef | None = None
    restricted: bool | None = None


class DeliveryInfo(_Frozen):
    """A notification not yet delivered (opaque ids and codes only)."""

    controller_id: str
    delivery_id: str
    event: str
    attempts: int
    next_attempt_at: dt.datetime
    last_error: str | None


class DeliveryReport(_Frozen):
    """What one run of the delivery pump did."""

    delivered: int
    failed: int
    waiting: int


def _count(value: object) -> int:
    """A whole number: an int or anything with ``__index__`` (numpy's ints), but not
    ``True``/``False``, a float or a string (pydantic's lax mode would take ``1.0`` and
    ``"5"``)."""
    if isinstance(value, bool | float | str | bytes):
        raise ValueError("must be a whole number")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise ValueError("must be a whole number") from None


class _BreachInput(_Frozen):
    nature: Paragraph
    categories: tuple[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")], ...]
    subjects_approx: Annotated[int, BeforeValidator(_count), Field(ge=0, le=10**10)]
    records_approx: Annotated[int, BeforeValidator(_count), Field(ge=0, le=10**12)]
    consequences: Paragraph
    measures: Paragraph
    detected_at: AwareDatetime

    @field_validator("categories")
    @classmethod
    def _some(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not 0 < len(value) <= 50:
            raise ValueError("give 1 to 50 category codes")
        return tuple(sorted(set(value)))


class BreachRef(_Frozen):
    """What reporting or updating a breach returns."""

    controller_id: str
    breach_id: str
    version: int
    delivered: bool


class BreachNotice(_Frozen):
    """One version of a personal data breach notice (the latest supersedes earlier ones)."""

    controller_id: str
    breach_id: str
    version: int
    reported_at: dt.datetime
    reported_by: str
    detected_at: dt.datetime
    nature: str = Field(repr=False)
    categories: tuple[str, ...]
    subjects_approx: int
    records_approx: int
    consequences: str = Field(repr=False)
    measures: str = Field(repr=False)
