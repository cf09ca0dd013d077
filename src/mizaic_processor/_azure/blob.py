"""The Blob Storage adapter: the only module that talks to Azure Blob Storage.

It hands the shell small, typed verbs (create-only put, etag-conditional put, get,
stream, staged upload and create-only commit, list by prefix, find by tags, delete,
append) and translates every ``azure.core.exceptions`` error into the library's own tree,
most specific first.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import IO, Any, NoReturn
from urllib.parse import quote, urlsplit

import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobServiceClient,
    ContainerClient,
    ExponentialRetry,
)
from azure.storage.blob._shared.response_handlers import process_storage_error

from mizaic_processor import _forks
from mizaic_processor.errors import (
    AccessDeniedError,
    ConflictError,
    InvalidInputError,
    MizaicError,
    NotFoundError,
    StorageError,
)

__all__ = ["BlobStore", "Container", "Staged", "StoredBlob"]

_MiB = 1024 * 1024
# Chosen by measurement against Azurite on 2 cores, within the memory bound (peak RSS
# growth < 64 MiB putting then getting 1 GiB):
# - one Put Blob beats Put Block + Put Block List (by ~10 ms) up to ~12 MiB, so content of
#   at most INLINE_MAX bytes is held and written in one request at commit;
# - larger content is staged in STAGE_BLOCK blocks, STAGE_CONCURRENCY in flight (with a
#   transactional MD5, within ~5-10% of one raw Put Blob of the same bytes): 8 MiB blocks
#   were no faster and raised peak RSS by ~20 MiB; 2, 3 and 4 in flight measured the same
#   here, and 3 hides more latency against real Azure for +1 block of memory;
# - reads fetch READ_RANGE bytes per GET: 8 MiB GETs stream about twice as fast as 4 MiB
#   ones on Azurite; READ_AHEAD ranges fetched in parallel gained nothing there (Azurite
#   and the decryption share the two cores) and cost ~10-25 MiB, so the default is 0.
STAGE_BLOCK = 4 * _MiB
STAGE_CONCURRENCY = 3
INLINE_MAX = 8 * _MiB
READ_RANGE = 8 * _MiB
READ_AHEAD = 0
# bytes per socket read when receiving a body (azure-core's default is 4 KiB)
_RECV_BLOCK = 256 * 1024
# Azure allows at most 50,000 blocks in a block blob
_MAX_BLOCKS = 50_000


def translate(exc: AzureError, what: str) -> Exception:
    """Map an Azure error to the library's tree. Messages name only ``what``."""
    if isinstance(exc, ResourceNotFoundError):
        return NotFoundError(f"{what} not found")
    if isinstance(exc, ResourceExistsError):
        return ConflictError(f"{what} already exists")
    if isinstance(exc, ResourceModifiedError):
        return ConflictError(f"{what} was changed by someone else (stale etag)")
    if isinstance(exc, ClientAuthenticationError):
        return AccessDeniedError("Azure Storage refused the credential")
    if isinstance(exc, HttpResponseError):
        if exc.status_code == 412:
            return ConflictError(f"{what}: a precondition failed (concurrent change)")
        if exc.status_code == 409:
            return ConflictError(f"{what}: conflicting operation in progress")
        if exc.status_code == 404:
            return NotFoundError(f"{what} not found")
        return StorageError(f"Azure Storage failed on {what} (HTTP {exc.status_code})")
    return StorageError(f"Azure Storage is unreachable or failed on {what}")


@dataclass(frozen=True)
class StoredBlob:
    """A blob's bytes and etag."""

    data: bytes
    etag: str


class _Session(requests.Session):
    """A requests session that reads the environment (proxies, CA bundle, ``.netrc``)
    once per host instead of on every request.

    ``requests`` re-scans the environment and stats ``~/.netrc`` for every request: a
    large share of a small blob operation's CPU. Here the same settings are resolved
    the first time a host is used and reused; later changes to the environment are not
    picked up (restart the process to change proxies).
    """

    def __init__(self, pool_size: int) -> None:
        super().__init__()
        self.trust_env = False  # the environment is applied below, cached per host
        self._pool_size = pool_size
        self._mount_pool()
        self._env_lock = threading.Lock()
        self._env_generation = _forks.generation()
        self._env: dict[tuple[str, str], tuple[dict[str, str], Any, Any]] = {}

    def _mount_pool(self) -> None:
        adapter = requests.adapters.HTTPAdapter(
            pool_connections=self._pool_size, pool_maxsize=self._pool_size
        )
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def _environment(self, url: Any) -> tuple[dict[str, str], Any, Any]:
        parts = urlsplit(str(url))
        host = (parts.scheme, parts.netloc)
        if self._env_generation != _forks.generation():
            self._after_fork()
        with self._env_lock:
            found = self._env.get(host)
            if found is None:
                ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get(
                    "CURL_CA_BUNDLE"
                )
                found = (
                    dict(requests.utils.get_environ_proxies(str(url))),
                    ca_bundle,
                    requests.utils.get_netrc_auth(str(url)),
                )
                self._env[host] = found
        return found

    def _after_fork(self) -> None:
        """In a forked child, before its first request: leave the connections inherited
        from the parent behind. A keep-alive socket used by both processes would hand
        one process the other's response (an audit append's, a record's). A new pool
        is mounted; the inherited one is not touched, not even closed, since a lock of
        it may have been copied held by a parent thread (its sockets stay open in the
        parent, and close in the child when collected). The copied environment lock is
        replaced for the same reason."""
        with _forks.lock():
            if self._env_generation != _forks.generation():
                self._env_lock = threading.Lock()
                self._mount_pool()
                self._env_generation = _forks.generation()

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if not request.auth and not self.auth:
            request.auth = self._environment(request.url)[2]
        return super().prepare_request(request)

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        env_proxies, ca_bundle, _ = self._environment(url)
        merged = dict(proxies or {})
        for scheme, proxy in env_proxies.items():
            merged.setdefault(scheme, proxy)
        if (verify is True or verify is None) and ca_bundle:
            verify = ca_bundle
        return super().merge_environment_settings(url, merged, stream, verify, cert)


class _Transport(RequestsTransport):  # type: ignore[misc]  # the SDK is untyped here
    """The SDK's requests transport; used after ``close()`` it raises the library's
    :class:`StorageError` (not retried, not the SDK's bare ``ValueError``)."""

    def open(self) -> None:
        if self._has_been_opened and not self.session:
            raise StorageError("the processor is closed; Azure Storage cannot be used")
        super().open()


class RequestCounter:
    """Counts HTTP responses from Azure Storage (each attempt of a retry, each page)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.count = 0

    def __call__(self, response: Any) -> None:
        with self._lock:
            self.count += 1


class BlobStore:
    """One storage account. Thread-safe; shares one connection pool across containers.

    Build it with :meth:`from_connection_string` or :meth:`from_url`. The SDK's
    exponential retry waits about ``retry_backoff + 2**n`` seconds (jittered by 1 s)
    before retry ``n`` of at most ``retry_total`` retries.
    """

    def __init__(self, service: BlobServiceClient, counter: RequestCounter) -> None:
        self._service = service
        self.requests = counter
        # Shared by every container's staged uploads and reads (threads start lazily).
        self._pool = WorkerPool(32)

    @staticmethod
    def _options(
        *, retry_total: int, retry_backoff: float, pool_size: int, timeout: float,
        read_timeout: float,
    ) -> dict[str, Any]:
        backoff: Any = retry_backoff
        session = _Session(pool_size)
        counter = RequestCounter()
        return {
            "retry_policy": ExponentialRetry(
                initial_backoff=backoff,
                increment_base=2,
                retry_total=retry_total,
                random_jitter_range=1,
            ),
            # The timeouts go on the transport: given a transport, the SDK ignores its own
            # connection_timeout / read_timeout options and the transport's defaults (300 s
            # each) would apply.
            "transport": _Transport(
                session=session, session_owner=True, connection_data_block_size=_RECV_BLOCK,
                connection_timeout=timeout, read_timeout=read_timeout,
            ),
            "raw_response_hook": counter,
            "max_single_put_size": INLINE_MAX,  # commit_staged's one-request write
            "max_block_size": STAGE_BLOCK,
            # one GET per range of open(), and get() in one GET up to that size
            "max_single_get_size": READ_RANGE,
            "max_chunk_get_size": READ_RANGE,
            "_counter": counter,
        }

    @classmethod
    def from_connection_string(
        cls,
        conn_str: str,
        *,
        retry_total: int = 5,
        retry_backoff: float = 0.5,
        pool_size: int = 64,
        timeout: float = 20.0,
        read_timeout: float = 60.0,
    ) -> BlobStore:
        """Connect with a connection string (Azurite, development).

        ``timeout`` bounds connecting, ``read_timeout`` each wait for data from the
        service (per attempt; the retry policy may then try again).

        :raises StorageError: if the connection string is malformed.
        """
        opts = cls._options(
            retry_total=retry_total, retry_backoff=retry_backoff, pool_size=pool_size,
            timeout=timeout, read_timeout=read_timeout,
        )
        counter = opts.pop("_counter")
        try:
            service = BlobServiceClient.from_connection_string(conn_str, **opts)
        except (ValueError, AzureError):
            raise StorageError("malformed storage connection string") from None
        return cls(service, counter)

    @classmethod
    def from_url(
        cls,
        account_url: str,
        credential: Any,
        *,
        retry_total: int = 5,
        retry_backoff: float = 0.5,
        pool_size: int = 64,
        timeout: float = 20.0,
        read_timeout: float = 60.0,
    ) -> BlobStore:
        """Connect to ``account_url`` with an azure-identity credential (production).

        Timeouts as in :meth:`from_connection_string`.

        :raises StorageError: if the URL is malformed.
        :raises InvalidInputError: if ``credential`` is not a credential the SDK accepts.
        """
        opts = cls._options(
            retry_total=retry_total, retry_backoff=retry_backoff, pool_size=pool_size,
            timeout=timeout, read_timeout=read_timeout,
        )
        counter = opts.pop("_counter")
        try:
            service = BlobServiceClient(account_url, credential=credential, **opts)
        except (ValueError, AzureError):
            raise StorageError("malformed storage account URL") from None
        except TypeError:  # the SDK's "Unsupported credential", or a URL that is not a str
            raise InvalidInputError(
                "the account URL or the credential is not of a kind the SDK accepts"
            ) from None
        return cls(service, counter)

    @property
    def account_name(self) -> str:
        """The storage account's name."""
        return str(self._service.account_name)

    def container(self, name: str) -> Container:
        """A handle on one container (no I/O)."""
        return Container(self._service.get_container_client(name), pool=self._pool)

    def close(self) -> None:
        """Close the connection pool (and the worker threads of staged uploads)."""
        self._pool.shutdown()
        self._service.close()


class WorkerPool:
    """Worker threads for staged uploads and reads, rebuilt in a forked child.

    A child process inherits the parent's executor but not its threads, and the copied
    executor would believe they exist and never run a task: :meth:`get` hands out a fresh
    executor whenever the fork generation changed.
    """

    def __init__(self, workers: int) -> None:
        self._workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._generation = _forks.generation()
        self._closed_in: int | None = None

    def get(self) -> ThreadPoolExecutor:
        """This process's executor (made on first use; one, however many threads ask).

        :raises RuntimeError: once :meth:`shutdown` was called in this process.
        """
        generation = _forks.generation()
        if self._closed_in == generation:
            raise RuntimeError("the worker pool is shut down")
        executor = self._executor
        if executor is None or self._generation != generation:
            with _forks.lock():  # new in a forked child, so never copied held
                if self._executor is None or self._generation != generation:
                    self._executor = ThreadPoolExecutor(
                        max_workers=self._workers, thread_name_prefix="mizaic-blob"
                    )
                    self._generation = generation
                executor = self._executor
        return executor

    def shutdown(self) -> None:
        """Stop this process's workers (tasks not started are cancelled)."""
        self._closed_in = _forks.generation()
        if self._executor is not None and self._generation == _forks.generation():
            self._executor.shutdown(wait=False, cancel_futures=True)


_fallback = WorkerPool(16)


@dataclass(frozen=True)
class Staged:
    """Content uploaded by :meth:`Container.stage_stream` but not yet visible.

    ``block_ids`` are the staged blocks in order (fixed-width ids, unique to this staging;
    the SDK base64-encodes them on the wire) and ``length`` the total bytes. Content of
    at most ``inline_max`` bytes is not staged at all: it is held in ``inline`` (and
    ``block_ids`` is empty) and written by :meth:`Container.commit_staged` in one
    create-only request, which is faster than staging and committing it. The held bytes
    are left out of the ``repr``.
    """

    block_ids: tuple[str, ...]
    length: int
    inline: bytes | None = field(default=None, repr=False)


class _SourceError(Exception):
    """Carries what reading the caller's stream raised past the staging loop's handlers."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


class _Blocks:
    """Reads a stream or an iterable of pieces in blocks, checking a declared length."""

    def __init__(
        self, source: IO[bytes] | Iterable[bytes], length: int | None, what: str
    ) -> None:
        self._what = what
        self._length = length
        self._count = 0
        self._read_piece: Callable[[int], Any]
        reader = getattr(source, "read", None)
        if callable(reader):
            self._read_piece = reader
        else:
            pieces = iter(source)
            self._rest: memoryview = memoryview(b"")

            def from_pieces(n: int) -> Any:
                while not self._rest:
                    piece = next(pieces, None)
                    if piece is None:
                        return b""
                    if not isinstance(piece, bytes | bytearray | memoryview):
                        return piece
                    self._rest = memoryview(piece).cast("B")
                out, self._rest = self._rest[:n], self._rest[n:]
                return out

            self._read_piece = from_pieces

    def _piece(self, n: int) -> bytes | bytearray | memoryview:
        piece = self._read_piece(n)
        if not isinstance(piece, bytes | bytearray | memoryview):
            raise InvalidInputError(f"{self._what} stream must yield bytes")
        return piece

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or fewer only at the end of the source."""
        if self._length is not None:
            n = min(n, self._length - self._count)
        parts: list[bytes | bytearray | memoryview] = []
        have = 0
        while have < n:
            piece = self._piece(n - have)
            if not piece:
                break
            if len(piece) > n - have:  # a source that ignores the size it was asked for
                raise InvalidInputError(f"{self._what} stream returned more than requested")
            parts.append(piece)
            have += len(piece)
        self._count += have
        if self._length is not None:
            if have < n:
                raise InvalidInputError(f"{self._what} stream is shorter than its length")
            if self._count == self._length and self._piece(1):
                raise InvalidInputError(f"{self._what} stream is longer than its length")
        if len(parts) == 1 and type(parts[0]) is bytes:
            return parts[0]
        return b"".join(parts)


def _malformed(what: str) -> StorageError:
    return StorageError(f"Azure Storage sent a malformed answer for {what}")


def _etag(response: HttpResponse, what: str) -> str:
    """The ``ETag`` of a response that must carry one."""
    etag = response.headers.get("ETag")
    if not isinstance(etag, str) or not etag:
        raise _malformed(what)
    return etag


# "bytes <first>-<last>/<total>", ASCII digits only (header values are decoded as latin-1)
_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+)")


def _closed(what: str) -> StorageError:
    return StorageError(
        f"the processor was closed (or storage answered malformed) while {what} was in "
        "transfer"
    )


# the error map of the SDK's generated operations, applied before its storage error codes
_ERROR_MAP: dict[int, type[HttpResponseError]] = {
    401: ClientAuthenticationError,
    404: ResourceNotFoundError,
    409: ResourceExistsError,
    304: ResourceNotModifiedError,
}


def _raise_for(response: HttpResponse) -> NoReturn:
    """Raise what the SDK's own operations raise for this error response."""
    error = _ERROR_MAP.get(response.status_code, HttpResponseError)(response=response)
    process_storage_error(error)


def _tags_header(tags: dict[str, str]) -> str:
    """``x-ms-tags``: the SDK's own encoding (each key and value percent-encoded)."""
    return "&".join(f"{quote(k, safe='.-')}={quote(v, safe='.-')}" for k, v in tags.items())


class Container:
    """One container: a controller's, or the processor registry.

    The verbs on every record operation's path (:meth:`put`, :meth:`get`, :meth:`append`
    and the ranged GETs of :meth:`open`) send each request through the container
    client's own SDK pipeline (its credential, retry, request-id and response-hook
    policies and the shared transport) without building a ``BlobClient`` and the SDK's
    generated operation for it each time: that roughly halved the library's client CPU
    per record operation here (``bench.costs``). Errors are mapped exactly as the SDK's
    operations map them. Every other verb uses the SDK's clients.
    """

    def __init__(self, client: ContainerClient, pool: WorkerPool | None = None) -> None:
        self._client = client
        self._pool = pool
        parts = urlsplit(str(client.url))
        self._base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}/"
        self._query = parts.query
        self._version = str(client.api_version)

    def _send(
        self, method: str, name: str, *, ok: int, headers: dict[str, str],
        data: bytes | None = None, comp: str | None = None, stream: bool = False,
    ) -> HttpResponse:
        """One request on blob ``name``; the response if its status is ``ok``.

        :raises AzureError: as the SDK's own operation would raise it.
        """
        query = "&".join(q for q in (f"comp={comp}" if comp else "", self._query) if q)
        url = self._base + quote(name, safe="~/") + (f"?{query}" if query else "")
        headers["x-ms-version"] = self._version
        if data is not None:
            headers["Content-Length"] = str(len(data))
        request = HttpRequest(method, url, headers=headers, content=data)
        response: HttpResponse = self._client._pipeline.run(request, stream=stream).http_response
        if response.status_code != ok:
            response.read()
            _raise_for(response)
        return response

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self._client.container_name)

    def create(self) -> bool:
        """Create the container; ``False`` if it already existed.

        :raises StorageError: on failure.
        """
        try:
            self._client.create_container()
        except ResourceExistsError:
            return False
        except AzureError as exc:
            raise translate(exc, "container") from exc
        return True

    def exists(self) -> bool:
        """Whether the container exists.

        :raises StorageError: on failure.
        """
        try:
            return bool(self._client.exists())
        except AzureError as exc:
            raise translate(exc, "container") from exc

    def exists_blob(self, name: str, *, what: str = "object") -> bool:
        """Whether a blob exists.

        :raises StorageError: on failure.
        """
        try:
            return bool(self._client.get_blob_client(name).exists())
        except AzureError as exc:
            raise translate(exc, what) from exc

    def etag(self, name: str, *, what: str = "object") -> str:
        """The current etag of a blob, read from its properties (no content is read).

        :raises NotFoundError: if it does not exist.
        :raises StorageError: on other failures.
        """
        try:
            etag = self._client.get_blob_client(name).get_blob_properties().etag
        except AzureError as exc:
            raise translate(exc, what) from exc
        if not isinstance(etag, str) or not etag:
            raise _malformed(what)
        return etag

    def put(
        self,
        name: str,
        data: bytes,
        *,
        etag: str | None = None,
        overwrite: bool = False,
        tags: dict[str, str] | None = None,
        what: str = "object",
    ) -> str:
        """Write a block blob and return its etag.

        Create-only (``If-None-Match: *``) unless ``etag`` (``If-Match``) or ``overwrite``.

        :raises ConflictError: if it exists (create-only) or the etag is stale.
        :raises StorageError: on other failures.
        """
        headers = {"x-ms-blob-type": "BlockBlob", "Content-Type": "application/octet-stream"}
        if tags:
            headers["x-ms-tags"] = _tags_header(tags)
        if etag is not None:
            headers["If-Match"] = etag
        elif not overwrite:
            headers["If-None-Match"] = "*"
        try:
            response = self._send("PUT", name, ok=201, headers=headers, data=bytes(data))
        except (ResourceExistsError, ResourceModifiedError) as exc:
            # A retried write whose first attempt landed fails its own precondition:
            # if what is stored is exactly what we wrote, the write succeeded.
            try:
                stored = self.get(name, what=what)
            except NotFoundError:
                stored = None
            if stored is not None and stored.data == data:
                return stored.etag
            raise translate(exc, what) from exc
        except AzureError as exc:
            if isinstance(exc, HttpResponseError) and exc.status_code == 412:
                stored = self.get(name, what=what)
                if stored.data == data:
                    return stored.etag
            raise translate(exc, what) from exc
        return _etag(response, what)

    def put_stream(
        self,
        name: str,
        stream: IO[bytes] | Iterable[bytes],
        *,
        length: int | None,
        max_concurrency: int = STAGE_CONCURRENCY,
        what: str = "content",
    ) -> str:
        """Write a (large) block blob from a stream, create-only; return its etag.

        :meth:`stage_stream` then :meth:`commit_staged`: a failed upload leaves nothing
        visible under ``name``.

        :raises ConflictError: if a blob of that name exists.
        :raises InvalidInputError: if the stream does not yield bytes, or not ``length``.
        :raises StorageError: on other failures.
        """
        staged = self.stage_stream(
            name, stream, length=length, max_concurrency=max_concurrency, what=what
        )
        return self.commit_staged(name, staged, what=what)

    def stage_stream(
        self,
        name: str,
        stream: IO[bytes] | Iterable[bytes],
        *,
        length: int | None,
        max_concurrency: int = STAGE_CONCURRENCY,
        block_size: int = STAGE_BLOCK,
        inline_max: int = INLINE_MAX,
        what: str = "content",
    ) -> Staged:
        """Upload a stream's bytes as uncommitted blocks of ``name``; nothing is visible yet.

        The stream (or iterable of pieces) is read in ``block_size`` blocks and each is
        staged with Put Block (with a transactional MD5 the service checks), at most
        ``max_concurrency`` in flight: memory stays about ``(max_concurrency + 1) *
        block_size`` (and at least ``inline_max + block_size``) whatever the length.
        Content of at most ``inline_max`` bytes is only held (see :class:`Staged`). If
        ``length`` is given the stream must yield exactly that many bytes. Make it
        visible with :meth:`commit_staged`; blocks never committed are invisible and the
        service discards them (after a week).

        :raises InvalidInputError: if the stream does not yield bytes, or not ``length``
            (an exception the stream itself raises propagates unchanged).
        :raises StorageError: if a block cannot be staged.
        """
        if max_concurrency < 1 or block_size < 1 or inline_max < 0:
            raise InvalidInputError("invalid staging options")
        blocks = _Blocks(stream, length, what)
        # Read until the content is known to be longer than inline_max, or has ended.
        head: deque[bytes] = deque()
        held = 0
        ended = False
        while held <= inline_max and not ended:
            block = blocks.read(block_size)
            ended = len(block) < block_size
            if block:
                head.append(block)
                held += len(block)
        del block
        if held <= inline_max:  # the whole content, and small: one request at commit
            inline = head[0] if len(head) == 1 else b"".join(head)
            return Staged(block_ids=(), length=held, inline=inline)
        client = self._client.get_blob_client(name)
        nonce = secrets.token_hex(8)
        ids: list[str] = []
        in_flight: set[Future[Any]] = set()
        pool = self._workers(what)
        total = 0
        source_error: BaseException | None = None

        def read_block() -> bytes:
            # the caller's stream: whatever it raises is passed on as it is, never taken
            # for a failure of the processor or of Azure Storage by the handlers below
            try:
                return blocks.read(block_size)
            except BaseException as exc:
                raise _SourceError(exc) from None

        try:
            while head:
                if len(ids) >= _MAX_BLOCKS:
                    raise InvalidInputError(f"{what} is too large")
                block_id = f"{nonce}{len(ids):06d}"
                ids.append(block_id)
                while len(in_flight) >= max_concurrency:
                    done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in done:
                        future.result()
                block = head.popleft()
                in_flight.add(pool.submit(self._stage_block, client, block_id, block))
                total += len(block)
                del block  # hold at most max_concurrency blocks in flight plus one
                if not head and not ended:
                    block = read_block()
                    ended = len(block) < block_size
                    if block:
                        head.append(block)
                    del block
            for future in in_flight:
                future.result()
        except _SourceError as failed:
            self._abandon(in_flight)
            source_error = failed.error
        except AzureError as exc:
            self._abandon(in_flight)
            raise translate(exc, what) from exc
        except (CancelledError, RuntimeError) as exc:
            self._abandon(in_flight)
            raise _closed(what) from exc
        except ValueError as exc:
            self._abandon(in_flight)
            if isinstance(exc, MizaicError):
                raise
            # the SDK's own: a transport closed under a block in flight, a bad answer
            raise _closed(what) from exc
        except BaseException:
            self._abandon(in_flight)
            raise
        if source_error is not None:
            # raised here, outside the handlers, so its own context stays as it was
            raise source_error
        return Staged(block_ids=tuple(ids), length=total)

    @staticmethod
    def _stage_block(client: BlobClient, block_id: str, data: bytes) -> None:
        # The MD5 has the service verify the block in transit (and spares Azurite its
        # much slower CRC64 of each block).
        client.stage_block(block_id, data, length=len(data), validate_content=True)

    @staticmethod
    def _abandon(in_flight: set[Future[Any]]) -> None:
        for future in in_flight:
            future.cancel()
        for future in in_flight:
            if not future.cancelled():
                future.exception()  # wait; the failure that stopped us is the one raised

    def commit_staged(self, name: str, staged: Staged, *, what: str = "content") -> str:
        """Make staged content visible as ``name``, create-only; return its etag.

        A retried commit whose first attempt landed (the blob holds exactly these blocks
        and length) succeeds with the stored etag, so committing the same
        :class:`Staged` twice returns the same etag.

        :raises ConflictError: if a different blob of that name exists.
        :raises StorageError: on other failures (e.g. blocks not staged or expired).
        """
        if staged.inline is not None:
            return self.put(name, staged.inline, what=what)
        client = self._client.get_blob_client(name)
        try:
            result = client.commit_block_list(
                [BlobBlock(block_id) for block_id in staged.block_ids],
                match_condition=MatchConditions.IfMissing,
            )
        except AzureError as exc:
            if isinstance(exc, ResourceExistsError | ResourceModifiedError) or (
                isinstance(exc, HttpResponseError) and exc.status_code in (409, 412)
            ):
                etag = self._committed_etag(client, staged, what)
                if etag is not None:
                    return etag
            raise translate(exc, what) from exc
        return str(result["etag"])

    @staticmethod
    def _committed_etag(client: BlobClient, staged: Staged, what: str) -> str | None:
        """The blob's etag if it holds exactly the staged blocks, else ``None``."""
        try:
            committed, _ = client.get_block_list("committed")
            properties = client.get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise translate(exc, what) from exc
        ids = tuple(str(block.id) for block in committed)
        if (
            ids == staged.block_ids
            and sum(int(block.size) for block in committed) == staged.length
            and int(properties.size) == staged.length
        ):
            return str(properties.etag)
        return None

    def _fetch(
        self, name: str, headers: dict[str, str], ok: int
    ) -> tuple[bytes, HttpResponse]:
        """GET ``name`` and read its body.

        The body is streamed (the pipeline would try to parse it otherwise), so a
        connection lost while reading it is outside the retry policy: it is fetched again
        here as the SDK's downloader does (3 attempts, 1 s apart). A body cut short
        (``IncompleteReadError``), a reset or other protocol error while reading it (a bare
        ``HttpResponseError``: a status error is raised by :meth:`_send`, before the read)
        and a read timeout (``ServiceResponseError``) are all fetched again.

        :raises AzureError: as the SDK's download would raise it.
        """
        attempts = 3
        while True:
            response = self._send("GET", name, ok=ok, headers=dict(headers), stream=True)
            try:
                return response.read(), response
            except (HttpResponseError, ServiceResponseError):
                response.close()  # azure-core leaves it open after a DecodeError
                attempts -= 1
                if not attempts:
                    raise
                time.sleep(1)

    def _fetch_range(
        self, name: str, offset: int, length: int, *, etag: str | None, what: str
    ) -> tuple[bytes, int, str]:
        """Bytes ``offset`` to ``offset + length`` of ``name`` (fewer at its end), its
        total size and etag; if ``etag``, only while the blob still has it.

        :raises AzureError: as the SDK's download would raise it.
        :raises StorageError: if the answer does not match the range asked for.
        """
        headers = {"x-ms-range": f"bytes={offset}-{offset + length - 1}"}
        if etag is not None:
            headers["If-Match"] = etag
        data, response = self._fetch(name, headers, ok=206)
        parsed = _CONTENT_RANGE.fullmatch(str(response.headers.get("Content-Range", "")))
        if parsed is None:
            raise _malformed(what)
        first, last, total = (int(part) for part in parsed.groups())
        if first != offset or len(data) != min(length, total - offset) or (
            data and last != offset + len(data) - 1
        ):
            raise _malformed(what)
        return data, total, _etag(response, what)

    def get(self, name: str, *, what: str = "object") -> StoredBlob:
        """Read a whole blob.

        :raises NotFoundError: if it does not exist.
        :raises StorageError: on other failures.
        """
        try:
            data, response = self._fetch(name, {}, ok=200)
        except AzureError as exc:
            raise translate(exc, what) from exc
        return StoredBlob(data=bytes(data), etag=_etag(response, what))

    def open(
        self,
        name: str,
        *,
        what: str = "content",
        range_size: int = READ_RANGE,
        read_ahead: int = READ_AHEAD,
    ) -> Iterator[bytes]:
        """Stream a blob in pieces of at most ``range_size`` bytes (bounded memory).

        Ranges are fetched up to ``read_ahead`` ahead of the consumer, all pinned to the
        first response's etag (memory: about ``(read_ahead + 1) * range_size``). The
        first request is made before this returns, so a missing blob raises here.

        :raises NotFoundError: if it does not exist.
        :raises ConflictError: (while iterating) if the blob changes during the read.
        :raises StorageError: on other failures (also while iterating).
        """
        if range_size < 1 or read_ahead < 0:
            raise InvalidInputError("invalid read options")
        try:
            try:
                first, total, etag = self._fetch_range(
                    name, 0, range_size, etag=None, what=what
                )
            except HttpResponseError as exc:
                if exc.status_code != 416:
                    raise
                # an empty blob has no first byte to range over
                first, response = self._fetch(name, {}, ok=200)
                total, etag = len(first), _etag(response, what)
        except AzureError as exc:
            raise translate(exc, what) from exc
        return self._ranges(name, first, total, etag, range_size, read_ahead, what)

    def _workers(self, what: str) -> ThreadPoolExecutor:
        try:
            return (self._pool or _fallback).get()
        except RuntimeError as exc:
            raise _closed(what) from exc

    def open_soon(self, name: str, *, what: str = "content") -> Future[Iterator[bytes]]:
        """:meth:`open` on a worker thread: the first range is fetched while the caller
        does something else. The future raises what :meth:`open` would raise; a result
        nobody collects is simply dropped (nothing is held open but its first range)."""
        pool = self._workers(what)
        try:
            return pool.submit(self.open, name, what=what)
        except RuntimeError as exc:  # the processor was closed
            raise _closed(what) from exc

    def _ranges(
        self,
        name: str,
        first: bytes,
        total: int,
        etag: str,
        range_size: int,
        read_ahead: int,
        what: str,
    ) -> Iterator[bytes]:
        if first:
            yield first
        offsets = iter(range(len(first), total, range_size))

        def fetch(offset: int) -> bytes:
            return self._fetch_range(name, offset, range_size, etag=etag, what=what)[0]

        pool = self._workers(what)
        ahead: deque[Future[bytes]] = deque()
        try:
            if read_ahead == 0:
                for offset in offsets:
                    yield fetch(offset)
                return
            for offset in offsets:
                ahead.append(pool.submit(fetch, offset))
                if len(ahead) >= read_ahead:
                    break
            while ahead:
                piece = ahead.popleft().result()
                following = next(offsets, None)
                if following is not None:
                    ahead.append(pool.submit(fetch, following))
                yield piece
                del piece
        except AzureError as exc:
            raise translate(exc, what) from exc
        except ValueError as exc:  # http.client reading a connection closed under it
            raise _malformed(what) from exc
        except (CancelledError, RuntimeError) as exc:
            raise _closed(what) from exc
        finally:
            for future in ahead:
                future.cancel()

    def delete(self, name: str, *, etag: str | None = None, what: str = "object") -> bool:
        """Delete a blob; ``False`` if it did not exist (idempotent).

        :raises ConflictError: if ``etag`` is given and stale.
        :raises StorageError: on other failures.
        """
        kwargs: dict[str, Any] = {}
        if etag is not None:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        try:
            self._client.delete_blob(name, delete_snapshots="include", **kwargs)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise translate(exc, what) from exc
        return True

    def list_names(self, prefix: str) -> Iterator[str]:
        """Names of the blobs under ``prefix``, in lexicographic order.

        :raises StorageError: on failure (also while iterating).
        """
        try:
            for item in self._client.list_blob_names(name_starts_with=prefix):
                yield str(item)
        except AzureError as exc:
            raise translate(exc, "listing") from exc

    def find_by_tags(self, expression: str) -> Iterator[tuple[str, dict[str, str]]]:
        """Blobs in this container whose index tags match ``expression``.

        :raises StorageError: on failure (also while iterating).
        """
        try:
            for item in self._client.find_blobs_by_tags(expression):
                yield str(item.name), dict(item.tags or {})
        except AzureError as exc:
            raise translate(exc, "tag query") from exc

    def set_tags(self, name: str, tags: dict[str, str], *, what: str = "object") -> None:
        """Replace a blob's index tags.

        :raises NotFoundError: if the blob does not exist.
        :raises StorageError: on other failures.
        """
        try:
            self._client.get_blob_client(name).set_blob_tags(tags)
        except AzureError as exc:
            raise translate(exc, what) from exc

    def create_append(self, name: str, *, what: str = "audit segment") -> None:
        """Create an empty append blob, create-only.

        :raises ConflictError: if a blob of that name exists.
        :raises StorageError: on other failures.
        """
        try:
            self._client.get_blob_client(name).create_append_blob(
                match_condition=MatchConditions.IfMissing
            )
        except AzureError as exc:
            raise translate(exc, what) from exc

    def append(
        self, name: str, data: bytes, *, position: int, what: str = "audit segment"
    ) -> int:
        """Append one block at exactly ``position``; return the committed block count.

        The position condition makes a concurrent or repeated append fail instead of
        forking or duplicating what is there.

        :raises ConflictError: if the blob is not ``position`` bytes long (or is leased).
        :raises NotFoundError: if the blob does not exist.
        :raises StorageError: on other failures.
        """
        try:
            response = self._send(
                "PUT", name, ok=201, comp="appendblock", data=bytes(data),
                headers={"x-ms-blob-condition-appendpos": str(position)},
            )
        except AzureError as exc:
            raise translate(exc, what) from exc
        count = str(response.headers.get("x-ms-blob-committed-block-count") or "0")
        if not count.isascii() or not count.isdecimal():
            raise _malformed(what)
        return int(count)
