"""The audit writer when an append lands but its acknowledgement is lost (issue 5 items 1, 4).

A loopback TCP proxy sits between the library and a real Azurite. It forwards every
request, but can throw away responses, as a network that fails after the request reached
the service does (a timeout, a reset connection). Azurite really performs the append; the
library never hears so.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from mizaic_processor import (
    Actor,
    AuditError,
    ControllerScope,
    LocalKeyring,
    NHSNumber,
    Processor,
    RecordRef,
)
from mizaic_processor.testing import ACCOUNT_KEY, ACCOUNT_NAME, AzuriteServer

OPERATOR = Actor.processor_operator("ops@mizaic.example")
SERVICE = Actor.service("svc-epr")
ADMIN = Actor.controller_admin("dpo@trust.example")


class LossyProxy:
    """Forwards TCP to ``upstream_port``; drops responses when told to.

    ``drop_appends``: the next N responses to append-block requests are discarded and
    their connection closed. ``drop_all``: every response is discarded.
    """

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.drop_all = threading.Event()
        self.drop_appends = 0
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
                if b"comp=appendblock" in data:
                    with self._lock:
                        if self.drop_appends > 0:
                            self.drop_appends -= 1
                            doomed.set()
                upstream.sendall(data)
        with contextlib.suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

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


@pytest.fixture
def setup(azurite: AzuriteServer) -> Iterator[Setup]:
    proxy = LossyProxy(azurite.blob_port)
    try:
        with Processor.from_connection_string(
            proxy.connection_string, region="uksouth", keyring=LocalKeyring.generate(),
            retry_total=0,
        ) as proc:
            cid = "la" + uuid.uuid4().hex[:12]
            proc.register_controller(cid, name="Lossy Trust", actor=OPERATOR)
            service = proc.tenant(cid, actor=SERVICE)
            admin = proc.tenant(cid, actor=ADMIN)
            ref = service.create_record(NHSNumber("9434765919"), category="adult",
                                        fields={"bp": 120})
            yield Setup(proxy, proc, service, admin, ref)
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
