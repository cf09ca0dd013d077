"""The Azure Key Vault adapter: :class:`KeyVaultKeyring`.

The only module that talks to Key Vault. Wraps with RSA-OAEP-256 through
``azure.keyvault.keys.crypto.CryptographyClient``; Key Vault errors are translated to
:class:`~mizaic_processor.errors.KeyManagementError` here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.keyvault.keys import JsonWebKey, KeyClient
from azure.keyvault.keys.crypto import CryptographyClient, KeyWrapAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from mizaic_processor._validation import real_number, whole_number
from mizaic_processor.errors import InvalidInputError, KeyManagementError
from mizaic_processor.keyring import WrappedKey, check_key_name

__all__ = ["KeyVaultKeyring"]

_ALGORITHM = KeyWrapAlgorithm.rsa_oaep_256


def _int_bytes(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _local_rsa_jwk(kid: str, key_size: int) -> JsonWebKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    numbers = private.private_numbers()
    public = numbers.public_numbers
    return JsonWebKey(
        kid=kid,
        kty="RSA",
        key_ops=["wrapKey", "unwrapKey"],
        n=_int_bytes(public.n),
        e=_int_bytes(public.e),
        d=_int_bytes(numbers.d),
        p=_int_bytes(numbers.p),
        q=_int_bytes(numbers.q),
        dp=_int_bytes(numbers.dmp1),
        dq=_int_bytes(numbers.dmq1),
        qi=_int_bytes(numbers.iqmp),
    )


class KeyVaultKeyring:
    """KEKs in Azure Key Vault (RSA 3072, wrap with RSA-OAEP-256).

    :param vault_url: the vault, e.g. ``https://mizaic-uks.vault.azure.net``; use a vault
        in ``uksouth`` or ``ukwest``.
    :param credential: an azure-identity credential; ``DefaultAzureCredential()`` when
        omitted.
    :param key_size: RSA key size for new KEKs.
    :param timeout: seconds to wait for a connection to the vault.
    :param read_timeout: seconds to wait for each read of the vault's answer.
    :param retry_total: retries of a failed vault request; ``None`` keeps the Key Vault
        SDK's own policy.
    :raises InvalidInputError: if the URL is not https or an option is out of range.
    """

    def __init__(
        self,
        vault_url: str,
        credential: Any | None = None,
        *,
        key_size: int = 3072,
        timeout: float = 20.0,
        read_timeout: float = 60.0,
        retry_total: int | None = None,
    ) -> None:
        if not isinstance(vault_url, str) or not vault_url.startswith("https://"):
            raise InvalidInputError("the vault URL must be an https URL")
        for value in (timeout, read_timeout):
            real_number(value, 0, 3600, "the vault timeouts must be between 0 and 3600 s",
                        above_low=True)
        if retry_total is not None:
            whole_number(retry_total, 0, 20, "retry_total must be 0..20")
        # Without these the SDK's transport waits 300 s for a vault that stops answering.
        self._options: dict[str, Any] = {
            "connection_timeout": float(timeout),
            "read_timeout": float(read_timeout),
        }
        if retry_total is not None:
            self._options["retry_total"] = retry_total
        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self._credential = credential
        self._key_size = key_size
        self._key_client: KeyClient | None = KeyClient(vault_url, credential, **self._options)
        self._vault_url = vault_url.rstrip("/")
        self._clients: dict[str, CryptographyClient] = {}
        self._offline_versions: dict[str, int] = {}
        self._factory: Callable[[str], CryptographyClient] = self._vault_client
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"KeyVaultKeyring({self._vault_url!r})"

    @classmethod
    def offline(cls, *, key_size: int = 2048) -> KeyVaultKeyring:
        """A keyring that generates RSA JSON Web Keys in memory and wraps through
        ``CryptographyClient.from_jwk``: the same code path as a vault, with no vault.

        For tests and development only.
        """
        ring = cls.__new__(cls)
        ring._credential = None
        ring._key_size = key_size
        ring._key_client = None
        ring._options = {}
        ring._vault_url = "https://offline.vault.invalid"
        ring._clients = {}
        ring._offline_versions = {}
        ring._factory = ring._missing_client
        ring._lock = threading.Lock()
        return ring

    def _vault_client(self, key_id: str) -> CryptographyClient:
        return CryptographyClient(key_id, self._credential, **self._options)

    def _missing_client(self, key_id: str) -> CryptographyClient:
        raise KeyManagementError("unknown key id")

    def _client(self, key_id: str) -> CryptographyClient:
        with self._lock:
            client = self._clients.get(key_id)
            if client is None:
                client = self._factory(key_id)
                self._clients[key_id] = client
            return client

    def _new_version(self, name: str, *, exists: bool) -> str:
        check_key_name(name)
        if self._key_client is None:
            with self._lock:
                current = self._offline_versions.get(name, 0)
                if exists != (current > 0):
                    raise KeyManagementError("unknown key" if exists else "key exists")
                version = current + 1
                self._offline_versions[name] = version
                kid = f"{self._vault_url}/keys/{name}/v{version}"
                self._clients[kid] = CryptographyClient.from_jwk(
                    _local_rsa_jwk(kid, self._key_size)
                )
            return kid
        try:
            try:
                self._key_client.get_key(name)
                found = True
            except ResourceNotFoundError:
                found = False
            if found != exists:
                raise KeyManagementError("key exists" if found else "unknown key")
            key = self._key_client.create_rsa_key(
                name, size=self._key_size, key_operations=["wrapKey", "unwrapKey"]
            )
        except AzureError as exc:
            raise KeyManagementError("Key Vault refused to create the key") from exc
        if key.id is None:
            raise KeyManagementError("Key Vault returned no key id")
        return str(key.id)

    def create_key(self, name: str) -> str:
        """Create the KEK ``name`` in the vault.

        :raises KeyManagementError: if it exists or the vault refuses.
        :raises InvalidInputError: if the name is malformed.
        """
        return self._new_version(name, exists=False)

    def rotate_key(self, name: str) -> str:
        """Create a new version of the KEK ``name``.

        :raises KeyManagementError: if it does not exist or the vault refuses.
        """
        return self._new_version(name, exists=True)

    def wrap_key(self, key_id: str, key: bytes) -> WrappedKey:
        """Wrap ``key`` with RSA-OAEP-256 under the KEK version ``key_id``.

        :raises KeyManagementError: if the vault refuses or the key id is unknown.
        """
        try:
            result = self._client(key_id).wrap_key(_ALGORITHM, key)
        except (AzureError, ValueError) as exc:
            raise KeyManagementError("Key Vault could not wrap the key") from exc
        return WrappedKey(str(result.key_id or key_id), _ALGORITHM.value, result.encrypted_key)

    def unwrap_key(self, wrapped: WrappedKey) -> bytes:
        """Unwrap a key wrapped by :meth:`wrap_key`.

        :raises KeyManagementError: if the vault refuses, the key id is unknown, or the
            wrapped key does not decrypt.
        """
        if wrapped.algorithm != _ALGORITHM.value:
            raise KeyManagementError("unsupported key wrap algorithm")
        try:
            result = self._client(wrapped.key_id).unwrap_key(_ALGORITHM, wrapped.ciphertext)
        except (AzureError, ValueError) as exc:
            raise KeyManagementError("Key Vault could not unwrap the key") from exc
        return bytes(result.key)
