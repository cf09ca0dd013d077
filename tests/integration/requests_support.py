"""Shared pieces of the subject-request tests: a settable clock, a real local HTTP
receiver, and a processor on the session Azurite that uses both."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from mizaic_processor import Actor, LocalKeyring, Processor
from mizaic_processor.testing import AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
ADMIN = Actor.controller_admin("dpo@trust.example")
SERVICE = Actor.service("svc-epr")
SECRET = "whsec-0123456789abcdef0123456789abcdef"
NHS = "9434765919"
START = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # a Monday


class Clock:
    """A clock the test sets and advances."""

    def __init__(self, now: dt.datetime = START) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> dt.datetime:
        self.now += dt.timedelta(**delta)
        return self.now


@dataclass
class Post:
    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records every request notification POSTed.

    It answers ``fail_first`` POSTs with 500, then 204 (or ``redirect_to`` with a 302).
    Audit checkpoints, which every controller's audit writer also sends through the same
    route, are acknowledged and kept apart in ``checkpoints``.
    """

    url: str = ""
    posts: list[Post] = field(default_factory=list)
    checkpoints: list[Post] = field(default_factory=list)
    fail_first: int = 0
    redirect_to: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def accepted(self) -> list[Post]:
        return [p for p in self.posts if 200 <= p.status < 300]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if b'"type":"audit.checkpoint"' in body:
                with receiver.lock:
                    receiver.checkpoints.append(Post(dict(self.headers.items()), body, 204))
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with receiver.lock:
                if receiver.redirect_to is not None:
                    status = 302
                elif len(receiver.posts) < receiver.fail_first:
                    status = 500
                else:
                    status = 204
                receiver.posts.append(Post(dict(self.headers.items()), body, status))
            self.send_response(status)
            if status == 302 and receiver.redirect_to is not None:
                self.send_header("Location", receiver.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(hook))
    hook.url = f"http://127.0.0.1:{server.server_address[1]}/mizaic"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzuriteServer]:
    """A module's own Azurite, so the pump and the triage list see this module's data only
    (it shadows the plugin's session-wide server)."""
    server = AzuriteServer(tmp_path_factory.mktemp("azurite-requests"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def keyring() -> LocalKeyring:
    """One keyring per module, as one per deployment: every processor here shares it."""
    return LocalKeyring.generate()


@pytest.fixture
def proc(azurite: AzuriteServer, keyring: LocalKeyring, clock: Clock) -> Iterator[Processor]:
    with Processor.from_connection_string(
        azurite.connection_string, region="uksouth", keyring=keyring,
        retry_total=1, retry_backoff=0.1, clock=clock,
    ) as processor:
        yield processor


@pytest.fixture
def blobs(azurite: AzuriteServer) -> Iterator[BlobServiceClient]:
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


@pytest.fixture
def queues(azurite: AzuriteServer) -> Iterator[QueueServiceClient]:
    with QueueServiceClient.from_connection_string(azurite.connection_string) as service:
        yield service


def new_controller(processor: Processor) -> str:
    cid = "r" + uuid.uuid4().hex[:10]
    processor.register_controller(cid, name="Test Trust", actor=OPERATOR)
    return cid


def request_args(controller: str, clock: Clock, /, **changes: object) -> dict[str, object]:
    args: dict[str, object] = {
        "kind": "access",
        "controller": controller,
        "subject": "943 476 5919",
        "contact": {"name": "Aurelia Quenby", "email": "aurelia.quenby@example.org",
                    "phone": "+44 113 496 0000", "postal_address": "1 Lantern Yard, Leeds"},
        "received_at": clock.now,
        "channel": "email",
        "text": "Please send me everything you hold about my knee surgery.",
        "actor": OPERATOR,
    }
    args.update(changes)
    return args


PERSONAL = ("9434765919", "943 476 5919", "Aurelia", "Quenby", "aurelia.quenby",
            "496 0000", "Lantern Yard", "knee surgery")


def assert_no_personal_data(data: bytes | str) -> None:
    text = data if isinstance(data, str) else data.decode("utf-8", "replace")
    for needle in PERSONAL:
        assert needle not in text, needle


def all_blobs(service: BlobServiceClient, *containers: str) -> dict[str, bytes]:
    """Every blob of the containers (those that exist), name -> bytes."""
    found = {}
    for name in containers:
        container = service.get_container_client(name)
        if not container.exists():
            continue
        for blob in container.list_blobs():
            found[f"{name}/{blob.name}"] = container.download_blob(blob.name).readall()
    return found
