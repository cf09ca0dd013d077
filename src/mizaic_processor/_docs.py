"""Controller documents: small JSON documents in a controller's container.

Instructions, holds, appraisals, subject requests and their history are stored here. A
document has a plaintext part (opaque ids, codes, coarse dates, actor ids: what storage
may see) and an optional encrypted part (free text, contact details, anything personal),
sealed with the controller data key and bound to the document's name, so an encrypted
part moved to another document or controller fails to decrypt.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from mizaic_processor._azure.blob import Container
from mizaic_processor._core import envelope
from mizaic_processor.errors import IntegrityError

_DOC_SKID = bytes(16)
_SECRET_FIELD = "$doc"  # noqa: S105 (a field path, not a secret)


def _integrity() -> IntegrityError:
    return IntegrityError("stored data failed integrity verification")


@dataclass(frozen=True)
class Doc:
    """A loaded controller document: its plaintext part, decrypted secret part, etag."""

    name: str
    public: dict[str, Any]
    secret: dict[str, Any]
    etag: str


class ControllerDocs:
    """Reads and writes controller documents (create-only or etag-conditional).

    Every document is sealed, even one with no secret part, so that its plaintext part
    cannot be edited in storage unnoticed (a released hold, a changed instruction).
    """

    def __init__(
        self,
        container: Container,
        controller_id: str,
        data_key: Callable[[], bytes],
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._container = container
        self._controller_id = controller_id
        self._data_key = data_key
        self._random = random_bytes

    def _keys(self, name: str) -> envelope.RecordKeys:
        return envelope.derive_record_keys(
            self._data_key(), skid=_DOC_SKID, key_version=1,
            controller_id=self._controller_id, record_id=name,
        )

    def _encode(self, name: str, public: dict[str, Any], secret: dict[str, Any] | None) -> bytes:
        body: dict[str, Any] = {"format": "mizaic.doc", "v": 1, "name": name, "public": public}
        secret = secret or {}
        sealed = envelope.encrypt_field(
            self._keys(name),
            json.dumps(secret, sort_keys=True, separators=(",", ":")).encode(),
            controller_id=self._controller_id,
            record_id=name,
            field_path=_SECRET_FIELD + json.dumps(public, sort_keys=True),
            nonce=self._random(envelope.NONCE_BYTES),
        )
        body["secret"] = base64.b64encode(sealed).decode("ascii")
        return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()

    def _decode(self, name: str, data: bytes, etag: str) -> Doc:
        try:
            body = json.loads(data)
            if (
                not isinstance(body, dict)
                or body.get("format") != "mizaic.doc"
                or body.get("v") != 1
                or body.get("name") != name
                or not isinstance(body.get("public"), dict)
            ):
                raise _integrity()
            public: dict[str, Any] = body["public"]
            sealed = body.get("secret")
            if not isinstance(sealed, str):
                raise _integrity()
            plain = envelope.decrypt_field(
                self._keys(name),
                base64.b64decode(sealed, validate=True),
                controller_id=self._controller_id,
                record_id=name,
                field_path=_SECRET_FIELD + json.dumps(public, sort_keys=True),
            )
            secret = json.loads(plain)
            if not isinstance(secret, dict):
                raise _integrity()
        except (ValueError, TypeError, KeyError):
            raise _integrity() from None
        return Doc(name=name, public=public, secret=secret, etag=etag)

    def create(
        self, name: str, public: dict[str, Any], secret: dict[str, Any] | None = None,
        *, what: str = "document",
    ) -> str:
        """Create a document (create-only); return its etag.

        The plaintext part is authenticated too: it is bound into the sealed part's
        associated data, so editing it in storage makes the document fail to load.

        :raises ConflictError: if it exists.
        """
        return self._container.put(name, self._encode(name, public, secret), what=what)

    def replace(
        self, name: str, public: dict[str, Any], secret: dict[str, Any] | None, *, etag: str,
        what: str = "document",
    ) -> str:
        """Replace a document if unchanged since ``etag``; return the new etag.

        :raises ConflictError: if it changed since ``etag``.
        """
        return self._container.put(name, self._encode(name, public, secret), etag=etag,
                                   what=what)

    def get(self, name: str, *, what: str = "document") -> Doc:
        """Load a document.

        :raises NotFoundError: if it does not exist.
        :raises IntegrityError: if it fails verification.
        """
        stored = self._container.get(name, what=what)
        return self._decode(name, stored.data, stored.etag)

    def names(self, prefix: str) -> Iterator[str]:
        """Names of the documents under ``prefix``, in order."""
        return self._container.list_names(prefix)

    def delete(self, name: str, *, etag: str | None = None, what: str = "document") -> bool:
        """Delete a document (idempotent)."""
        return self._container.delete(name, etag=etag, what=what)
