"""Breach notices: versioned, sealed documents that are appended to, never overwritten.

``breaches/<breach id>/<version, 6 digits>`` in the affected controller's container,
create-only. The plaintext part holds the ids, version, dates and reporter; the nature,
categories, numbers, consequences and measures are sealed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from mizaic_processor._core import ids
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._request_models import BreachNotice, _BreachInput
from mizaic_processor.errors import IntegrityError, NotFoundError

BREACH_PREFIX = "breaches/"


def _name(breach_id: str, version: int) -> str:
    return f"{BREACH_PREFIX}{ids.opaque_id(breach_id, 'breach id')}/{version:06d}"


def versions(docs: ControllerDocs, breach_id: str) -> list[int]:
    """The stored versions of a breach notice, ascending."""
    prefix = f"{BREACH_PREFIX}{ids.opaque_id(breach_id, 'breach id')}/"
    found = []
    for name in docs.names(prefix):
        suffix = name[len(prefix):]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def breach_ids(docs: ControllerDocs) -> Iterator[str]:
    """The ids of every breach notice of the controller (each once)."""
    seen = ""
    for name in docs.names(BREACH_PREFIX):
        breach_id = name[len(BREACH_PREFIX):].split("/", 1)[0]
        if breach_id != seen:
            seen = breach_id
            yield breach_id


def store(
    docs: ControllerDocs, *, controller_id: str, breach_id: str, version: int,
    data: _BreachInput, actor: str, at: dt.datetime,
) -> None:
    """Create one version (create-only).

    :raises ConflictError: if that version exists.
    """
    public = {
        "format": "mizaic.breach", "v": 1, "controller_id": controller_id,
        "breach_id": breach_id, "version": version, "reported_at": at.isoformat(),
        "reported_by": actor,
    }
    docs.create(_name(breach_id, version), public, data.model_dump(mode="json"),
                what="breach notice")


def load(docs: ControllerDocs, breach_id: str, version: int | None = None) -> BreachNotice:
    """One version of a breach notice (the latest when ``version`` is ``None``).

    :raises NotFoundError: if there is no such breach or version.
    :raises IntegrityError: if it fails verification.
    """
    if version is None:
        known = versions(docs, breach_id)
        if not known:
            raise NotFoundError("breach notice not found")
        version = known[-1]
    doc = docs.get(_name(breach_id, version), what="breach notice")
    public: dict[str, Any] = doc.public
    try:
        data = _BreachInput.model_validate(doc.secret)
        notice = BreachNotice(
            controller_id=public["controller_id"], breach_id=public["breach_id"],
            version=public["version"],
            reported_at=dt.datetime.fromisoformat(public["reported_at"]),
            reported_by=public["reported_by"], **data.model_dump(),
        )
    except (KeyError, TypeError, ValueError, ValidationError):
        raise IntegrityError("stored data failed integrity verification") from None
    if notice.breach_id != breach_id or notice.version != version:
        raise IntegrityError("stored data failed integrity verification")
    return notice
