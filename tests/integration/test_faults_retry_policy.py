"""Retries against a dead endpoint (DESIGN §4, §4a; issue 5 item 4: "sensible, documented
settings").

The documented schedule is kept honest: retry n waits about ``retry_backoff + 2**n`` s
(jittered by 1 s), so no setting gives sub-second retries.

The endpoint is a loopback port nobody listens on, so every request is refused at once and
only the retry policy's back-off decides how long a call takes to fail.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from mizaic_processor import LocalKeyring, Processor, StorageError
from mizaic_processor._azure.blob import BlobStore
from mizaic_processor.testing import ACCOUNT_KEY, ACCOUNT_NAME


def dead_connection_string() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};"
    )


def seconds_to_fail(retry_total: int, retry_backoff: float) -> float:
    conn = dead_connection_string()
    with Processor.from_connection_string(
        conn, region="uksouth", keyring=LocalKeyring.generate(), retry_total=retry_total,
        retry_backoff=retry_backoff,
    ) as proc:
        started = time.monotonic()
        with pytest.raises(StorageError) as caught:
            proc.get_controller("rj1")
        elapsed = time.monotonic() - started
    assert "127.0.0.1" not in str(caught.value)
    return elapsed


def test_a_dead_endpoint_without_retries_fails_at_once_with_storage_error() -> None:
    assert seconds_to_fail(retry_total=0, retry_backoff=0.05) < 1.0


def test_the_first_retry_waits_retry_backoff_plus_two_seconds_give_or_take_one() -> None:
    # Processor documents: retry n waits about retry_backoff + 2**n seconds, jittered by one
    # second. So one retry after 0.05 s of base back-off waits between 1.05 s and 3.05 s.
    elapsed = seconds_to_fail(retry_total=1, retry_backoff=0.05)

    assert 1.0 <= elapsed < 3.05 + 1.0


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        port = sock.getsockname()[1]
        yield (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT_NAME};"
            f"AccountKey={ACCOUNT_KEY};BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT_NAME};"
        )


def test_a_service_that_never_answers_fails_after_the_read_timeout(
    silent_endpoint: str,
) -> None:
    # Before the fix the timeouts were handed to the SDK beside a custom transport, which
    # the SDK then ignores: a silent service held the call for the transport's 300 s.
    store = BlobStore.from_connection_string(
        silent_endpoint, retry_total=0, timeout=1.0, read_timeout=1.0
    )
    try:
        started = time.monotonic()
        with pytest.raises(StorageError):
            store.container("rj1").get("x")
        elapsed = time.monotonic() - started
    finally:
        store.close()
    assert 0.9 <= elapsed < 15.0


def test_the_processor_uses_the_documented_timeouts(silent_endpoint: str) -> None:
    # docs/configuration.md: connection timeout 20 s, read timeout 60 s (too long to wait
    # for in a test, so the transport the processor's requests go through is inspected)
    with Processor.from_connection_string(
        silent_endpoint, region="uksouth", keyring=LocalKeyring.generate(), retry_total=0,
    ) as proc:
        config = proc._store._service._config.transport.connection_config
        assert (config.timeout, config.read_timeout) == (20.0, 60.0)
