"""The Blob Storage adapter: the only module that talks to Azure Blob Storage.

It hands the shell small, typed verbs (create-only put, etag-conditional put, get,
stream, list by prefix, find by tags, delete, append) and translates every
``azure.core.exceptions`` error into the library's own tree, most specific first.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

import requests
from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry
from requests.sessions import merge_setting

from mizaic_processor.errors import (
    AccessDeniedError,
    ConflictError,
    NotFoundError,
    StorageError,
)

__all__ = ["BlobStore", "Container", "StoredBlob"]

_CONTENT_BLOCK = 4 * 1024 * 1024


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
    """A requests session that reads proxy and CA settings from the environment once per
    host, not once per request (``requests`` re-scans the whole environment on every
    request, a large share of a small blob operation's CPU). The environment is read
    when a host is first used; later changes to it are not picked up."""

    def __init__(self) -> None:
        super().__init__()
        self._env_lock = threading.Lock()
        self._env: dict[tuple[str, str], tuple[dict[str, str], Any]] = {}

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> dict[str, Any]:
        if not self.trust_env or proxies or verify not in (None, True):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(str(url))
        host = (parts.scheme, parts.netloc)
        with self._env_lock:
            found = self._env.get(host)
            if found is None:
                env_verify = (
                    os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
                    or verify
                )
                found = (dict(requests.utils.get_environ_proxies(str(url))), env_verify)
                self._env[host] = found
        env_proxies, env_verify = found
        return {
            "proxies": merge_setting(dict(env_proxies), self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(env_verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


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

    @staticmethod
    def _options(
        *, retry_total: int, retry_backoff: float, pool_size: int, timeout: float
    ) -> dict[str, Any]:
        backoff: Any = retry_backoff
        session = _Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        counter = RequestCounter()
        return {
            "retry_policy": ExponentialRetry(
                initial_backoff=backoff,
                increment_base=2,
                retry_total=retry_total,
                random_jitter_range=1,
            ),
            "transport": RequestsTransport(session=session, session_owner=True),
            "raw_response_hook": counter,
            "connection_timeout": timeout,
            "read_timeout": max(timeout, 60.0),
            "max_single_put_size": _CONTENT_BLOCK,
            "max_block_size": _CONTENT_BLOCK,
            "max_single_get_size": _CONTENT_BLOCK,
            "max_chunk_get_size": _CONTENT_BLOCK,
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
    ) -> BlobStore:
        """Connect with a connection string (Azurite, development).

        :raises StorageError: if the connection string is malformed.
        """
        opts = cls._options(
            retry_total=retry_total, retry_backoff=retry_backoff, pool_size=pool_size,
            timeout=timeout,
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
    ) -> BlobStore:
        """Connect to ``account_url`` with an azure-identity credential (production).

        :raises StorageError: if the URL is malformed.
        """
        opts = cls._options(
            retry_total=retry_total, retry_backoff=retry_backoff, pool_size=pool_size,
            timeout=timeout,
        )
        counter = opts.pop("_counter")
        try:
            service = BlobServiceClient(account_url, credential=credential, **opts)
        except (ValueError, AzureError):
            raise StorageError("malformed storage account URL") from None
        return cls(service, counter)

    @property
    def account_name(self) -> str:
        """The storage account's name."""
        return str(self._service.account_name)

    def container(self, name: str) -> Container:
        """A handle on one container (no I/O)."""
        return Container(self._service.get_container_client(name))

    def close(self) -> None:
        """Close the connection pool."""
        self._service.close()


class Container:
    """One container: a controller's, or the processor registry."""

    def __init__(self, client: ContainerClient) -> None:
        self._client = client

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
        kwargs: dict[str, Any] = {"tags": tags} if tags else {}
        if etag is not None:
            kwargs.update(etag=etag, match_condition=MatchConditions.IfNotModified)
        elif not overwrite:
            kwargs.update(match_condition=MatchConditions.IfMissing)
        try:
            result = self._client.get_blob_client(name).upload_blob(
                data, overwrite=True, length=len(data), **kwargs
            )
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
        return str(result["etag"])

    def put_stream(
        self,
        name: str,
        stream: IO[bytes] | Iterable[bytes],
        *,
        length: int | None,
        max_concurrency: int = 2,
        what: str = "content",
    ) -> str:
        """Write a (large) block blob from a stream, create-only; return its etag.

        Uploaded in 4 MiB blocks, committed at the end: a failed upload leaves nothing
        visible under ``name``.

        :raises ConflictError: if a blob of that name exists.
        :raises StorageError: on other failures.
        """
        try:
            result = self._client.get_blob_client(name).upload_blob(
                stream,
                length=length,
                overwrite=True,
                match_condition=MatchConditions.IfMissing,
                max_concurrency=max_concurrency,
            )
        except AzureError as exc:
            raise translate(exc, what) from exc
        return str(result["etag"])

    def get(self, name: str, *, what: str = "object") -> StoredBlob:
        """Read a whole blob.

        :raises NotFoundError: if it does not exist.
        :raises StorageError: on other failures.
        """
        try:
            downloader = self._client.download_blob(name, max_concurrency=1)
            data = downloader.readall()
        except AzureError as exc:
            raise translate(exc, what) from exc
        return StoredBlob(data=bytes(data), etag=str(downloader.properties.etag))

    def open(self, name: str, *, what: str = "content") -> Iterator[bytes]:
        """Stream a blob in pieces of at most 4 MiB (bounded memory).

        The first request is made before this returns, so a missing blob raises here.

        :raises NotFoundError: if it does not exist.
        :raises StorageError: on other failures (also while iterating).
        """
        try:
            downloader = self._client.download_blob(name, max_concurrency=1)
        except AzureError as exc:
            raise translate(exc, what) from exc
        return self._chunks(downloader, what)

    @staticmethod
    def _chunks(downloader: Any, what: str) -> Iterator[bytes]:
        try:
            yield from downloader.chunks()
        except AzureError as exc:
            raise translate(exc, what) from exc

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
            result = self._client.get_blob_client(name).append_block(
                data, length=len(data), appendpos_condition=position
            )
        except AzureError as exc:
            raise translate(exc, what) from exc
        count: Any = result.get("blob_committed_block_count") or 0
        return int(count)
