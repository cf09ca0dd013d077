"""Public value types: actors, subject identifiers, records.

Models are frozen pydantic models with ``extra="forbid"``. Anything that can hold patient
data (subject identifiers, field values, dated events) is hidden from ``repr()`` and
``str()``, so a record printed in a log line or a traceback shows ids only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import IO, Any, Literal, TypeAlias, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_serializer,
    field_validator,
)

from mizaic_processor._core import ids
from mizaic_processor._core.validation import describe_validation_error
from mizaic_processor.errors import InvalidInputError, ResidencyError

__all__ = [
    "UK_REGIONS",
    "Actor",
    "ContentInfo",
    "Controller",
    "HospitalNumber",
    "NHSNumber",
    "NewRecord",
    "Record",
    "RecordRef",
    "Region",
    "Role",
    "SubjectId",
    "check_region",
]

Region: TypeAlias = Literal["uksouth", "ukwest"]
UK_REGIONS: frozenset[str] = frozenset({"uksouth", "ukwest"})


def check_region(region: object) -> Region:
    """Accept only ``uksouth`` and ``ukwest`` (an Azure region pair inside the UK).

    :raises ResidencyError: for any other value.
    """
    if region == "uksouth":
        return "uksouth"
    if region == "ukwest":
        return "ukwest"
    raise ResidencyError("only the UK regions uksouth and ukwest are allowed")


class Role(StrEnum):
    """What an actor may do.

    - ``service``: a product service giving direct care; reads and writes records.
    - ``controller_admin``: the controller's records manager or DPO; everything a service
      may do, plus instructions, destruction, holds, approvals and exports.
    - ``processor_operator``: Mizaic support; registers controllers, takes in and routes
      subject requests, rotates keys; never reads or writes records. Its one path to
      patient data is :meth:`Processor.disclose_required_by_law`, explicit and recorded.
    """

    SERVICE = "service"
    CONTROLLER_ADMIN = "controller_admin"
    PROCESSOR_OPERATOR = "processor_operator"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_M = TypeVar("_M", bound=BaseModel)


class Actor(_Frozen):
    """Who performs an operation: an id (service principal, staff id) and a role.

    :raises InvalidInputError: if the id or role is malformed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    id: str
    role: Role

    def __init__(self, **data: Any) -> None:
        message = None
        try:
            super().__init__(**data)
        except ValidationError as exc:
            message = describe_validation_error(exc)
        if message is not None:
            raise InvalidInputError(message)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return ids.actor_id(value)

    @classmethod
    def service(cls, actor_id: str) -> Actor:
        """An actor with the ``service`` role.

        :raises InvalidInputError: if the id is malformed.
        """
        return _build(cls, id=actor_id, role=Role.SERVICE)

    @classmethod
    def controller_admin(cls, actor_id: str) -> Actor:
        """An actor with the ``controller_admin`` role.

        :raises InvalidInputError: if the id is malformed.
        """
        return _build(cls, id=actor_id, role=Role.CONTROLLER_ADMIN)

    @classmethod
    def processor_operator(cls, actor_id: str) -> Actor:
        """An actor with the ``processor_operator`` role.

        :raises InvalidInputError: if the id is malformed.
        """
        return _build(cls, id=actor_id, role=Role.PROCESSOR_OPERATOR)


def _build(model: type[_M], **values: Any) -> _M:
    try:
        return model(**values)
    except ValidationError as exc:
        raise InvalidInputError(describe_validation_error(exc)) from None


class _SubjectBase:
    """A subject identifier. Its value never appears in ``repr()`` or ``str()``."""

    __slots__ = ("_value",)
    kind: str = ""

    def __init__(self, value: str) -> None:
        self._value = value

    @property
    def value(self) -> str:
        """The normalised identifier. Handle with care: it identifies a patient."""
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<redacted>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._value == self._value

    def __hash__(self) -> int:
        return hash((self.kind, self._value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self._value,))


class NHSNumber(_SubjectBase):
    """An NHS number, validated (Modulus 11) and normalised to 10 digits.

    >>> NHSNumber("943 476 5919")
    NHSNumber(<redacted>)

    :raises InvalidInputError: if it is not 10 digits with a valid check digit.
    """

    __slots__ = ()
    kind = "nhs"

    def __init__(self, value: str | int) -> None:
        super().__init__(ids.nhs_number(value))


class HospitalNumber(_SubjectBase):
    """A controller-local hospital (MRN / case-note) number, upper-cased.

    :raises InvalidInputError: if it is empty, over 32 characters or has characters other
        than letters, digits, ``/`` and ``-``.
    """

    __slots__ = ()
    kind = "local"

    def __init__(self, value: str) -> None:
        super().__init__(ids.hospital_number(value))


SubjectId: TypeAlias = NHSNumber | HospitalNumber


def subject_from(kind: str, value: str) -> SubjectId:
    """Rebuild a subject identifier from its stored (decrypted) kind and value."""
    if kind == NHSNumber.kind:
        return NHSNumber(value)
    if kind == HospitalNumber.kind:
        return HospitalNumber(value)
    raise InvalidInputError("unknown subject identifier kind")


class Controller(_Frozen):
    """A registered Data Controller (a healthcare provider)."""

    controller_id: str
    name: str
    region: Region
    container: str
    created_at: dt.datetime
    created_by: str


@dataclass(frozen=True, eq=False, repr=False)
class NewRecord:
    """One record to store with :meth:`ControllerScope.create_records` (the bulk form of
    :meth:`~ControllerScope.create_record`, whose parameters these are).

    It is checked only when handed to ``create_records``, all items before any I/O.
    ``repr()`` and ``str()`` show nothing of the subject, fields, events or content.
    """

    subject: SubjectId
    category: str
    fields: Mapping[str, Any] | None = None
    events: Mapping[str, dt.date] | None = None
    content: bytes | IO[bytes] | None = None
    content_type: str | None = None

    def __repr__(self) -> str:
        return "NewRecord(<hidden>)"

    __str__ = __repr__


class RecordRef(_Frozen):
    """What a write returns: the record id and the etag to pass to the next update."""

    record_id: str
    etag: str
    version: int


class ContentInfo(_Frozen):
    """Describes a record's document content (decrypted from the record)."""

    content_type: str
    length: int
    sha256: str = Field(repr=False)


class Record(_Frozen):
    """A decrypted record. ``repr()`` shows ids, category, version, etag and the content
    type and length; never the subject, fields, events or timestamps."""

    record_id: str
    category: str
    version: int
    etag: str
    subject: SubjectId | None = Field(default=None, repr=False)
    fields: dict[str, JsonValue] = Field(default_factory=dict, repr=False)
    events: dict[str, dt.date] = Field(default_factory=dict, repr=False)
    content: ContentInfo | None = None
    created_at: dt.datetime | None = Field(default=None, repr=False)
    updated_at: dt.datetime | None = Field(default=None, repr=False)

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    def __str__(self) -> str:
        return self.__repr__()

    @field_serializer("subject")
    def _dump_subject(self, subject: SubjectId | None) -> dict[str, str] | None:
        # Only an explicit model_dump()/model_dump_json() reveals the identifier.
        return None if subject is None else {"kind": subject.kind, "value": subject.value}

