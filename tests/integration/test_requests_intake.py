"""Intake of subject requests: validation before any I/O, triage of unknown controllers,
no plaintext at rest, and request details only for the controller's own admin."""

# The fixtures come from requests_support by import; using them as arguments re-binds
# their names, which is what pytest expects.
# ruff: noqa: F811

from __future__ import annotations

import datetime as dt
import json

import pytest
from azure.storage.blob import BlobServiceClient
from requests_support import (  # noqa: F401 - fixtures
    ADMIN,
    OPERATOR,
    PERSONAL,
    SECRET,
    SERVICE,
    Clock,
    Receiver,
    all_blobs,
    assert_no_personal_data,
    azurite,
    blobs,
    clock,
    keyring,
    new_controller,
    proc,
    receiver,
    request_args,
)

from mizaic_processor import (
    AccessDeniedError,
    Actor,
    ContactDetails,
    InvalidInputError,
    NotFoundError,
    Processor,
    RequestStatus,
    WebhookRoute,
)

REGISTRY = "mizaic-registry"

BAD_REQUESTS = [
    pytest.param({"kind": "deletion"}, id="unknown-kind"),
    pytest.param({"contact": {}}, id="no-way-to-reach-the-requester"),
    pytest.param({"contact": {"email": "not-an-email"}}, id="malformed-email"),
    pytest.param({"contact": {"email": "a@b.example", "fax": "123"}}, id="extra-contact-field"),
    pytest.param({"received_at": dt.datetime(2026, 3, 2, 10, 0)}, id="naive-datetime"),
    pytest.param({"received_at": dt.datetime(2026, 3, 9, tzinfo=dt.UTC)}, id="in-the-future"),
    pytest.param({"channel": "carrier-pigeon"}, id="unknown-channel"),
    pytest.param({"subject": ""}, id="empty-subject"),
    pytest.param({"subject": "943 476 5919\n"
                  "DROP"}, id="control-characters-in-subject"),
    pytest.param({"text": "x" * 20_001}, id="text-too-long"),
    pytest.param({"controller": ""}, id="no-controller"),
    pytest.param({"contact": {1: "x", "email": "a@b.example"}}, id="contact-key-not-str"),
]


_SHARED: dict[str, str] = {}  # one controller for the bad-request cases (same keyring)


@pytest.mark.parametrize("change", BAD_REQUESTS)
def test_a_bad_request_is_refused_clearly_and_stores_nothing(
    proc: Processor, clock: Clock, blobs: BlobServiceClient, change: dict[str, object]
) -> None:
    if "bad" not in _SHARED:
        _SHARED["bad"] = new_controller(proc)
    cid = _SHARED["bad"]
    before = all_blobs(blobs, f"mzc-{cid}", REGISTRY)
    with pytest.raises(InvalidInputError) as caught:
        proc.requests.receive(**request_args(cid, clock, **change))  # type: ignore[arg-type]
    assert_no_personal_data(str(caught.value))
    assert set(all_blobs(blobs, f"mzc-{cid}", REGISTRY)) == set(before)


def test_an_unexpected_argument_or_a_non_operator_is_refused_before_any_io(
    proc: Processor, clock: Clock, blobs: BlobServiceClient
) -> None:
    cid = new_controller(proc)
    before = all_blobs(blobs, f"mzc-{cid}", REGISTRY)
    with pytest.raises(TypeError):
        proc.requests.receive(**request_args(cid, clock, priority="high"))  # type: ignore[arg-type]
    for actor in (SERVICE, ADMIN):
        with pytest.raises(AccessDeniedError):
            proc.requests.receive(**request_args(cid, clock, actor=actor))  # type: ignore[arg-type]
    assert set(all_blobs(blobs, f"mzc-{cid}", REGISTRY)) == set(before)


def test_nothing_personal_reaches_storage_or_the_receipt(
    proc: Processor, clock: Clock, blobs: BlobServiceClient, receiver: Receiver
) -> None:
    cid = new_controller(proc)
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    receipt = proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    triaged = proc.requests.receive(
        **request_args("Leeds Teaching Hospitals", clock)  # type: ignore[arg-type]
    )
    assert receipt.delivered and triaged.triaged
    stored = all_blobs(blobs, f"mzc-{cid}", REGISTRY)
    assert any(name.startswith(f"mzc-{cid}/requests/") for name in stored)
    assert any(name.startswith(f"{REGISTRY}/triage/") for name in stored)
    for name, data in stored.items():
        assert_no_personal_data(name)
        assert_no_personal_data(data)
    assert SECRET not in json.dumps({k: v.decode("latin-1") for k, v in stored.items()})
    assert_no_personal_data(repr(receipt) + repr(triaged))
    details = proc.tenant(cid, actor=ADMIN).requests.get(receipt.request_id)
    assert_no_personal_data(repr(details) + str(details))
    assert details.subject == "943 476 5919"
    assert details.contact.email == "aurelia.quenby@example.org"
    assert "knee surgery" in details.text
    assert_no_personal_data(repr(ContactDetails(email="aurelia.quenby@example.org")))


def test_request_details_reach_only_that_controllers_admin(
    proc: Processor, clock: Clock
) -> None:
    cid = new_controller(proc)
    other = new_controller(proc)
    receipt = proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    rid = receipt.request_id

    for actor in (SERVICE, OPERATOR):
        scope = proc.tenant(cid, actor=actor)
        with pytest.raises(AccessDeniedError):
            scope.requests.get(rid)
        with pytest.raises(AccessDeniedError):
            list(scope.requests.list())
        with pytest.raises(AccessDeniedError):
            scope.requests.acknowledge(rid)
    other_admin = proc.tenant(other, actor=ADMIN)
    with pytest.raises(NotFoundError):
        other_admin.requests.get(rid)
    assert list(other_admin.requests.list()) == []
    with pytest.raises(NotFoundError):
        other_admin.requests.acknowledge(rid)
    # the processor's side has no read path at all
    assert not any(hasattr(proc.requests, name) for name in ("get", "get_request", "show"))
    for triaged in proc.requests.list_triage(actor=OPERATOR):
        assert not set(triaged.model_dump()) & {"subject", "contact", "text"}

    details = proc.tenant(cid, actor=ADMIN).requests.get(rid)
    assert details.request_id == rid and details.subject == "943 476 5919"


def test_an_unknown_controller_goes_to_triage_and_is_routed_once_it_exists(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    receipt = proc.requests.receive(
        **request_args("St Elsewhere NHS Trust", clock, kind="erasure")  # type: ignore[arg-type]
    )
    assert receipt.triaged and receipt.controller_id is None and not receipt.delivered
    listed = {t.request_id: t for t in proc.requests.list_triage(actor=OPERATOR)}
    assert listed[receipt.request_id].named_controller == "St Elsewhere NHS Trust"
    assert listed[receipt.request_id].kind.value == "erasure"
    with pytest.raises(AccessDeniedError):
        list(proc.requests.list_triage(actor=ADMIN))
    with pytest.raises(NotFoundError):  # no such controller yet
        proc.requests.route_triaged(receipt.request_id, "rxx-missing", actor=OPERATOR)

    cid = new_controller(proc)
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    routed = proc.requests.route_triaged(receipt.request_id, cid, actor=OPERATOR)
    assert routed.delivered and routed.controller_id == cid
    assert routed.request_id == receipt.request_id
    again = proc.requests.route_triaged(receipt.request_id, cid, actor=OPERATOR)
    assert again.request_id == receipt.request_id
    assert len(receiver.accepted) == 1
    assert receipt.request_id not in {
        t.request_id for t in proc.requests.list_triage(actor=OPERATOR)
    }
    details = proc.tenant(cid, actor=ADMIN).requests.get(receipt.request_id)
    assert details.status is RequestStatus.FORWARDED
    assert [h.event for h in details.history] == ["received", "routed", "forwarded"]
    assert details.contact.phone == "+44 113 496 0000"


def test_intake_and_reads_are_audited_with_pseudonymous_entities(
    proc: Processor, clock: Clock
) -> None:
    cid = new_controller(proc)
    receipt = proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    admin = proc.tenant(cid, actor=ADMIN)
    admin.requests.get(receipt.request_id)
    events = list(admin.audit.query())
    ops = [(e.operation, e.entity, e.actor) for e in events]
    entity = f"request:{receipt.request_id}"
    assert ("request.receive", entity, OPERATOR.id) in ops
    assert ("request.read", entity, ADMIN.id) in ops
    for event in events:
        assert_no_personal_data(event.model_dump_json())
    assert all(p not in entity for p in PERSONAL)


def test_an_actor_must_be_an_actor(proc: Processor, clock: Clock) -> None:
    cid = new_controller(proc)
    with pytest.raises(InvalidInputError):
        proc.requests.receive(**request_args(cid, clock, actor="ops"))  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        Actor.processor_operator("bad actor id with spaces")
