"""Staged uploads against a real Azurite: blocks are invisible until a create-only commit.

``Container.stage_stream`` uploads content as uncommitted blocks (or holds small content)
before the caller's audit event is durable; ``Container.commit_staged`` makes it visible,
create-only. These tests pin what the caller relies on: nothing is visible before the
commit or after a failed stage, the committed bytes are exact, a commit never replaces
an existing blob, a retried commit that already landed succeeds, and memory stays bounded.
"""

from __future__ import annotations

import hashlib
import io
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobClient, BlobServiceClient
from test_large_content import LIMIT, GeneratedStream, PeakRSS, blocks, settle

from mizaic_processor._azure.blob import BlobStore, Container, Staged
from mizaic_processor.errors import (
    ConflictError,
    InvalidInputError,
    NotFoundError,
    StorageError,
)
from mizaic_processor.testing import AzuriteServer

KiB = 1024
MiB = 1024 * KiB


@pytest.fixture
def store(azurite: AzuriteServer) -> Iterator[BlobStore]:
    blob_store = BlobStore.from_connection_string(azurite.connection_string, retry_total=1)
    try:
        yield blob_store
    finally:
        blob_store.close()


@pytest.fixture
def container(store: BlobStore) -> Container:
    handle = store.container("staged-" + uuid.uuid4().hex[:12])
    handle.create()
    return handle


def payload(size: int, seed: str = "staged") -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


def invisible(container: Container, name: str) -> bool:
    """Nothing under ``name`` through any of the container's read verbs."""
    if list(container.list_names(name)) or container.exists_blob(name):
        return False
    with pytest.raises(NotFoundError):
        container.get(name)
    with pytest.raises(NotFoundError):
        container.open(name)
    return True


def read_back(container: Container, name: str, **kwargs: Any) -> bytes:
    return b"".join(container.open(name, **kwargs))


# -- staging, then committing ------------------------------------------------------------


def test_staged_blocks_are_invisible_until_committed_then_exact(container: Container) -> None:
    data = payload(5 * 64 * KiB + 123)
    staged = container.stage_stream(
        "doc/a", io.BytesIO(data), length=len(data), block_size=64 * KiB, inline_max=0
    )
    assert staged.length == len(data)
    assert staged.inline is None
    assert len(staged.block_ids) == 6
    assert len(set(staged.block_ids)) == 6
    assert len({len(block_id) for block_id in staged.block_ids}) == 1  # Azure: same length
    assert invisible(container, "doc/a")

    etag = container.commit_staged("doc/a", staged)

    stored = container.get("doc/a")
    assert stored.data == data
    assert stored.etag == etag
    assert list(container.list_names("doc/")) == ["doc/a"]
    assert read_back(container, "doc/a") == data


def test_small_content_is_held_and_written_in_one_request_at_commit(
    container: Container, store: BlobStore
) -> None:
    data = payload(300 * KiB)
    before = store.requests.count
    staged = container.stage_stream("doc/small", io.BytesIO(data), length=len(data))
    assert store.requests.count == before  # nothing sent yet
    assert staged.block_ids == ()
    assert staged.length == len(data)
    assert "inline" not in repr(staged)  # the held bytes never reach a log line
    assert invisible(container, "doc/small")

    etag = container.commit_staged("doc/small", staged)
    assert store.requests.count == before + 1 + 4  # one Put Blob (+ the 4 reads above)
    stored = container.get("doc/small")
    assert stored.data == data
    assert stored.etag == etag


def test_content_just_above_the_inline_limit_is_staged(container: Container) -> None:
    data = payload(2 * 64 * KiB + 1)
    staged = container.stage_stream(
        "doc/edge", io.BytesIO(data), length=None, block_size=64 * KiB, inline_max=2 * 64 * KiB
    )
    assert staged.inline is None
    assert len(staged.block_ids) == 3
    assert invisible(container, "doc/edge")
    container.commit_staged("doc/edge", staged)
    assert container.get("doc/edge").data == data

    exact = payload(2 * 64 * KiB, "exact")
    held = container.stage_stream(
        "doc/exact", io.BytesIO(exact), length=None, block_size=64 * KiB,
        inline_max=2 * 64 * KiB,
    )
    assert held.block_ids == ()
    assert held.inline == exact


def test_an_iterable_of_odd_pieces_of_unknown_length_is_staged_exactly(
    container: Container,
) -> None:
    pieces = [payload(n, f"piece{n}") for n in (1, 70_000, 3, 200_000, 65_536, 9)]
    data = b"".join(pieces)
    staged = container.stage_stream(
        "doc/pieces", iter(pieces), length=None, block_size=64 * KiB, inline_max=0,
        max_concurrency=3,
    )
    assert staged.length == len(data)
    container.commit_staged("doc/pieces", staged)
    assert container.get("doc/pieces").data == data


def test_empty_content_commits_an_empty_blob(container: Container) -> None:
    for name, inline_max in (("doc/empty-held", 1024), ("doc/empty-staged", 0)):
        staged = container.stage_stream(name, io.BytesIO(b""), length=0, inline_max=inline_max)
        assert staged.length == 0
        container.commit_staged(name, staged)
        assert container.get(name).data == b""
        assert read_back(container, name) == b""


def test_put_stream_is_stage_then_commit(container: Container) -> None:
    data = payload(9 * MiB + 7)
    etag = container.put_stream("doc/put", io.BytesIO(data), length=len(data))
    assert container.get("doc/put").etag == etag
    assert read_back(container, "doc/put") == data
    with pytest.raises(ConflictError):
        container.put_stream("doc/put", io.BytesIO(b"other"), length=5)


# -- create-only ---------------------------------------------------------------------------


@pytest.mark.parametrize("inline_max", [0, 1 * MiB], ids=["staged", "held"])
def test_commit_never_replaces_an_existing_blob(container: Container, inline_max: int) -> None:
    container.put("doc/taken", b"first writer")
    data = payload(200 * KiB, "second writer")
    staged = container.stage_stream(
        "doc/taken", io.BytesIO(data), length=len(data), block_size=64 * KiB,
        inline_max=inline_max,
    )
    with pytest.raises(ConflictError) as caught:
        container.commit_staged("doc/taken", staged, what="document")
    assert "document" in str(caught.value)
    assert container.get("doc/taken").data == b"first writer"


@pytest.mark.parametrize("inline_max", [0, 1 * MiB], ids=["staged", "held"])
def test_a_second_staging_of_other_content_cannot_commit_over_the_first(
    container: Container, inline_max: int
) -> None:
    one = payload(150 * KiB, "one")
    two = payload(150 * KiB, "two")
    first = container.stage_stream(
        "doc/race", io.BytesIO(one), length=len(one), block_size=64 * KiB,
        inline_max=inline_max,
    )
    second = container.stage_stream(
        "doc/race", io.BytesIO(two), length=len(two), block_size=64 * KiB,
        inline_max=inline_max,
    )
    container.commit_staged("doc/race", first)
    with pytest.raises(ConflictError):
        container.commit_staged("doc/race", second)
    assert container.get("doc/race").data == one


@pytest.mark.parametrize("inline_max", [0, 1 * MiB], ids=["staged", "held"])
def test_committing_the_same_staged_content_again_returns_the_same_etag(
    container: Container, inline_max: int
) -> None:
    data = payload(150 * KiB)
    staged = container.stage_stream(
        "doc/again", io.BytesIO(data), length=len(data), block_size=64 * KiB,
        inline_max=inline_max,
    )
    etag = container.commit_staged("doc/again", staged)
    assert container.commit_staged("doc/again", staged) == etag
    assert container.get("doc/again").data == data


def test_a_retried_commit_whose_first_attempt_landed_succeeds(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK retries a commit whose response was lost; the retry meets its own blob."""
    original = BlobClient.commit_block_list
    attempts: list[int] = []

    def lost_response(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        original(self, *args, **kwargs)  # lands; its response is "lost"
        attempts.append(2)
        return original(self, *args, **kwargs)  # the retry: 409 BlobAlreadyExists

    data = payload(3 * 64 * KiB)
    staged = container.stage_stream(
        "doc/retried", io.BytesIO(data), length=len(data), block_size=64 * KiB, inline_max=0
    )
    monkeypatch.setattr(BlobClient, "commit_block_list", lost_response)
    etag = container.commit_staged("doc/retried", staged)
    assert attempts == [1, 2]
    monkeypatch.undo()
    stored = container.get("doc/retried")
    assert stored.data == data
    assert stored.etag == etag


def test_a_conflict_on_a_blob_with_other_blocks_is_not_mistaken_for_a_retry(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = payload(3 * 64 * KiB)
    container.put_stream("doc/other", io.BytesIO(data), length=len(data))  # same bytes...
    staged = container.stage_stream(  # ...but other blocks: not this commit's first attempt
        "doc/other", io.BytesIO(data), length=len(data), block_size=64 * KiB, inline_max=0
    )
    with pytest.raises(ConflictError):
        container.commit_staged("doc/other", staged)

    def conflict(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        raise ResourceExistsError("exists")

    monkeypatch.setattr(BlobClient, "commit_block_list", conflict)
    with pytest.raises(ConflictError):
        container.commit_staged("doc/missing", staged)  # nothing there: a plain conflict


# -- failures leave nothing visible --------------------------------------------------------


class SourceError(Exception):
    pass


def failing_stream(good: int, piece: int = 64 * KiB) -> Iterator[bytes]:
    sent = 0
    while sent < good:
        yield payload(piece, f"p{sent}")
        sent += piece
    raise SourceError("the source failed")


def test_a_stream_error_midway_leaves_nothing_visible(container: Container) -> None:
    with pytest.raises(SourceError):
        container.stage_stream(
            "doc/broken", failing_stream(10 * 64 * KiB), length=None, block_size=64 * KiB,
            inline_max=0, max_concurrency=2,
        )
    assert invisible(container, "doc/broken")

    with pytest.raises(SourceError):  # also through put_stream, with the default sizes
        container.put_stream("doc/broken", failing_stream(9 * MiB, MiB), length=None)
    assert invisible(container, "doc/broken")

    # the abandoned blocks do not get in the way of a later upload under the same name
    data = payload(4 * 64 * KiB + 5)
    staged = container.stage_stream(
        "doc/broken", io.BytesIO(data), length=len(data), block_size=64 * KiB, inline_max=0
    )
    container.commit_staged("doc/broken", staged)
    assert container.get("doc/broken").data == data


@pytest.mark.parametrize("error", [ValueError, RuntimeError, UnicodeDecodeError])
def test_what_the_stream_raises_after_blocks_are_in_flight_is_passed_on_unchanged(
    container: Container, error: type[Exception]
) -> None:
    # ValueError (a closed file) and RuntimeError are also what a closed processor's
    # pool raises; the caller's own must not be reported as "the processor was closed"
    def raising() -> Iterator[bytes]:
        yield from failing_stream(6 * 64 * KiB)

    def stream() -> Iterator[bytes]:
        try:
            yield from raising()
        except SourceError:  # raised while handling another: its context is that one
            if error is UnicodeDecodeError:
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid")  # noqa: B904
            raise error("the caller's stream failed")  # noqa: B904

    with pytest.raises(error) as caught:
        container.stage_stream(
            "doc/raising", stream(), length=None, block_size=64 * KiB, inline_max=0,
            max_concurrency=2,
        )
    assert type(caught.value) is error
    # as the stream raised it: its context untouched, no cause added by the library
    assert isinstance(caught.value.__context__, SourceError)
    assert caught.value.__cause__ is None
    assert not caught.value.__suppress_context__
    assert invisible(container, "doc/raising")


def test_a_stream_shorter_or_longer_than_its_length_is_refused(container: Container) -> None:
    data = payload(5 * 64 * KiB)
    with pytest.raises(InvalidInputError, match="shorter"):
        container.stage_stream(
            "doc/short", io.BytesIO(data), length=len(data) + 1, block_size=64 * KiB,
            inline_max=0,
        )
    with pytest.raises(InvalidInputError, match="longer"):
        container.stage_stream(
            "doc/long", io.BytesIO(data), length=len(data) - 1, block_size=64 * KiB,
            inline_max=0,
        )
    with pytest.raises(InvalidInputError, match="longer"):
        container.stage_stream("doc/long", io.BytesIO(data), length=10)
    assert invisible(container, "doc/short")
    assert invisible(container, "doc/long")


def test_a_stream_that_does_not_yield_bytes_is_refused(container: Container) -> None:
    with pytest.raises(InvalidInputError):
        container.stage_stream("doc/text", io.StringIO("text"), length=None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        container.stage_stream("doc/text", iter(["text"]), length=None)  # type: ignore[list-item]
    assert invisible(container, "doc/text")


def test_azure_errors_are_translated_and_name_only_what(store: BlobStore) -> None:
    missing = store.container("no-such-" + uuid.uuid4().hex[:12])
    data = payload(3 * 64 * KiB, "secret bytes")
    with pytest.raises(NotFoundError) as caught:
        missing.stage_stream(
            "doc/x", io.BytesIO(data), length=len(data), block_size=64 * KiB, inline_max=0,
            what="scan",
        )
    assert str(caught.value) == "scan not found"
    with pytest.raises(NotFoundError, match=r"^scan not found$"):
        missing.commit_staged("doc/x", Staged(block_ids=("a" * 22,), length=1), what="scan")
    with pytest.raises(NotFoundError, match=r"^scan not found$"):
        missing.open("doc/x", what="scan")


def test_committing_blocks_that_were_never_staged_fails(container: Container) -> None:
    with pytest.raises(StorageError, match=r"^Azure Storage failed on content \(HTTP 400\)$"):
        container.commit_staged("doc/ghost", Staged(block_ids=("b" * 22,), length=10))
    assert invisible(container, "doc/ghost")


# -- concurrency and memory ----------------------------------------------------------------


def test_no_more_than_max_concurrency_blocks_are_in_flight(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Container._stage_block
    lock = threading.Lock()
    state = {"now": 0, "peak": 0, "calls": 0}

    def counting(client: BlobClient, block_id: str, data: bytes) -> None:
        with lock:
            state["now"] += 1
            state["calls"] += 1
            state["peak"] = max(state["peak"], state["now"])
        try:
            time.sleep(0.01)
            original(client, block_id, data)
        finally:
            with lock:
                state["now"] -= 1

    monkeypatch.setattr(Container, "_stage_block", staticmethod(counting))
    data = payload(12 * 64 * KiB)
    staged = container.stage_stream(
        "doc/bounded", io.BytesIO(data), length=len(data), block_size=64 * KiB, inline_max=0,
        max_concurrency=3,
    )
    assert state["calls"] == 12
    assert 2 <= state["peak"] <= 3
    container.commit_staged("doc/bounded", staged)
    assert container.get("doc/bounded").data == data


def test_reads_with_ranges_ahead_are_exact(container: Container) -> None:
    data = payload(1 * MiB + 77)
    container.put_stream("doc/ranges", io.BytesIO(data), length=len(data))
    for range_size, read_ahead in ((64 * KiB, 0), (64 * KiB, 2), (100_000, 3), (4 * MiB, 1)):
        pieces = list(container.open("doc/ranges", range_size=range_size, read_ahead=read_ahead))
        assert b"".join(pieces) == data
        assert all(len(piece) <= range_size for piece in pieces)


def test_a_blob_replaced_during_a_read_is_not_silently_mixed(container: Container) -> None:
    container.put_stream("doc/moving", io.BytesIO(payload(300 * KiB)), length=300 * KiB)
    reader = container.open("doc/moving", range_size=64 * KiB)
    next(reader)
    container.put("doc/moving", payload(300 * KiB, "replacement"), overwrite=True)
    with pytest.raises(ConflictError):
        list(reader)


@pytest.mark.slow
def test_staging_a_large_generated_stream_stays_in_bounded_memory(
    container: Container, azurite: AzuriteServer
) -> None:
    size = 256 * MiB
    want = hashlib.sha256()
    for piece in blocks(size):
        want.update(piece)
    # warm up: SDK code paths, connection pool, worker threads
    container.put_stream("doc/warm", GeneratedStream(9 * MiB + 1), length=None)
    b"".join(container.open("doc/warm"))
    baseline = settle()

    with PeakRSS() as rss:
        source = GeneratedStream(size)
        staged = container.stage_stream("doc/large", source, length=None)
        assert source.produced == size
        assert not container.exists_blob("doc/large")
        container.commit_staged("doc/large", staged)
        got = hashlib.sha256()
        length = 0
        for piece in container.open("doc/large"):
            got.update(piece)
            length += len(piece)

    assert staged.length == length == size
    assert got.hexdigest() == want.hexdigest()
    raw = BlobServiceClient.from_connection_string(azurite.connection_string)
    properties = raw.get_blob_client(container.name, "doc/large").get_blob_properties()
    raw.close()
    assert properties.size == size
    growth = rss.peak - baseline
    assert rss.samples > 20
    assert growth < LIMIT, f"peak RSS grew by {growth / MiB:.1f} MiB"


class _ClosesMidway(io.RawIOBase):
    """A stream that closes the blob store once part of it has been read."""

    def __init__(self, data: bytes, close_at: int, close: Any) -> None:
        self._data = io.BytesIO(data)
        self._close_at = close_at
        self._close = close

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._close is not None and self._data.tell() >= self._close_at:
            self._close()
            self._close = None
        return self._data.readinto(buffer)


def test_closing_the_store_mid_upload_raises_storage_error_and_leaves_nothing(
    azurite: AzuriteServer, store: BlobStore, container: Container,
) -> None:
    data = payload(20 * MiB)
    stream = _ClosesMidway(data, 9 * MiB, store.close)
    with pytest.raises(StorageError, match="closed"):
        container.stage_stream("closing.bin", stream, length=len(data))
    fresh = BlobStore.from_connection_string(azurite.connection_string)
    try:
        assert invisible(fresh.container(container.name), "closing.bin")
    finally:
        fresh.close()


def test_reading_after_the_store_closed_raises_storage_error(
    store: BlobStore, container: Container,
) -> None:
    data = payload(3 * MiB)
    container.put_stream("read-closed.bin", io.BytesIO(data), length=len(data))
    store.close()
    with pytest.raises(StorageError, match="closed"):
        container.open_soon("read-closed.bin")
