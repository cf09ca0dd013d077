"""Key-encryption keys (KEKs): the :class:`Keyring` protocol and :class:`LocalKeyring`.

Each controller has its own KEK in a keyring. The KEK wraps exactly one thing, the
controller key, once per process (the unwrapped controller key is cached), so key
management calls stay off the hot path. Production uses
:class:`~mizaic_processor.KeyVaultKeyring` (Azure Key Vault); development and tests use
:class:`LocalKeyring`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap,
    aes_key_unwrap,
    aes_key_wrap,
)

from mizaic_processor.errors import InvalidInputError, KeyManagementError

__all__ = ["Keyring", "LocalKeyring", "WrappedKey"]

_KEY_NAME = re.compile(r"[A-Za-z0-9-]{1,127}")


def check_key_name(name: object) -> str:
    """Validate a KEK name (Key Vault's rule: letters, digits and hyphens).

    :raises InvalidInputError: for anything else.
    """
    if not isinstance(name, str) or _KEY_NAME.fullmatch(name) is None:
        raise InvalidInputError("invalid key name")
    return name


@dataclass(frozen=True)
class WrappedKey:
    """A key wrapped by a KEK: which KEK version, which algorithm, and the wrapped bytes."""

    key_id: str
    algorithm: str
    ciphertext: bytes = field(repr=False)

    def to_json(self) -> dict[str, str]:
        """A JSON-safe form, for storage."""
        return {
            "key_id": self.key_id,
            "algorithm": self.algorithm,
            "ciphertext": base64.b64encode(self.ciphertext).decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: object) -> WrappedKey:
        """Parse :meth:`to_json` output.

        :raises KeyManagementError: if it is malformed.
        """
        try:
            if not isinstance(data, dict):
                raise TypeError
            return cls(
                key_id=str(data["key_id"]),
                algorithm=str(data["algorithm"]),
                ciphertext=base64.b64decode(data["ciphertext"], validate=True),
            )
        except (KeyError, TypeError, ValueError):
            raise KeyManagementError("malformed wrapped key") from None


@runtime_checkable
class Keyring(Protocol):
    """Holds key-encryption keys and wraps and unwraps data keys with them.

    Implementations must be thread-safe.
    """

    def create_key(self, name: str) -> str:
        """Create a new KEK named ``name`` and return its versioned key id.

        :raises KeyManagementError: if the key cannot be created.
        """
        ...

    def rotate_key(self, name: str) -> str:
        """Create a new version of the KEK ``name`` and return its versioned key id.

        :raises KeyManagementError: if the key does not exist or cannot be rotated.
        """
        ...

    def wrap_key(self, key_id: str, key: bytes) -> WrappedKey:
        """Wrap ``key`` with the KEK version ``key_id``.

        :raises KeyManagementError: if the KEK is unknown or the call fails.
        """
        ...

    def unwrap_key(self, wrapped: WrappedKey) -> bytes:
        """Unwrap a key wrapped by :meth:`wrap_key`.

        :raises KeyManagementError: if the KEK is unknown, the call fails, or the
            wrapped key does not authenticate.
        """
        ...


class LocalKeyring:
    """AES-256 KEKs held in process memory, optionally saved to a local JSON file.

    For development and tests only: the keys are as safe as the file and the process.
    Wraps with AES key wrap (RFC 3394, ``A256KW``).
    """

    _ALGORITHM = "A256KW"

    def __init__(self) -> None:
        self._keys: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LocalKeyring(keys={len(self._keys)})"

    @classmethod
    def generate(cls) -> LocalKeyring:
        """An empty in-memory keyring; KEKs are generated as controllers are registered."""
        return cls()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LocalKeyring:
        """Load a keyring saved with :meth:`save`.

        :raises KeyManagementError: if the file is missing or malformed.
        """
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            if data.get("format") != "mizaic.local-keyring" or data.get("v") != 1:
                raise ValueError
            ring = cls()
            for name, versions in data["keys"].items():
                check_key_name(name)
                keys = [base64.b64decode(v, validate=True) for v in versions]
                if not keys or any(len(k) != 32 for k in keys):
                    raise ValueError
                ring._keys[name] = keys
            return ring
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError,
                InvalidInputError):
            raise KeyManagementError("cannot load the local keyring file") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the keyring to ``path`` (mode 0600), replacing it atomically.

        :raises KeyManagementError: if the file cannot be written.
        :raises InvalidInputError: if ``path`` is not a path.
        """
        with self._lock:
            data = {
                "format": "mizaic.local-keyring",
                "v": 1,
                "keys": {
                    name: [base64.b64encode(k).decode("ascii") for k in versions]
                    for name, versions in self._keys.items()
                },
            }
        if not isinstance(path, str | os.PathLike):
            raise InvalidInputError("path must be a path")
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh)
            os.replace(tmp, target)
        except (OSError, ValueError):  # ValueError: a NUL or lone surrogate in the path
            raise KeyManagementError("cannot write the local keyring file") from None

    @staticmethod
    def _key_id(name: str, version: int) -> str:
        return f"local:{name}/{version}"

    def _lookup(self, key_id: object) -> bytes:
        if not isinstance(key_id, str):
            raise KeyManagementError("unknown key id")
        match = re.fullmatch(r"local:([A-Za-z0-9-]{1,127})/([0-9]{1,9})", key_id)
        if match is None:
            raise KeyManagementError("unknown key id")
        versions = self._keys.get(match.group(1))
        index = int(match.group(2)) - 1
        if versions is None or not 0 <= index < len(versions):
            raise KeyManagementError("unknown key id")
        return versions[index]

    def create_key(self, name: str) -> str:
        """Create the KEK ``name`` (version 1).

        :raises KeyManagementError: if a KEK of that name exists.
        :raises InvalidInputError: if the name is malformed.
        """
        check_key_name(name)
        with self._lock:
            if name in self._keys:
                raise KeyManagementError("a key of that name exists")
            self._keys[name] = [secrets.token_bytes(32)]
            return self._key_id(name, 1)

    def rotate_key(self, name: str) -> str:
        """Add a new version of the KEK ``name``.

        :raises KeyManagementError: if there is no KEK of that name.
        """
        check_key_name(name)
        with self._lock:
            versions = self._keys.get(name)
            if versions is None:
                raise KeyManagementError("unknown key")
            versions.append(secrets.token_bytes(32))
            return self._key_id(name, len(versions))

    def wrap_key(self, key_id: str, key: bytes) -> WrappedKey:
        """Wrap ``key`` with the KEK version ``key_id`` (AES key wrap).

        :raises KeyManagementError: if the KEK is unknown or the key cannot be wrapped.
        """
        with self._lock:
            kek = self._lookup(key_id)
        if not isinstance(key, bytes):
            raise KeyManagementError("cannot wrap the key")
        try:
            return WrappedKey(key_id, self._ALGORITHM, aes_key_wrap(kek, key))
        except ValueError:
            raise KeyManagementError("cannot wrap the key") from None

    def unwrap_key(self, wrapped: WrappedKey) -> bytes:
        """Unwrap a key wrapped by this keyring.

        :raises KeyManagementError: if the KEK is unknown or the wrapped key is altered.
        """
        if not isinstance(wrapped, WrappedKey):
            raise KeyManagementError("not a wrapped key")
        if wrapped.algorithm != self._ALGORITHM:
            raise KeyManagementError("unsupported key wrap algorithm")
        with self._lock:
            kek = self._lookup(wrapped.key_id)
        try:
            return aes_key_unwrap(kek, wrapped.ciphertext)
        except (InvalidUnwrap, ValueError):
            raise KeyManagementError("the wrapped key does not authenticate") from None
