"""Forwarding subject requests to the controller, against real Azurite and a real local
HTTP receiver: exactly once per delivery id, whatever fails first, and signed."""

# The fixtures come from requests_support by import; using them as arguments re-binds
# their names, which is what pytest expects.
# ruff: noqa: F811

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from requests_support import (  # noqa: F401 - fixtures
    ADMIN,
    OPERATOR,
    SECRET,
    SERVICE,
    Clock,
    Receiver,
    assert_no_personal_data,
    azurite,
    blobs,
    clock,
    keyring,
    new_controller,
    proc,
    queues,
    receiver,
    request_args,
)

from mizaic_processor import (
    AccessDeniedError,
    DeliveryInfo,
    IntegrityError,
    InvalidInputError,
    LocalKeyring,
    Processor,
    QueueRoute,
    RequestStatus,
    WebhookRoute,
    verify_webhook,
)
from mizaic_processor.testing import AzuriteServer


def request_deliveries(proc: Processor) -> list[DeliveryInfo]:
    """Pending deliveries of request notifications (audit checkpoints, which every
    controller's audit writer also queues for its controller, are not what these tests
    are about)."""
    return [d for d in proc.requests.list_pending_deliveries(actor=OPERATOR)
            if d.event.startswith("request.")]

def pump(processor: Processor, clock: Clock, times: int = 1) -> None:
    for _ in range(times):
        clock.advance(hours=1)  # past any back-off
        processor.requests.deliver_pending()


def test_a_request_reaches_the_webhook_exactly_once_although_two_attempts_fail(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    cid = new_controller(proc)
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    receiver.fail_first = 2

    receipt = proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    assert not receipt.delivered and not receipt.triaged
    assert [p.status for p in receiver.posts] == [500]
    pending = list(request_deliveries(proc))
    assert [(d.event, d.attempts, d.last_error) for d in pending] == [
        ("request.received", 1, "http-500")
    ]

    pump(proc, clock, times=4)

    assert [p.status for p in receiver.posts] == [500, 500, 204]
    assert len(receiver.accepted) == 1
    assert len({p.headers["X-Mizaic-Delivery"] for p in receiver.posts}) == 1
    assert list(request_deliveries(proc)) == []
    note = json.loads(receiver.accepted[0].body)
    assert note["type"] == "request.received"
    assert note["request_id"] == receipt.request_id
    assert note["delivery_id"] == receiver.accepted[0].headers["X-Mizaic-Delivery"]
    assert note["due_on"] == "2026-04-02"
    for post in receiver.posts:
        assert_no_personal_data(post.body)
        assert_no_personal_data(json.dumps(post.headers))
    admin = proc.tenant(cid, actor=ADMIN)
    assert admin.requests.get(receipt.request_id).status is RequestStatus.FORWARDED


def test_the_signature_verifies_and_a_tampered_body_or_old_timestamp_does_not(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    cid = new_controller(proc)
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    proc.requests.receive(**request_args(cid, clock, kind="objection"))  # type: ignore[arg-type]
    (post,) = receiver.posts
    sent_at = int(post.headers["X-Mizaic-Timestamp"])
    assert sent_at == int(clock.now.timestamp())

    verify_webhook(SECRET, post.body, post.headers, now=clock.now)
    verify_webhook(SECRET, post.body, post.headers, now=sent_at + 300)

    tampered = post.body.replace(b'"objection"', b'"erasure"')
    assert tampered != post.body
    with pytest.raises(IntegrityError):
        verify_webhook(SECRET, tampered, post.headers, now=clock.now)
    with pytest.raises(IntegrityError):
        verify_webhook(SECRET, post.body, post.headers, now=sent_at + 301)
    with pytest.raises(IntegrityError):
        verify_webhook(SECRET, post.body, post.headers, now=sent_at - 301)
    with pytest.raises(IntegrityError):
        verify_webhook("another-secret-0123456789abcdef0123", post.body, post.headers,
                       now=clock.now)
    restamped = {**post.headers, "X-Mizaic-Timestamp": str(sent_at + 200)}
    with pytest.raises(IntegrityError):  # the timestamp is signed too
        verify_webhook(SECRET, post.body, restamped, now=sent_at + 200)


def test_a_request_reaches_the_queue_exactly_once_after_the_queue_was_missing(
    proc: Processor, clock: Clock, queues: QueueServiceClient
) -> None:
    cid = new_controller(proc)
    queue = f"mizaic-{cid}"
    proc.requests.set_route(cid, QueueRoute(queue_name=queue), actor=OPERATOR)

    receipt = proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    assert not receipt.delivered  # the queue does not exist yet: a real failure
    pump(proc, clock)
    (pending,) = request_deliveries(proc)
    assert (pending.attempts, pending.last_error) == (2, "queue-not-found")

    queues.create_queue(queue)
    pump(proc, clock, times=3)

    client = queues.get_queue_client(queue)
    messages = [
        m for m in client.receive_messages(messages_per_page=32, visibility_timeout=60)
        if json.loads(m.content)["type"] != "audit.checkpoint"  # the controller's seals
    ]
    assert len(messages) == 1
    note = json.loads(messages[0].content)
    assert note["request_id"] == receipt.request_id
    assert note["delivery_id"] == pending.delivery_id
    assert_no_personal_data(messages[0].content)
    assert proc.tenant(cid, actor=ADMIN).requests.get(
        receipt.request_id
    ).status is RequestStatus.FORWARDED


def test_set_route_can_create_the_queue_and_delivery_is_immediate(
    proc: Processor, clock: Clock, queues: QueueServiceClient
) -> None:
    cid = new_controller(proc)
    proc.requests.set_route(cid, QueueRoute(queue_name=f"q-{cid}"), actor=OPERATOR,
                            create_queue=True)
    assert proc.requests.receive(**request_args(cid, clock)).delivered  # type: ignore[arg-type]
    assert queues.get_queue_client(f"q-{cid}").get_queue_properties().approximate_message_count == 1


def test_a_request_waits_for_a_route_across_a_restart_and_is_never_dropped(
    proc: Processor, clock: Clock, receiver: Receiver, azurite: AzuriteServer,
    keyring: LocalKeyring,
) -> None:
    cid = new_controller(proc)
    receipt = proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    assert not receipt.delivered
    pump(proc, clock, times=2)
    proc.close()  # the process goes away; the outbox stays in storage

    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=keyring, retry_total=1,
        clock=clock,
    ) as restarted:
        (pending,) = [d for d in request_deliveries(restarted)
                      if d.controller_id == cid]
        assert (pending.attempts, pending.last_error) == (3, "no-route")
        restarted.tenant(cid, actor=ADMIN).requests.set_route(
            WebhookRoute(url=receiver.url, secret=SECRET)
        )
        pump(restarted, clock, times=2)
    # the controller also receives its audit checkpoints through the same route
    requests = [p for p in receiver.accepted if json.loads(p.body)["type"] == "request.received"]
    assert len(requests) == 1
    assert json.loads(requests[0].body)["request_id"] == receipt.request_id


def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    cid = new_controller(proc)
    receiver.redirect_to = "http://127.0.0.1:9/elsewhere"
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    assert not proc.requests.receive(**request_args(cid, clock)).delivered  # type: ignore[arg-type]
    (pending,) = request_deliveries(proc)
    assert pending.last_error == "http-302"
    assert len(receiver.posts) == 1


def test_a_second_pump_inside_the_back_off_sends_nothing(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    cid = new_controller(proc)
    receiver.fail_first = 1
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    clock.advance(seconds=10)
    assert proc.requests.deliver_pending().waiting >= 1
    assert len(receiver.posts) == 1
    clock.advance(seconds=30)
    assert proc.requests.deliver_pending().delivered == 1
    assert [p.status for p in receiver.posts] == [500, 204]


def _with_a_dead_webhook(proc: Processor, clock: Clock, requests: int = 3) -> str:
    """A controller whose webhook refuses connections, with ``requests`` requests received
    (each tried once at intake, and failed)."""
    cid = new_controller(proc)
    with socket.socket() as closed:  # a port that refuses connections once closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    proc.requests.set_route(cid, WebhookRoute(url=f"http://127.0.0.1:{port}/hook",
                                              secret=SECRET), actor=OPERATOR)
    for _ in range(requests):
        proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    return cid


def test_a_failing_endpoint_costs_each_pump_run_one_attempt_not_one_per_notification(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    # Each attempt can take up to its deadline; before, the pump tried every pending
    # notification of a controller whose endpoint was down, so the controllers after it
    # waited that long once per notification.
    down = _with_a_dead_webhook(proc, clock)
    up = new_controller(proc)
    proc.requests.set_route(up, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    receiver.fail_first = 1
    proc.requests.receive(**request_args(up, clock))  # type: ignore[arg-type]

    def attempts() -> list[int]:  # its audit checkpoints wait in the same outbox
        return [d.attempts for d in proc.requests.list_pending_deliveries(
            actor=OPERATOR, controller_id=down)]

    before = attempts()
    assert len(before) >= 3
    clock.advance(hours=1)
    proc.requests.deliver_pending()

    assert sum(attempts()) == sum(before) + 1  # one attempt in this run, the others wait
    assert [p.status for p in receiver.posts] == [500, 204]  # the other controller's went


def test_a_queue_service_that_does_not_answer_costs_each_pump_run_one_attempt(
    proc: Processor, azurite: AzuriteServer, keyring: LocalKeyring, clock: Clock,
    queues: QueueServiceClient,
) -> None:
    # Before, a queue route's failures never counted as "down": with the Queue service
    # not answering, the pump waited out the SDK's retries once per notification.
    cid = new_controller(proc)
    queues.create_queue(f"q{cid}")
    proc.requests.set_route(cid, QueueRoute(queue_name=f"q{cid}"), actor=OPERATOR)
    with socket.socket() as closed:  # a port that refuses connections once closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    dead_queues = re.sub(r"QueueEndpoint=[^;]*;",
                         f"QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
                         azurite.connection_string)
    assert dead_queues != azurite.connection_string
    with Processor.from_connection_string(
        dead_queues, region="uksouth", keyring=keyring, retry_total=1, retry_backoff=0.1,
        clock=clock,
    ) as cut_off:
        for _ in range(2):
            receipt = cut_off.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
            assert not receipt.delivered

        def pending() -> list[DeliveryInfo]:  # its audit checkpoints wait there too
            return list(cut_off.requests.list_pending_deliveries(actor=OPERATOR,
                                                                  controller_id=cid))

        before = pending()
        assert [(d.attempts, d.last_error) for d in before
                if d.event.startswith("request.")] == [(1, "unreachable")] * 2
        clock.advance(hours=1)
        cut_off.requests.deliver_pending()
        # one attempt in this run, whichever entry sorts first; the others wait
        assert sum(d.attempts for d in pending()) == sum(d.attempts for d in before) + 1
    clock.advance(hours=1)
    proc.requests.deliver_pending()  # the Queue service answers again: both arrive
    assert [d for d in proc.requests.list_pending_deliveries(actor=OPERATOR, controller_id=cid)
            if d.event.startswith("request.")] == []
    sent = [json.loads(m.content)["type"]
            for m in queues.get_queue_client(f"q{cid}").peek_messages(max_messages=32)]
    assert [t for t in sent if t != "audit.checkpoint"] == ["request.received"] * 2


def test_routes_refuse_plain_http_to_other_hosts_and_other_roles(
    proc: Processor, receiver: Receiver
) -> None:
    cid = new_controller(proc)
    for url in ("http://example.org/hook", "ftp://example.org/hook",
                "https://user:pw@example.org/hook", "https://example.org/h#x"):
        with pytest.raises(InvalidInputError, match="url"):
            WebhookRoute(url=url, secret=SECRET)
        with pytest.raises(InvalidInputError):
            proc.requests.set_route(cid, {"kind": "webhook", "url": url, "secret": SECRET},
                                    actor=OPERATOR)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError) as caught:
        WebhookRoute(url="https://example.org/hook", secret="short-secret")
    assert "short-secret" not in str(caught.value)
    with pytest.raises(InvalidInputError):
        QueueRoute(queue_name="Not_A_Queue")
    assert "whsec" not in repr(WebhookRoute(url="https://example.org/h", secret=SECRET))
    with pytest.raises(AccessDeniedError):
        proc.requests.set_route(cid, QueueRoute(queue_name="abc"), actor=ADMIN)
    with pytest.raises(AccessDeniedError):
        proc.tenant(cid, actor=SERVICE).requests.set_route(QueueRoute(queue_name="abc"))
    route = proc.tenant(cid, actor=ADMIN).requests.set_route(
        WebhookRoute(url=receiver.url, secret=SECRET)
    )
    assert route.target == receiver.url and route.set_by == ADMIN.id
    assert SECRET not in route.model_dump_json()



def test_a_delivered_notification_is_never_queued_again_and_an_orphan_is_dropped(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    from mizaic_processor._controller_requests import docs_of
    from mizaic_processor._routing import delivery_id, enqueue, notification

    cid = new_controller(proc)
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    assert proc.requests.receive(**request_args(cid, clock)).delivered  # type: ignore[arg-type]
    docs = docs_of(proc.tenant(cid, actor=OPERATOR))
    sent = json.loads(receiver.accepted[0].body)
    assert not enqueue(docs, sent, at=clock.now)  # marked delivered: never again
    pump(proc, clock)
    assert len(receiver.posts) == 1

    # A crash between writing the outbox entry and the request leaves an orphan entry:
    # it is held back (the request may still be being written), then dropped unsent.
    ghost = "q" + "a" * 26
    orphan = notification("request.received", delivery_id(cid, ghost, "received"), cid,
                          clock.now, request_id=ghost)
    assert enqueue(docs, orphan, at=clock.now)
    clock.advance(minutes=1)
    proc.requests.deliver_pending()
    assert [d.delivery_id for d in request_deliveries(proc)
            if d.controller_id == cid] == [orphan["delivery_id"]]
    clock.advance(minutes=15)
    proc.requests.deliver_pending()
    assert [d for d in request_deliveries(proc)
            if d.controller_id == cid] == []
    assert len(receiver.posts) == 1


def test_reminders_for_a_controller_whose_webhook_is_down_are_tried_once_then_queued(
    proc: Processor, clock: Clock
) -> None:
    # Each reminder is tried at once; before, every one waited for the dead endpoint in
    # turn (each up to the attempt's deadline), holding up the whole run.
    cid = _with_a_dead_webhook(proc, clock)
    clock.advance(days=30)
    proc.requests.send_reminders(within_days=7)
    reminders = [d for d in proc.requests.list_pending_deliveries(actor=OPERATOR,
                                                                  controller_id=cid)
                 if d.event == "request.reminder"]
    assert sorted(d.attempts for d in reminders) == [0, 0, 1]


def test_a_damaged_request_of_one_controller_does_not_stop_the_others_reminders(
    proc: Processor, clock: Clock, receiver: Receiver, blobs: BlobServiceClient
) -> None:
    # Before, the first damaged request stopped the run: no controller after it was
    # reminded of its statutory deadlines, on every run.
    first, second = sorted(new_controller(proc) for _ in range(2))  # listed in this order
    for cid in (first, second):
        proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET),
                                actor=OPERATOR)
    damaged = proc.requests.receive(**request_args(first, clock)).request_id  # type: ignore[arg-type]
    ok = proc.requests.receive(**request_args(second, clock)).request_id  # type: ignore[arg-type]
    container = blobs.get_container_client(f"mzc-{first}")
    name = f"requests/{damaged}"
    original = container.download_blob(name).readall()
    doc = json.loads(original)
    doc["public"]["status"] = "acknowledged"  # the plaintext half no longer matches
    container.upload_blob(name, json.dumps(doc).encode(), overwrite=True)
    try:
        clock.advance(days=30)
        posts = len(receiver.posts)
        with pytest.raises(IntegrityError):  # raised once the others are done
            proc.requests.send_reminders(within_days=7)
        reminded = {json.loads(p.body)["request_id"] for p in receiver.posts[posts:]
                    if b'"request.reminder"' in p.body}
        assert ok in reminded and damaged not in reminded
    finally:  # other tests' runs walk every controller of this Azurite
        container.upload_blob(name, original, overwrite=True)


def test_a_damaged_outbox_entry_does_not_hold_back_the_controllers_other_deliveries(
    proc: Processor, clock: Clock, receiver: Receiver, blobs: BlobServiceClient
) -> None:
    # Before, the pump read every outbox entry of a controller first, so one damaged
    # entry failed the whole controller and none of its notifications went out.
    cid = new_controller(proc)
    receiver.fail_first = 2
    proc.requests.set_route(cid, WebhookRoute(url=receiver.url, secret=SECRET), actor=OPERATOR)
    for _ in range(2):
        proc.requests.receive(**request_args(cid, clock))  # type: ignore[arg-type]
    container = blobs.get_container_client(f"mzc-{cid}")
    outbox = sorted(n for n in container.list_blob_names(name_starts_with="outbox/")
                    if json.loads(container.download_blob(n).readall())["public"]["event"]
                    == "request.received")
    assert len(outbox) == 2
    original = container.download_blob(outbox[0]).readall()
    doc = json.loads(original)
    doc["public"]["attempts"] = "many"
    container.upload_blob(outbox[0], json.dumps(doc).encode(), overwrite=True)
    try:
        listed = []  # the listing shows the rest, then raises (it used to show nothing)
        with pytest.raises(IntegrityError):
            for info in proc.requests.list_pending_deliveries(actor=OPERATOR,
                                                              controller_id=cid):
                listed.append(info)
        assert [d.event for d in listed].count("request.received") == 1
        clock.advance(hours=1)
        report = proc.requests.deliver_pending()
        assert report.failed >= 1
        assert [p.status for p in receiver.posts] == [500, 500, 204]  # the other one went
    finally:
        container.upload_blob(outbox[0], original, overwrite=True)
        clock.advance(hours=1)
        proc.requests.deliver_pending()


def test_an_idle_controller_gets_no_endless_checkpoints_from_the_pump(
    proc: Processor, clock: Clock, receiver: Receiver
) -> None:
    # Delivering a checkpoint was an audited event: the next time-based seal sealed it,
    # and its delivery made another, so a controller with no activity at all received a
    # checkpoint on every pump run, for ever (one delivered/ marker each).
    cid = new_controller(proc)
    route = WebhookRoute(url=receiver.url, secret=SECRET)
    proc.requests.set_route(cid, route, actor=OPERATOR)
    proc._writers[cid]._checkpoint_seconds = 0.5  # for the 60 s; a pump every "0.6 minute"
    time.sleep(0.6)
    proc.requests.deliver_pending()  # what the set-up itself sealed
    before = len(receiver.checkpoints)
    for _ in range(5):  # no activity on this controller, only the pump
        time.sleep(0.6)
        clock.advance(minutes=1)
        proc.requests.deliver_pending()
    mine = [json.loads(p.body) for p in receiver.checkpoints[before:]]
    assert [n for n in mine if n["controller_id"] == cid] == []
