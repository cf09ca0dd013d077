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


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """``socket.getaddrinfo`` with made-up names: ``stuck.example`` takes 8 s to answer,
    ``many.example`` resolves to several addresses (set by the test); others as usual."""
    real = socket.getaddrinfo
    names: dict[str, object] = {}
    release = threading.Event()
    for proxy in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                  "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)  # the names must be resolved right here

    def getaddrinfo(host: str, port: int, *args: object, **kwargs: object) -> object:
        if host == "stuck.example":
            release.wait(8)
            raise socket.gaierror(socket.EAI_AGAIN, "temporary failure")
        if host in names:
            return names[host]
        return real(host, port, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield names
    release.set()


def test_a_name_that_takes_too_long_to_resolve_is_a_timeout_at_the_deadline(
    resolver: dict[str, object],
) -> None:
    started = time.monotonic()
    with pytest.raises(WebhookFailed) as failed:
        post("https://stuck.example/hook", b"{}", secret="s", delivery_id="d1",
             event="request.received", timestamp=1, timeout=5.0, deadline=1.5)
    assert failed.value.code == "timeout"
    assert time.monotonic() - started < 3.0  # the resolver answers only after 8 s


def test_each_address_of_a_name_is_tried_in_turn(resolver: dict[str, object]) -> None:
    # The attempt resolves the name itself now (to bound the wait): a name with several
    # addresses, IPv4 and IPv6, must still be connected to at the first that accepts, and
    # at the address exactly as resolved.
    with socket.socket() as first, socket.socket(socket.AF_INET6) as second, \
            socket.socket(socket.AF_INET6) as good:
        first.bind(("127.0.0.1", 0))
        second.bind(("::1", 0))
        good.bind(("::1", 0))
        good.listen(4)
        resolver["many.example"] = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", first.getsockname()),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", second.getsockname()),
            (socket.AF_INET6, socket.SOCK_STREAM, 6, "", good.getsockname()),
        ]
        reached: list[bytes] = []

        def accept() -> None:
            good.settimeout(5)
            conn, _ = good.accept()
            with conn:
                conn.settimeout(5)
                reached.append(conn.recv(5))  # the start of a TLS ClientHello
            # and closes: the handshake fails

        worker = threading.Thread(target=accept, daemon=True)
        worker.start()
        with pytest.raises(WebhookFailed) as failed:
            post("https://many.example:8443/hook", b"{}", secret="s", delivery_id="d1",
                 event="request.received", timestamp=1, timeout=5.0, deadline=5.0)
        worker.join(5)
    assert failed.value.code == "unreachable"  # the TLS handshake, not the connect
    assert len(reached) == 1 and reached[0][:1] == b"\x16"  # a TLS handshake record


def test_addresses_that_do_not_answer_share_one_deadline(
    resolver: dict[str, object],
) -> None:
    # A listening socket whose queue is full drops further connection attempts: each
    # connect hangs. Before, each of a name's addresses had the time left at the start
    # (here 1.5 s each, 4.5 s for three); now they share it.
    with socket.socket() as full:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        address = full.getsockname()
        fillers = []
        try:
            for _ in range(4):  # fill the accept queue (never accepted)
                filler = socket.socket()
                filler.setblocking(False)
                filler.connect_ex(address)
                fillers.append(filler)
            time.sleep(0.2)
            resolver["many.example"] = [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", address)] * 3
            started = time.monotonic()
            with pytest.raises(WebhookFailed) as failed:
                post("https://many.example/hook", b"{}", secret="s", delivery_id="d1",
                     event="request.received", timestamp=1, timeout=5.0, deadline=1.5)
            took = time.monotonic() - started
        finally:
            for filler in fillers:
                filler.close()
    assert failed.value.code == "timeout"
    assert took < 2.5


def test_no_thread_for_the_deadline_is_a_failed_attempt_not_a_crash(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start = threading.Thread.start

    def refuse(self: threading.Thread) -> None:
        if self.name.startswith("mizaic-webhook"):
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    with pytest.raises(WebhookFailed) as failed:
        post("http://127.0.0.1:9/hook", b"{}", secret="s", delivery_id="d1",
             event="request.received", timestamp=1)
    assert failed.value.code == "unreachable"


def test_plain_http_to_this_machine_never_goes_through_a_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy would carry the signed notification off the machine unencrypted.
    stop = threading.Event()
    with socket.socket() as proxy, socket.socket() as target:
        for sock in (proxy, target):
            sock.bind(("127.0.0.1", 0))
            sock.listen(4)
        proxy_port = proxy.getsockname()[1]
        for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy_port}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        workers = [threading.Thread(target=_serve, args=(sock, "prompt", stop), daemon=True)
                   for sock in (target,)]
        for worker in workers:
            worker.start()
        proxy.settimeout(0.5)
        try:
            status = post(f"http://127.0.0.1:{target.getsockname()[1]}/hook", b"{}",
                          secret="s", delivery_id="d1", event="request.received",
                          timestamp=1, timeout=5.0, deadline=5.0)
            with pytest.raises(TimeoutError):
                proxy.accept()[0].close()  # nothing came to the proxy
        finally:
            stop.set()
            for worker in workers:
                worker.join(5)
    assert status == 204
