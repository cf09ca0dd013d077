"""Routes and the outbox: how a notification reaches a controller, exactly once per id.

A controller's route is one sealed document, ``routing/route`` (plaintext: the kind and
the queue name or URL; sealed: the webhook secret). A notification is opaque (ids, codes,
coarse dates; never the subject, contact details or text) and waits in the controller's
outbox, ``outbox/<delivery id>``, until it is delivered:

1. the outbox entry is written *before* anything else of the operation that causes it, so a
   crash never loses a notification (an entry whose request never appeared is dropped
   after :data:`ORPHAN_AFTER`);
2. an attempt first *claims* the entry (an etag-conditional write moving its next attempt
   into the future), so concurrent pumps never send it twice at once;
3. on success ``delivered/<delivery id>`` is created, then the entry is deleted: a delivery
   id that is marked delivered is never sent again. A crash between a send and its mark
   can repeat it once; the body's ``delivery_id`` (signed; the ``X-Mizaic-Delivery``
   header repeats it unsigned) lets the receiver drop the repeat.

Attempts back off exponentially (30 s doubling to 1 h) and never give up.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mizaic_processor._azure.queue import QueueService, QueueUnreachableError
from mizaic_processor._core import ids
from mizaic_processor._docs import ControllerDocs
from mizaic_processor._request_models import DeliveryInfo, QueueRoute, RouteInfo, WebhookRoute
from mizaic_processor._webhook import WebhookFailed, post
from mizaic_processor.errors import (
    ConflictError,
    IntegrityError,
    MizaicError,
    NotFoundError,
)

ROUTE_DOC = "routing/route"
OUTBOX_PREFIX = "outbox/"
DELIVERED_PREFIX = "delivered/"
NOTIFICATION_FORMAT = "mizaic.notification"
ORPHAN_AFTER = dt.timedelta(minutes=10)
LEASE = dt.timedelta(seconds=60)
BACKOFF_BASE = dt.timedelta(seconds=30)
BACKOFF_MAX = dt.timedelta(hours=1)

EVENTS = frozenset(
    {"request.received", "request.reminder", "breach.reported", "breach.updated",
     "audit.checkpoint", "disclosure.made"}
)


def delivery_id(*parts: str) -> str:
    """A deterministic delivery id for one notification (so re-queueing is idempotent)."""
    digest = hashlib.sha256("\x1f".join(("mizaic/v1/delivery", *parts)).encode()).digest()
    return "d" + ids.b32(digest[:16])


def _integrity() -> IntegrityError:
    return IntegrityError("stored data failed integrity verification")


# -- routes ------------------------------------------------------------------------------


def store_route(
    docs: ControllerDocs, controller_id: str, route: QueueRoute | WebhookRoute, *,
    actor: str, at: dt.datetime,
) -> RouteInfo:
    """Create or replace the controller's route."""
    target = route.queue_name if isinstance(route, QueueRoute) else route.url
    public = {"kind": route.kind, "target": target, "set_at": at.isoformat(), "set_by": actor}
    secret = {"secret": route.secret.get_secret_value()} if isinstance(route, WebhookRoute) \
        else {}
    for _ in range(5):
        try:
            current = docs.get(ROUTE_DOC, what="route")
        except NotFoundError:
            try:
                docs.create(ROUTE_DOC, public, secret, what="route")
            except ConflictError:
                continue
            break
        try:
            docs.replace(ROUTE_DOC, public, secret, etag=current.etag, what="route")
        except ConflictError:
            continue
        break
    else:
        raise ConflictError("the route keeps changing; try again")
    return _route_info(controller_id, public)


def _route_info(controller_id: str, public: dict[str, Any]) -> RouteInfo:
    try:
        return RouteInfo(
            controller_id=controller_id, kind=public["kind"], target=public["target"],
            set_at=dt.datetime.fromisoformat(public["set_at"]), set_by=public["set_by"],
        )
    except (KeyError, TypeError, ValueError):
        raise _integrity() from None


def load_route(docs: ControllerDocs, controller_id: str) -> tuple[RouteInfo, str | None]:
    """The route and, for a webhook, its secret.

    :raises NotFoundError: if no route is set.
    :raises IntegrityError: if it fails verification.
    """
    doc = docs.get(ROUTE_DOC, what="route")
    info = _route_info(controller_id, doc.public)
    secret = doc.secret.get("secret")
    if info.kind == "webhook" and not isinstance(secret, str):
        raise _integrity()
    return info, secret if isinstance(secret, str) else None


# -- the outbox ----------------------------------------------------------------------------


def notification(
    event: str, delivery: str, controller_id: str, at: dt.datetime, **fields: Any
) -> dict[str, Any]:
    """An opaque notification: ids, codes and coarse dates only."""
    if event not in EVENTS:
        raise ValueError("unknown event type")
    return {
        "format": NOTIFICATION_FORMAT, "v": 1, "type": event, "delivery_id": delivery,
        "controller_id": controller_id, "created_at": at.isoformat(), **fields,
    }


def enqueue(docs: ControllerDocs, note: dict[str, Any], *, at: dt.datetime) -> bool:
    """Put a notification in the outbox (create-only); ``False`` if already queued or sent.

    :raises StorageError: if the outbox cannot be written.
    """
    delivery = note["delivery_id"]
    try:
        docs.get(DELIVERED_PREFIX + delivery, what="delivery")
    except NotFoundError:
        pass
    else:
        return False
    public = {
        "delivery_id": delivery, "event": note["type"], "notification": note,
        "created_at": at.isoformat(), "attempts": 0, "next_attempt_at": at.isoformat(),
        "claimed_until": None, "last_error": None,
    }
    try:
        docs.create(OUTBOX_PREFIX + delivery, public, what="delivery")
    except ConflictError:
        return False
    return True


# failure codes that say the endpoint itself is not answering, whatever is sent to it
_ENDPOINT_DOWN = frozenset({"timeout", "unreachable"})


def pending_ids(docs: ControllerDocs) -> list[str]:
    """The delivery ids in the controller's outbox, without reading the entries (a
    damaged entry then fails only its own attempt)."""
    return [name.removeprefix(OUTBOX_PREFIX) for name in docs.names(OUTBOX_PREFIX)]


def pending(
    docs: ControllerDocs, controller_id: str, damaged: list[MizaicError]
) -> list[DeliveryInfo]:
    """The controller's undelivered notifications; an entry that fails verification is
    added to ``damaged`` instead, and the others are still listed."""
    found = []
    for name in docs.names(OUTBOX_PREFIX):
        try:
            found.append(_info(docs, name, controller_id))
        except NotFoundError:  # delivered meanwhile
            continue
        except IntegrityError as exc:
            damaged.append(exc)
    return found


def _info(docs: ControllerDocs, name: str, controller_id: str) -> DeliveryInfo:
    public = docs.get(name, what="delivery").public
    try:
        return DeliveryInfo(
            controller_id=controller_id, delivery_id=public["delivery_id"],
            event=public["event"], attempts=public["attempts"],
            next_attempt_at=dt.datetime.fromisoformat(public["next_attempt_at"]),
            last_error=public["last_error"],
        )
    except (KeyError, TypeError, ValueError):
        raise _integrity() from None


def _backoff(attempts: int) -> dt.timedelta:
    delay: dt.timedelta = BACKOFF_BASE * (2 ** min(attempts - 1, 20))
    return min(delay, BACKOFF_MAX)


Audited = Callable[[str, str, Callable[[], None]], None]
"""Runs a send as one audited operation: ``audited(op, entity, send)``."""


@dataclass
class Deliverer:
    """Attempts the deliveries of one controller's outbox."""

    docs: ControllerDocs
    controller_id: str
    clock: Callable[[], dt.datetime]
    queues: Callable[[], QueueService]
    audited: Audited
    exists: Callable[[dict[str, Any]], bool]
    on_delivered: Callable[[dict[str, Any]], None]
    webhook_timeout: float = 10.0

    def attempt(self, delivery: str) -> str:
        """One attempt at ``delivery``: ``delivered``, ``failed``, ``waiting`` or ``gone``;
        ``down`` is a failure because the endpoint did not answer in time or at all (what
        another attempt at that endpoint in the same run would meet too)."""
        name = OUTBOX_PREFIX + delivery
        try:
            doc = self.docs.get(name, what="delivery")
        except NotFoundError:
            return "gone"
        public = doc.public
        try:
            note: dict[str, Any] = public["notification"]
            attempts = int(public["attempts"])
            due = dt.datetime.fromisoformat(public["next_attempt_at"])
            claimed = public["claimed_until"]
            created = dt.datetime.fromisoformat(public["created_at"])
        except (KeyError, TypeError, ValueError):
            raise _integrity() from None
        if note.get("delivery_id") != delivery:
            raise _integrity()
        now = self.clock()
        if attempts and self._marked(delivery):
            self._finish(name, note)
            return "delivered"
        if due > now or (claimed is not None and dt.datetime.fromisoformat(claimed) > now):
            return "waiting"
        if not self.exists(note):
            if now - created > ORPHAN_AFTER:  # what it announces was never stored: drop it
                self.docs.delete(name, etag=doc.etag, what="delivery")
                return "gone"
            return "waiting"
        attempts += 1
        claim = {**public, "attempts": attempts, "claimed_until": (now + LEASE).isoformat(),
                 "next_attempt_at": (now + _backoff(attempts)).isoformat()}
        try:
            etag = self.docs.replace(name, claim, None, etag=doc.etag, what="delivery")
        except ConflictError:
            return "waiting"
        try:
            self._send(note, now)
        except _Failed as exc:
            failed = {**claim, "claimed_until": None, "last_error": exc.code}
            with contextlib.suppress(MizaicError):  # else the claim expires on its own
                self.docs.replace(name, failed, None, etag=etag, what="delivery")
            return "down" if exc.code in _ENDPOINT_DOWN else "failed"
        self._mark(delivery, note, attempts, now)
        self._finish(name, note)
        return "delivered"

    def _send(self, note: dict[str, Any], now: dt.datetime) -> None:
        try:
            route, secret = load_route(self.docs, self.controller_id)
        except NotFoundError:
            raise _Failed("no-route") from None
        body = json.dumps(note, sort_keys=True, separators=(",", ":")).encode()
        entity = (
            f"request:{note['request_id']}" if "request_id" in note
            else f"breach:{note['breach_id']}" if "breach_id" in note
            else f"controller:{self.controller_id}"
        )
        op = "breach.forward" if note["type"].startswith("breach.") else "request.forward"

        def send() -> None:
            if route.kind == "queue":
                with self.queues() as queues:
                    queues.send(route.target, body.decode())
            else:
                post(route.target, body, secret=secret or "", delivery_id=note["delivery_id"],
                     event=note["type"], timestamp=int(now.timestamp()),
                     timeout=self.webhook_timeout)

        try:
            if note["type"] == "audit.checkpoint":
                # A checkpoint carries no patient data, only the trail's own seal. Auditing
                # its delivery would add an event, which the next time-based seal seals,
                # whose delivery adds another: an idle controller got a checkpoint on every
                # pump run, for ever.
                send()
            else:
                self.audited(op, entity, send)
        except WebhookFailed as exc:
            raise _Failed(exc.code) from None
        except QueueUnreachableError:
            raise _Failed("unreachable") from None
        except NotFoundError:
            raise _Failed("queue-not-found") from None
        except MizaicError as exc:
            raise _Failed(type(exc).__name__) from None

    def _marked(self, delivery: str) -> bool:
        try:
            self.docs.get(DELIVERED_PREFIX + delivery, what="delivery")
        except NotFoundError:
            return False
        return True

    def _mark(self, delivery: str, note: dict[str, Any], attempts: int, now: dt.datetime) -> None:
        public = {"delivery_id": delivery, "event": note["type"], "attempts": attempts,
                  "delivered_at": now.isoformat()}
        with contextlib.suppress(ConflictError):
            self.docs.create(DELIVERED_PREFIX + delivery, public, what="delivery")

    def _finish(self, name: str, note: dict[str, Any]) -> None:
        self.on_delivered(note)
        self.docs.delete(name, what="delivery")


class _Failed(Exception):  # noqa: N818 - internal signal
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code
