"""A processor used after ``close()`` fails with the library's own errors, at once: never
the SDK's bare ``ValueError`` ("transport closed"), never after the retry policy's waits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from mizaic_processor import (
    Actor,
    ControllerScope,
    LocalKeyring,
    MizaicError,
    NewRecord,
    NHSNumber,
    Processor,
)
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
KNOWN = NHSNumber("9434765919")
NEW = NHSNumber("4010232137")

OPERATIONS: dict[str, Callable[[ControllerScope, str], Any]] = {
    "create, new subject": lambda s, rid: s.create_record(NEW, category="adult"),
    "create, known subject": lambda s, rid: s.create_record(KNOWN, category="adult"),
    "create with a document": lambda s, rid: s.create_record(
        NEW, category="adult", content=b"%PDF" * 100, content_type="application/pdf"),
    "get": lambda s, rid: s.get_record(rid),
    "open content": lambda s, rid: s.open_content(rid).read(),
    "list": lambda s, rid: list(s.list_records(NEW)),
    "bulk create": lambda s, rid: s.create_records([NewRecord(NEW, category="adult")]),
    "bulk get": lambda s, rid: s.get_records([rid]),
}


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_every_operation_after_close_raises_a_library_error_at_once(
    azurite: AzuriteServer, name: str,
) -> None:
    proc = Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=LocalKeyring.generate()
    )
    cid = "cl" + uuid.uuid4().hex[:10]
    proc.register_controller(cid, name="Closed Trust", actor=OPERATOR)
    scope = proc.tenant(cid, actor=SERVICE)
    ref = scope.create_record(KNOWN, category="adult", content=b"%PDF-1.7",
                              content_type="application/pdf")
    proc.close()
    start = time.monotonic()
    with pytest.raises(MizaicError):
        OPERATIONS[name](scope, ref.record_id)
    assert time.monotonic() - start < 5  # not retried as if storage were down
