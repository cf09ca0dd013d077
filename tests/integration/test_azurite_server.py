"""The Azurite launcher and fixtures of ``mizaic_processor.testing`` against a real Azurite."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ServiceRequestError
from azure.storage.blob import BlobServiceClient

from mizaic_processor.testing import AzuriteFactory, AzuriteServer, find_azurite_js

# Small retry settings: a dead endpoint must fail in well under a second, not after ~80 s.
FAST_FAIL: dict[str, Any] = {
    "retry_total": 1,
    "retry_connect": 0,
    "retry_read": 0,
    "retry_status": 0,
    "retry_backoff_factor": 0.01,
    "connection_timeout": 2,
}


def _client(server: AzuriteServer) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(server.connection_string, **FAST_FAIL)


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def test_connection_string_names_loopback_endpoints(azurite: AzuriteServer) -> None:
    conn = azurite.connection_string
    assert "AccountName=devstoreaccount1;" in conn
    assert f"BlobEndpoint=http://127.0.0.1:{azurite.blob_port}/devstoreaccount1;" in conn
    assert f"QueueEndpoint=http://127.0.0.1:{azurite.queue_port}/devstoreaccount1;" in conn
    assert azurite.blob_endpoint == f"http://127.0.0.1:{azurite.blob_port}/devstoreaccount1"
    assert len({azurite.blob_port, azurite.queue_port, azurite.table_port}) == 3
    assert azurite.running
    assert azurite.pid is not None
    assert azurite.location.is_dir()


def test_blob_round_trip(azurite: AzuriteServer) -> None:
    container = f"rt-{uuid.uuid4().hex}"
    payload = uuid.uuid4().bytes * 100
    with _client(azurite) as service:
        service.create_container(container)
        blob = service.get_blob_client(container, "dir/blob.bin")
        blob.upload_blob(payload, metadata={"kind": "test"})
        assert blob.download_blob().readall() == payload
        assert blob.get_blob_properties().metadata == {"kind": "test"}
        names = [b.name for b in service.get_container_client(container).list_blobs()]
        assert names == ["dir/blob.bin"]


def test_restart_keeps_data_and_ports(azurite_factory: AzuriteFactory) -> None:
    server = azurite_factory()
    ports = (server.blob_port, server.queue_port, server.table_port)
    first_pid = server.pid
    with _client(server) as service:
        service.create_container("keep")
        service.get_blob_client("keep", "a.txt").upload_blob(b"survives a restart")

    server.stop()  # SIGTERM: Azurite flushes its metadata before exiting
    assert not server.running
    assert server.pid is None
    assert _refuses_connections(server.blob_port)

    server.start()
    assert server.running
    assert server.pid != first_pid
    assert (server.blob_port, server.queue_port, server.table_port) == ports
    with _client(server) as service:
        assert service.get_blob_client("keep", "a.txt").download_blob().readall() == (
            b"survives a restart"
        )

    server.restart()
    with _client(server) as service:
        assert service.get_blob_client("keep", "a.txt").download_blob().readall() == (
            b"survives a restart"
        )


def test_kill_makes_endpoint_refuse_connections(azurite_factory: AzuriteFactory) -> None:
    server = azurite_factory()
    with _client(server) as service:
        service.create_container("before-kill")
        server.kill()
        assert not server.running
        assert server.pid is None
        assert _refuses_connections(server.blob_port)
        assert _refuses_connections(server.queue_port)
        with pytest.raises(ServiceRequestError):
            service.create_container("after-kill")
    server.kill()  # idempotent too


def test_stop_is_idempotent(azurite_factory: AzuriteFactory) -> None:
    server = azurite_factory()
    server.stop()
    server.stop()
    server.kill()
    assert not server.running
    never_started = AzuriteServer()
    never_started.stop()
    never_started.kill()
    never_started.close()


def test_independent_servers_do_not_share_data(
    azurite: AzuriteServer, azurite_factory: AzuriteFactory
) -> None:
    other = azurite_factory()
    assert other.blob_port != azurite.blob_port
    assert other.location != azurite.location
    container = f"only-here-{uuid.uuid4().hex}"
    with _client(other) as service:
        service.create_container(container)
    with _client(azurite) as service:
        assert not service.get_container_client(container).exists()


def test_context_manager_removes_its_temporary_folder() -> None:
    with AzuriteServer() as server:
        location = server.location
        assert server.running
        assert location.is_dir()
    assert not server.running
    assert not location.exists()


def test_endpoints_need_a_start() -> None:
    server = AzuriteServer()
    with pytest.raises(RuntimeError, match="start"):
        _ = server.connection_string


def test_missing_azurite_js_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("MIZAIC_AZURITE_JS", str(tmp_path / "nope.js"))
    with pytest.raises(RuntimeError, match="MIZAIC_AZURITE_JS"):
        find_azurite_js()
