"""Writes whose acknowledgement is lost (issue 5 items 1, 4).

A loopback TCP proxy sits between the library and a real Azurite. It forwards every
request, but can throw away responses, as a network that fails after the request reached
the service does (a timeout, a reset connection). Azurite really performs the write; the
library never hears so. Covered: the audit writer's appends, and a record's document
written after its content (a stored record must never point at deleted content).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient

from mizaic_processor import (
    Actor,
    AuditError,
    ConflictError,
    ControllerScope,
    LocalKeyring,
    NHSNumber,
    Processor,
    RecordRef,
    StorageError,
)
from mizaic_processor.testing import ACCOUNT_KEY, ACCOUNT_NAME, AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")
PDF = "application/pdf"
PATIENT = NHSNumber("4010232137")
LETTER = b"%PDF-1.7 discharge letter\n" + bytes(range(256)) * 64


class LossyProxy:
    """Forwards TCP to ``upstream_port``; drops responses when told to.

    ``drop_appends``: the next N responses to append-block requests are discarded and
    their connection closed. ``drop_all``: every response is discarded.
    ``drop_matching`` / ``drop_count``: the responses to the next ``drop_count`` requests
    whose bytes contain ``drop_matching`` (e.g. ``b"PUT /<account>/<container>/records/"``)
    are discarded; with ``swallow`` those requests are not even forwarded (the write never
    reaches the service). ``before_forwarding``: ``(pattern, callback)``, the callback runs
    once, before the first request containing ``pattern`` is forwarded (a racing change).
    ``dropped`` counts the requests whose answer the client never got.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.drop_all = threading.Event()
        self.drop_appends = 0
        self.drop_matching: bytes | None = None
        self.drop_count = 0
        self.swallow = False
        self.before_forwarding: tuple[bytes, Callable[[], object]] | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream))
            with self._lock:
                self._sockets += [client, upstream]
            doomed = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, doomed), daemon=True).start()
            threading.Thread(
                target=self._down, args=(upstream, client, doomed), daemon=True
            ).start()

    def _up(self, client: socket.socket, upstream: socket.socket, doomed: threading.Event) -> None:
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                hook = self._hook(data)
                if hook is not None:
                    hook()
                if self._doom(data, doomed):
                    break  # swallowed: never forwarded
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _hook(self, data: bytes) -> Callable[[], object] | None:
        with self._lock:
            if self.before_forwarding is None or self.before_forwarding[0] not in data:
                return None
            hook, self.before_forwarding = self.before_forwarding[1], None
        return hook

    def _doom(self, data: bytes, doomed: threading.Event) -> bool:
        """Mark the connection's response to be dropped if ``data`` is a request to drop;
        ``True`` if the request itself is to be swallowed."""
        with self._lock:
            if b"comp=appendblock" in data and self.drop_appends > 0:
                self.drop_appends -= 1
                doomed.set()
            if (
                self.drop_matching is not None
                and self.drop_matching in data
                and self.drop_count > 0
            ):
                self.drop_count -= 1
                doomed.set()
                if self.swallow:
                    self.dropped += 1
                    return True
        return False

    def _down(
        self, upstream: socket.socket, client: socket.socket, doomed: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := upstream.recv(65536):
                if doomed.is_set() or self.drop_all.is_set():
                    with self._lock:
                        self.dropped += 1
                    break
                client.sendall(data)
        for sock in (client, upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{self.port}/{ACCOUNT_NAME};"
        )

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()


@dataclass
class Setup:
    proxy: LossyProxy
    proc: Processor
    service: ControllerScope
    admin: ControllerScope
    ref: RecordRef
    cid: str
    keyring: LocalKeyring
    direct: ControllerScope  # the same controller through a processor not behind the proxy
    raw: ContainerClient  # the controller's container, straight from Azurite

    def path(self, prefix: str) -> bytes:
        """The start of a request's path to this controller's blobs under ``prefix``."""
        return f"/{ACCOUNT_NAME}/mzc-{self.cid}/{prefix}".encode()

    def names(self, prefix: str) -> list[str]:
        return sorted(self.raw.list_blob_names(name_starts_with=prefix))


@pytest.fixture
def setup(azurite: AzuriteServer) -> Iterator[Setup]:
    proxy = LossyProxy(azurite.blob_port)
    keyring = LocalKeyring.generate()
    try:
        with (
            Processor.from_connection_string(
                proxy.connection_string, region="uksouth", keyring=keyring, retry_total=0,
            ) as proc,
            Processor.from_connection_string(
                azurite.connection_string, region="uksouth", keyring=keyring, retry_total=0,
            ) as direct,
            BlobServiceClient.from_connection_string(azurite.connection_string) as service_client,
        ):
            cid = "la" + uuid.uuid4().hex[:12]
            proc.register_controller(cid, name="Lossy Trust", actor=OPERATOR)
            service = proc.tenant(cid, actor=SERVICE)
            admin = proc.tenant(cid, actor=ADMIN)
            ref = service.create_record(NHSNumber("9434765919"), category="adult",
                                        fields={"bp": 120})
            yield Setup(
                proxy, proc, service, admin, ref, cid, keyring,
                direct.tenant(cid, actor=SERVICE),
                service_client.get_container_client(f"mzc-{cid}"),
            )
            proxy.drop_all.clear()
    finally:
        proxy.close()


def test_an_append_whose_acknowledgement_is_lost_is_found_landed_and_the_operation_proceeds(
    setup: Setup,
) -> None:
    setup.proxy.drop_appends = 1

    updated = setup.service.update_record(setup.ref.record_id, etag=setup.ref.etag,
                                          fields={"bp": 130})
    report = setup.admin.audit.verify()

    assert setup.proxy.dropped == 1
    assert updated.version == 2
    assert report.events == 4  # register, create, update, verify: the update counted once


def test_after_an_append_of_unknown_outcome_the_chain_does_not_fork(setup: Setup) -> None:
    setup.proxy.drop_all.set()  # the append lands; its answer and the read-back are lost
    with pytest.raises(AuditError):
        setup.service.update_record(setup.ref.record_id, etag=setup.ref.etag, fields={"bp": 1})
    setup.proxy.drop_all.clear()

    updated = setup.service.update_record(setup.ref.record_id, etag=setup.ref.etag,
                                          fields={"bp": 130})
    assert updated.version == 2  # the refused update never ran
    setup.admin.audit.verify()


# -- a record's document written after its content ------------------------------------------


def assert_no_dangling_content(setup: Setup) -> None:
    """Every stored record that names content can stream it, verified to its end."""
    for subject in (NHSNumber("9434765919"), PATIENT):
        for record_id in setup.direct.list_records(subject):
            info = setup.direct.get_record(record_id).content
            if info is None:
                continue
            with setup.direct.open_content(record_id) as reader:
                data = reader.read()
            assert (len(data), hashlib.sha256(data).hexdigest()) == (info.length, info.sha256)


@pytest.mark.parametrize(
    ("method", "lost"),
    [
        pytest.param("PUT ", 1, id="write-answer-lost"),
        pytest.param("", 2, id="write-answer-and-read-back-lost"),
    ],
)
def test_a_record_written_but_unacknowledged_keeps_its_content(
    setup: Setup, method: str, lost: int
) -> None:
    # The document lands but its answer is lost (with the read-back made to check it):
    # the outcome is unknown to the library, which must not delete content it may point at.
    setup.proxy.drop_matching = method.encode() + setup.path("records/")
    setup.proxy.drop_count = lost

    with pytest.raises(StorageError):
        setup.service.create_record(PATIENT, category="adult", fields={"bp": 110},
                                    content=LETTER, content_type=PDF)

    [record_id] = setup.direct.list_records(PATIENT)  # the write did land
    assert [n for n in setup.names("records/") if n.endswith(record_id[27:])]
    assert len(setup.names("content/")) == 1
    record = setup.direct.get_record(record_id)
    assert record.fields == {"bp": 110}
    with setup.direct.open_content(record_id) as reader:
        assert reader.read() == LETTER
    assert_no_dangling_content(setup)
    assert setup.proxy.dropped == lost  # the answers (and the read-back) really were lost


def test_a_record_write_that_retries_and_is_never_acknowledged_keeps_its_content(
    setup: Setup,
) -> None:
    # Every attempt's answer is lost: the first attempt lands, the SDK's retry (a
    # create-only PUT) finds it there but that answer is lost too.
    setup.proxy.drop_matching = b"PUT " + setup.path("records/")
    setup.proxy.drop_count = 10
    with (
        Processor.from_connection_string(
            setup.proxy.connection_string, region="uksouth", keyring=setup.keyring,
            retry_total=1, retry_backoff=0,
        ) as retrying,
        pytest.raises(StorageError),
    ):
        retrying.tenant(setup.cid, actor=SERVICE).create_record(
            PATIENT, category="adult", content=LETTER, content_type=PDF
        )

    [record_id] = setup.direct.list_records(PATIENT)
    with setup.direct.open_content(record_id) as reader:
        assert reader.read() == LETTER
    assert_no_dangling_content(setup)
    assert setup.proxy.dropped == 2  # the write and its retry


def test_a_record_write_that_never_reached_storage_leaves_no_orphan_content(
    setup: Setup,
) -> None:
    setup.proxy.drop_matching = b"PUT " + setup.path("records/")
    setup.proxy.drop_count = 1
    setup.proxy.swallow = True

    with pytest.raises(StorageError):
        setup.service.create_record(PATIENT, category="adult", content=LETTER,
                                    content_type=PDF)

    assert setup.proxy.dropped == 1
    assert list(setup.direct.list_records(PATIENT)) == []
    assert setup.names("content/") == []  # the read-back found no record: content deleted
    assert_no_dangling_content(setup)


def _touch_records(setup: Setup) -> Callable[[], None]:
    """A change the library does not make: new etags on every stored record document."""

    def touch() -> None:
        for name in setup.names("records/"):
            setup.raw.get_blob_client(name).set_blob_metadata({"touched": "yes"})

    return touch


@pytest.mark.parametrize("answer_lost", [False, True], ids=["conflict", "conflict-answer-lost"])
def test_an_update_with_content_on_a_stale_etag_deletes_the_new_content(
    setup: Setup, answer_lost: bool
) -> None:
    ref = setup.service.create_record(PATIENT, category="adult", fields={"v": 0},
                                      content=b"original", content_type=PDF)
    original = setup.names("content/")
    assert len(original) == 1
    # The etag goes stale between the library's pre-check and its conditional write: the
    # record changes while the new content is being uploaded.
    setup.proxy.before_forwarding = (b"PUT " + setup.path("content/"), _touch_records(setup))
    if answer_lost:  # the refusal's answer is lost too: the outcome is unknown
        setup.proxy.drop_matching = b"PUT " + setup.path("records/")
        setup.proxy.drop_count = 1

    with pytest.raises(StorageError if answer_lost else ConflictError):
        setup.service.update_record(ref.record_id, etag=ref.etag, fields={"v": 1},
                                    content=LETTER, content_type=PDF)

    assert setup.proxy.before_forwarding is None  # the racing change ran
    assert setup.proxy.dropped == (1 if answer_lost else 0)
    assert setup.names("content/") == original  # only the old content remains
    record = setup.direct.get_record(ref.record_id)
    assert (record.version, record.fields) == (1, {"v": 0})
    with setup.direct.open_content(ref.record_id) as reader:
        assert reader.read() == b"original"
    assert_no_dangling_content(setup)
