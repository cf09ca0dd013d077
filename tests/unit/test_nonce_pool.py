"""The nonce source of the stores (a per-thread pool) never hands out a nonce twice: not in
one thread, not across threads, not in a forked child (which inherits its parent's pools)."""

from __future__ import annotations

import os
import threading

import pytest

from mizaic_processor._core import envelope


class _Nonces:
    """The nonce source as a controller scope holds it."""

    def __init__(self) -> None:
        self._nonce = envelope.NonceSource(os.urandom)


def bare_scope() -> _Nonces:
    return _Nonces()


def test_nonces_are_unique_within_and_across_threads() -> None:
    scope = bare_scope()
    seen: list[bytes] = []
    lock = threading.Lock()

    def draw() -> None:
        mine = [scope._nonce() for _ in range(500)]
        with lock:
            seen.extend(mine)

    threads = [threading.Thread(target=draw) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4000
    assert all(len(n) == envelope.NONCE_BYTES for n in seen)
    assert len(set(seen)) == len(seen)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_its_parents_pool() -> None:
    scope = bare_scope()
    scope._nonce()  # the parent's pool now holds 63 unused nonces
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the next nonces it would use
        try:
            os.write(write, b"".join(scope._nonce() for _ in range(4)))
        finally:
            os._exit(0)
    os.close(write)
    child = b""
    while chunk := os.read(read, 4096):
        child += chunk
    os.close(read)
    os.waitpid(pid, 0)
    parent = b"".join(scope._nonce() for _ in range(4))
    assert len(child) == len(parent) == 4 * envelope.NONCE_BYTES
    assert child != parent
    step = envelope.NONCE_BYTES
    assert not {child[i:i + step] for i in range(0, len(child), step)} & {
        parent[i:i + step] for i in range(0, len(parent), step)
    }
