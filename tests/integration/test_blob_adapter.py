"""The Blob Storage adapter's record-path verbs (``put``, ``get``, ``append``) against a
real Azurite.

They send their request through the container client's SDK pipeline without the SDK's
per-blob client, so what the SDK would have done for them is checked here: the tags it
encodes, the errors it maps, the one request each costs, and a body cut off mid-read being
fetched again as the SDK's downloader does.
"""

from __future__ import annotations

import contextlib
import re
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from mizaic_processor import (
    AccessDeniedError,
    ConflictError,
    MizaicError,
    NotFoundError,
    StorageError,
)
from mizaic_processor._azure.blob import BlobStore, Container, translate
from mizaic_processor.testing import ACCOUNT_KEY, ACCOUNT_NAME, AzuriteServer


@pytest.fixture
def store(azurite: AzuriteServer) -> Iterator[BlobStore]:
    store = BlobStore.from_connection_string(azurite.connection_string, retry_total=1,
                                             retry_backoff=0.05)
    yield store
    store.close()


@pytest.fixture
def container(store: BlobStore) -> Container:
    container = store.container("adapter-" + uuid.uuid4().hex[:12])
    container.create()
    return container


def raw_container(azurite: AzuriteServer, container: Container) -> object:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    return service.get_container_client(container.name)


def test_put_then_get_round_trips_bytes_and_etag_in_one_request_each(
    store: BlobStore, container: Container,
) -> None:
    data = bytes(range(256)) * 9
    before = store.requests.count
    etag = container.put("records/a b/ü~x", data)
    assert store.requests.count == before + 1
    got = container.get("records/a b/ü~x")
    assert store.requests.count == before + 2
    assert (got.data, got.etag) == (data, etag)
    assert list(container.list_names("records/")) == ["records/a b/ü~x"]


def test_tags_are_stored_as_the_sdk_encodes_them(
    azurite: AzuriteServer, container: Container,
) -> None:
    # every character class Azure allows in a tag: letters, digits, space, + - . / : = _
    tags = {"due-on": "2031-04-05", "Key_2": "a b+c-d.e/f:g=h_i", "x.y": ""}
    container.put("tagged", b"x", tags=tags)

    raw = raw_container(azurite, container)
    assert raw.get_blob_client("tagged").get_blob_tags() == tags  # type: ignore[attr-defined]
    found = [name for name, _ in container.find_by_tags("\"due-on\" = '2031-04-05'")]
    assert found == ["tagged"]


def test_conditional_writes_and_missing_blobs_raise_the_library_errors(
    container: Container,
) -> None:
    etag = container.put("doc", b"one")
    with pytest.raises(ConflictError):
        container.put("doc", b"two")  # create-only
    newer = container.put("doc", b"two", etag=etag)
    with pytest.raises(ConflictError):
        container.put("doc", b"three", etag=etag)  # stale
    assert container.put("doc", b"three", overwrite=True) != newer
    assert container.get("doc").data == b"three"
    with pytest.raises(NotFoundError):
        container.get("missing")
    with pytest.raises(NotFoundError):
        container.append("missing", b"x", position=0)


def test_appends_are_held_to_their_position(container: Container) -> None:
    container.create_append("segment")
    assert container.append("segment", b"abc", position=0) == 1
    assert container.append("segment", b"de", position=3) == 2
    with pytest.raises(ConflictError):
        container.append("segment", b"forked", position=3)
    assert container.get("segment").data == b"abcde"


def test_a_wrong_account_key_fails_as_it_does_through_the_sdk(azurite: AzuriteServer) -> None:
    # Azurite answers 403 AuthorizationFailure (Azure: AuthenticationFailed, which the SDK
    # maps to ClientAuthenticationError, hence AccessDeniedError): whatever the service
    # says, the adapter must raise what the SDK's own operation would have become
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, "A" * 86 + "==")
    assert wrong != azurite.connection_string
    store = BlobStore.from_connection_string(wrong, retry_total=0)
    sdk = BlobServiceClient.from_connection_string(wrong).get_container_client("denied")
    try:
        container = store.container("denied")
        pairs = [
            (lambda: container.get("x"), lambda: sdk.download_blob("x").readall()),
            (lambda: container.put("x", b"y"),
             lambda: sdk.get_blob_client("x").upload_blob(b"y")),
            (lambda: container.append("x", b"y", position=0),
             lambda: sdk.get_blob_client("x").append_block(b"y", appendpos_condition=0)),
        ]
        for ours, theirs in pairs:
            with pytest.raises(AzureError) as sdk_error:
                theirs()
            expected = translate(sdk_error.value, "object")
            with pytest.raises(MizaicError) as caught:
                ours()
            assert type(caught.value) is type(expected)
            assert isinstance(caught.value, AccessDeniedError | StorageError)
    finally:
        store.close()
        sdk.close()


def _read_message(sock: socket.socket, *, bodyless: bool = False) -> bytes:
    """One whole HTTP/1.1 message (headers, then Content-Length bytes of body unless
    ``bodyless``: the answer to a HEAD) from ``sock``, however TCP splits it; ``b""`` if
    the peer closed first. (Azurite answers with a Content-Length; a message cut short by
    a close is returned as it is.)"""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(1 << 20)
        if not piece:
            return data
        data += piece
    head, _, _ = data.partition(b"\r\n\r\n")
    found = re.search(rb"(?im)^content-length:\s*([0-9]+)\s*$", head)
    wanted = len(head) + 4 + (int(found.group(1)) if found and not bodyless else 0)
    while len(data) < wanted:
        piece = sock.recv(1 << 20)
        if not piece:
            break
        data += piece
    return data


class TamperingProxy:
    """Forwards TCP to Azurite; the first ``cut`` responses that carry ``marker`` in their
    request lose their last bytes and their connection (a connection lost mid-body, closed
    cleanly or, with ``reset``, reset); with ``rewrite``, every such response is passed
    through it instead (a hostile or broken answer)."""

    def __init__(
        self, upstream_port: int, marker: bytes, cut: int = 0, *, reset: bool = False,
        rewrite: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self._upstream = upstream_port
        self._marker = marker
        self.cut = cut
        self.reset = reset
        self.rewrite = rewrite
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            stack.enter_context(client)
            upstream = stack.enter_context(
                socket.create_connection(("127.0.0.1", self._upstream)))
            while True:
                request = _read_message(client)
                if not request:
                    return
                upstream.sendall(request)
                response = _read_message(upstream, bodyless=request.startswith(b"HEAD "))
                with self._lock:
                    truncate = self._marker in request and self.cut > 0
                    if truncate:
                        self.cut -= 1
                if truncate:
                    client.sendall(response[:-5])
                    if self.reset:  # close with RST: a connection reset mid-body
                        client.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    return
                if self.rewrite is not None and self._marker in request:
                    response = self.rewrite(response)
                client.sendall(response)

    def close(self) -> None:
        self._listener.close()


def _through(proxy: TamperingProxy, azurite: AzuriteServer) -> BlobStore:
    conn = azurite.connection_string.replace(
        f"127.0.0.1:{azurite.blob_port}", f"127.0.0.1:{proxy.port}")
    assert conn != azurite.connection_string
    return BlobStore.from_connection_string(conn, retry_total=0)


def test_a_body_cut_off_mid_read_is_fetched_again(
    azurite: AzuriteServer, container: Container,
) -> None:
    data = b"0123456789" * 20
    container.put("cut/short", data)
    proxy = TamperingProxy(azurite.blob_port, b"GET /" + ACCOUNT_NAME.encode(), cut=1)
    store = _through(proxy, azurite)
    try:
        got = store.container(container.name).get("cut/short")
        assert got.data == data
        assert proxy.cut == 0

        proxy.cut = 3  # more cuts than attempts: a clear error, not short data
        with pytest.raises(StorageError):
            store.container(container.name).get("cut/short")
    finally:
        store.close()
        proxy.close()


def test_a_connection_reset_mid_body_is_fetched_again(
    azurite: AzuriteServer, container: Container,
) -> None:
    # A reset surfaces from azure-core as a bare HttpResponseError (no status), not as
    # IncompleteReadError; the SDK's downloader fetches it again, and so must we.
    data = b"0123456789" * 20
    container.put("reset/short", data)
    proxy = TamperingProxy(
        azurite.blob_port, b"GET /" + ACCOUNT_NAME.encode(), cut=1, reset=True)
    store = _through(proxy, azurite)
    try:
        assert store.container(container.name).get("reset/short").data == data
        assert proxy.cut == 0
        proxy.cut = 1
        assert b"".join(store.container(container.name).open("reset/short")) == data
        assert proxy.cut == 0
    finally:
        store.close()
        proxy.close()


def _header(name: bytes, value: bytes) -> Callable[[bytes], bytes]:
    """Replace the value of header ``name`` in a response (or drop it: ``value`` None)."""
    pattern = re.compile(rb"(?im)^" + re.escape(name) + rb":[^\r\n]*\r\n")

    def rewrite(response: bytes) -> bytes:
        head, sep, body = response.partition(b"\r\n\r\n")
        return pattern.sub(name + b": " + value + b"\r\n" if value else b"", head + b"\r\n",
                           count=1)[:-2] + sep + body

    return rewrite


@pytest.mark.parametrize(
    ("verb", "marker", "rewrite"),
    [
        ("get", b"GET /", _header(b"ETag", b"")),
        ("open", b"GET /", _header(b"ETag", b"")),
        # a superscript digit (latin-1 0xB9), which str.isdigit() takes for a digit
        ("open", b"GET /", _header(b"Content-Range", b"bytes \xb90-199/200")),
        ("open", b"GET /", _header(b"Content-Range", b"bytes 0-99/200")),
        ("open", b"GET /", _header(b"Content-Range", b"bytes 5-204/205")),
        ("put", b"PUT /", _header(b"ETag", b"")),
        ("append", b"comp=appendblock", _header(b"x-ms-blob-committed-block-count", b"\xb2")),
    ],
    ids=["get-no-etag", "open-no-etag", "open-superscript-digit", "open-short-range",
         "open-wrong-start", "put-no-etag", "append-bad-count"],
)
def test_a_malformed_answer_is_a_storage_error_never_a_bare_exception(
    azurite: AzuriteServer, container: Container, verb: str, marker: bytes,
    rewrite: Callable[[bytes], bytes],
) -> None:
    data = b"0123456789" * 20
    container.put("bad/doc", data)
    if verb == "append":
        container.create_append("bad/log")
    proxy = TamperingProxy(azurite.blob_port, marker, rewrite=rewrite)
    store = _through(proxy, azurite)
    handle = store.container(container.name)
    try:
        with pytest.raises(StorageError) as raised:
            if verb == "get":
                handle.get("bad/doc")
            elif verb == "open":
                b"".join(handle.open("bad/doc"))
            elif verb == "put":
                handle.put("bad/new", data)
            else:
                handle.append("bad/log", b"line\n", position=0)
        assert type(raised.value) is StorageError  # not a ConflictError or NotFoundError
        assert "malformed answer" in str(raised.value)  # not, say, a timeout
    finally:
        store.close()
        proxy.close()


def test_open_streams_ranges_pinned_to_the_first_etag(
    store: BlobStore, container: Container,
) -> None:
    data = bytes(range(256)) * 40 + b"tail"  # 10,244 bytes: three ranges of 4,096
    container.put("doc", data)
    before = store.requests.count
    pieces = list(container.open("doc", range_size=4096))
    assert store.requests.count == before + 3
    assert [len(p) for p in pieces] == [4096, 4096, 2052]
    assert b"".join(pieces) == data

    reader = container.open("doc", range_size=4096)
    assert next(reader) == data[:4096]
    container.put("doc", data[::-1], overwrite=True)
    with pytest.raises(ConflictError):
        next(reader)


def test_open_an_empty_blob_yields_nothing_and_a_missing_one_raises_at_once(
    container: Container,
) -> None:
    container.put("empty", b"")
    assert list(container.open("empty")) == []
    with pytest.raises(NotFoundError):
        container.open("missing")


def test_a_range_cut_off_mid_read_is_fetched_again(
    azurite: AzuriteServer, container: Container,
) -> None:
    data = bytes(range(256)) * 16
    container.put("cut/ranged", data)
    proxy = TamperingProxy(azurite.blob_port, b"x-ms-range: bytes=1024-", cut=1)
    store = _through(proxy, azurite)
    try:
        assert b"".join(store.container(container.name).open("cut/ranged",
                                                             range_size=1024)) == data
        assert proxy.cut == 0
    finally:
        store.close()
        proxy.close()
