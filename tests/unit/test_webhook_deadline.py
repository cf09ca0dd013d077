"""A webhook attempt has a deadline for the whole exchange, not only per network wait: an
endpoint that trickles its answer a byte at a time, in its headers or its body, or that
never completes a TLS handshake, is cut off (local socket servers, no Azure involved)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mizaic_processor._webhook import WebhookFailed, post

HEAD = b"HTTP/1.1 200 OK\r\nX-Slow: "
BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n"


def _serve(sock: socket.socket, mode: str, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        with conn:
            if mode == "silent":  # accepts, reads the TLS hello, never answers
                stop.wait(20)
                continue
            conn.recv(65536)
            if mode == "prompt":
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                continue
            conn.sendall(HEAD if mode == "headers" else BODY)
            for _ in range(60):  # one byte every 0.25 s: no read waits 1 s, 15 s in all
                if stop.wait(0.25):
                    break
                try:
                    conn.sendall(b"a")
                except OSError:
                    break


@pytest.fixture(params=["headers", "body", "silent", "prompt"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    stop = threading.Event()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        worker = threading.Thread(target=_serve, args=(sock, request.param, stop), daemon=True)
        worker.start()
        scheme = "https" if request.param == "silent" else "http"
        yield f"{scheme}://127.0.0.1:{sock.getsockname()[1]}/hook", request.param
        stop.set()
        worker.join(5)


def test_an_endpoint_that_trickles_or_stalls_is_cut_off_at_the_deadline(
    endpoint: tuple[str, str],
) -> None:
    url, mode = endpoint
    started = time.monotonic()
    if mode == "prompt":  # the deadline does not cut a prompt answer short
        assert post(url, b"{}", secret="s", delivery_id="d1", event="request.received",
                    timestamp=1, timeout=5.0, deadline=2.0) == 204
        return
    with pytest.raises(WebhookFailed) as failed:
        post(url, b"{}", secret="s", delivery_id="d1", event="request.received",
             timestamp=1, timeout=5.0, deadline=2.0)
    assert failed.value.code == "timeout"
    # each read waits under 1 s (or, silent, 5 s); the whole answer would take 15 s
    assert time.monotonic() - started < 4.0
