"""The Queue Storage adapter: the only module that talks to Azure Queue Storage.

Subject-request notifications go to a queue in the processor's own storage account, one
queue per controller (its route names it); the controller reads it with its own grant.
Every ``azure.core.exceptions`` error is translated into the library's tree here.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.queue import ExponentialRetry, QueueServiceClient

from mizaic_processor._azure.blob import translate
from mizaic_processor.errors import ConfigurationError, StorageError

__all__ = ["QueueService", "QueueUnreachableError", "queue_endpoint"]

# A notification must not expire before the controller reads it (the default is 7 days).
_NEVER_EXPIRES = -1


def queue_endpoint(blob_url: str) -> str:
    """The Queue endpoint of the account whose Blob endpoint is ``blob_url``.

    ``https://<account>.blob.core.windows.net`` -> ``https://<account>.queue.core.windows.net``
    (also for the sovereign clouds' suffixes).

    :raises ConfigurationError: if the URL is not a standard Blob endpoint.
    """
    parts = urlsplit(blob_url)
    host = parts.hostname or ""
    account, dot, rest = host.partition(".")
    if not dot or not rest.startswith("blob."):
        raise ConfigurationError(
            "cannot derive the Queue endpoint from a non-standard Blob endpoint"
        )
    return f"{parts.scheme}://{account}.queue.{rest[len('blob.'):]}"


class QueueUnreachableError(StorageError):
    """The Queue service did not answer at all (no connection, or no reply in time),
    after the SDK's retries; also what the SDK reports the same way, such as a TLS
    certificate it refuses. Internal: the delivery pump then treats the route as down
    for the rest of its run, as it does a webhook that does not answer."""


class QueueService:
    """One storage account's Queue service. Use as a context manager; close it after use.

    :param client: the SDK client (built by :meth:`from_connection_string` or
        :meth:`from_url`).
    """

    def __init__(self, client: QueueServiceClient) -> None:
        self._client = client

    @staticmethod
    def _options(retry_total: int, retry_backoff: float, timeout: float) -> dict[str, Any]:
        backoff: Any = retry_backoff  # the SDK accepts a float; its stub says int
        return {
            "retry_policy": ExponentialRetry(
                initial_backoff=backoff, increment_base=2, retry_total=retry_total,
                random_jitter_range=1,
            ),
            "connection_timeout": timeout,
            "read_timeout": timeout,
        }

    @classmethod
    def from_connection_string(
        cls, conn_str: str, *, retry_total: int = 2, retry_backoff: float = 0.5,
        timeout: float = 10.0,
    ) -> QueueService:
        """Connect with a storage connection string (Azurite, development).

        :raises StorageError: if the connection string is malformed or has no queue endpoint.
        """
        try:
            client = QueueServiceClient.from_connection_string(
                conn_str, **cls._options(retry_total, retry_backoff, timeout)
            )
        except (ValueError, AzureError):
            raise StorageError("malformed storage connection string") from None
        return cls(client)

    @classmethod
    def from_url(
        cls, account_url: str, credential: Any, *, retry_total: int = 2,
        retry_backoff: float = 0.5, timeout: float = 10.0,
    ) -> QueueService:
        """Connect to a queue endpoint with an azure-identity credential (production).

        :raises StorageError: if the URL is malformed.
        """
        try:
            client = QueueServiceClient(
                account_url, credential=credential,
                **cls._options(retry_total, retry_backoff, timeout),
            )
        except (ValueError, AzureError):
            raise StorageError("malformed queue endpoint URL") from None
        return cls(client)

    def __enter__(self) -> QueueService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def create_queue(self, name: str) -> bool:
        """Create the queue ``name`` (a validated queue name); ``False`` if it existed.

        :raises StorageError: on failure.
        """
        try:
            self._client.create_queue(name)
        except ResourceExistsError:
            return False
        except AzureError as exc:
            raise translate(exc, "queue") from exc
        return True

    def send(self, name: str, text: str) -> None:
        """Put one message (text, never expiring) on the existing queue ``name``.

        :raises NotFoundError: if the queue does not exist.
        :raises QueueUnreachableError: if the service did not answer (a ``StorageError``).
        :raises StorageError: on other failures.
        """
        try:
            self._client.get_queue_client(name).send_message(
                text, time_to_live=_NEVER_EXPIRES
            )
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise QueueUnreachableError("Azure Queue Storage is unreachable") from exc
        except AzureError as exc:
            raise translate(exc, "queue") from exc
