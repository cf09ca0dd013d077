"""A webhook attempt has a deadline for the whole exchange, not only per network wait: an
endpoint that trickles its answer a byte at a time is cut off (a local socket server, no
Azure involved)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from mizaic_processor._webhook import WebhookFailed, post


def _serve(sock: socket.socket, trickle: bool, stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            conn, _ = sock.accept()
        except TimeoutError:
            continue
        with conn:
            conn.recv(65536)
            if not trickle:
                conn.sendall(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                continue
            conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(60):  # one byte every 0.25 s: no read waits 1 s, 15 s in all
                if stop.wait(0.25):
                    break
                try:
                    conn.sendall(b"a")
                except OSError:
                    break


@pytest.fixture(params=[True, False], ids=["trickling", "prompt"])
def endpoint(request: pytest.FixtureRequest) -> Iterator[tuple[str, bool]]:
    stop = threading.Event()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(4)
        worker = threading.Thread(target=_serve, args=(sock, request.param, stop), daemon=True)
        worker.start()
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/hook", request.param
        stop.set()
        worker.join(5)


def test_an_endpoint_that_trickles_its_answer_is_cut_off_at_the_deadline(
    endpoint: tuple[str, bool],
) -> None:
    url, trickling = endpoint
    started = time.monotonic()
    if trickling:
        with pytest.raises(WebhookFailed) as failed:
            post(url, b"{}", secret="s", delivery_id="d1", event="request.received",
                 timestamp=1, timeout=1.0, deadline=2.0)
        assert failed.value.code == "timeout"
        assert time.monotonic() - started < 6.0  # the answer would have taken 15 s
    else:  # the deadline does not cut a prompt answer short
        assert post(url, b"{}", secret="s", delivery_id="d1", event="request.received",
                    timestamp=1, timeout=1.0, deadline=2.0) == 204
