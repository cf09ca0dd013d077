"""Settings from ``MIZAIC_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from mizaic_processor._core.validation import describe_validation_error
from mizaic_processor.errors import ConfigurationError, InvalidInputError
from mizaic_processor.keyring import Keyring, LocalKeyring
from mizaic_processor.models import check_region

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Processor settings, read from the environment.

    ================================  =====================================================
    ``MIZAIC_REGION``                 ``uksouth`` or ``ukwest`` (required)
    ``MIZAIC_CONNECTION_STRING``      a storage connection string (Azurite, development)
    ``MIZAIC_ACCOUNT_URL``            the blob endpoint (production, azure-identity)
    ``MIZAIC_KEYRING``                ``local`` (default) or ``keyvault``
    ``MIZAIC_LOCAL_KEYRING_PATH``     file of a :class:`LocalKeyring` (created if missing)
    ``MIZAIC_KEY_VAULT_URL``          the vault, with ``MIZAIC_KEYRING=keyvault``
    ``MIZAIC_RETRY_TOTAL``            Azure SDK retry attempts (default 5)
    ``MIZAIC_RETRY_BACKOFF``          first back-off in seconds (default 0.5)
    ``MIZAIC_KEY_CACHE_TTL``          seconds an unwrapped key is cached (default 300)
    ================================  =====================================================
    """

    model_config = SettingsConfigDict(
        env_prefix="MIZAIC_", extra="forbid", frozen=True, hide_input_in_errors=True
    )

    region: str
    connection_string: SecretStr | None = None
    account_url: str | None = None
    keyring: Literal["local", "keyvault"] = "local"
    local_keyring_path: Path | None = None
    key_vault_url: str | None = None
    retry_total: int = 5
    retry_backoff: float = 0.5
    key_cache_ttl: float = 300.0

    def __init__(self, /, **values: Any) -> None:
        """Settings from ``values`` over the ``MIZAIC_*`` environment variables.

        :raises ResidencyError: if the region is not a UK region.
        :raises ConfigurationError: if a setting is missing or malformed (the message names
            the setting, never its value).
        """
        try:
            super().__init__(**values)
        except ValidationError as exc:
            for err in exc.errors(include_input=False):
                if err.get("loc") == ("region",) and err.get("type") == "value_error":
                    check_region(None)
            raise ConfigurationError(
                describe_validation_error(exc).replace("invalid input", "invalid settings")
            ) from None
        except InvalidInputError as exc:
            raise ConfigurationError(str(exc)) from None

    @field_validator("region")
    @classmethod
    def _uk_only(cls, value: str) -> str:
        return check_region(value)

    @classmethod
    def load(cls) -> Settings:
        """Read the settings from the environment.

        :raises ResidencyError: if ``MIZAIC_REGION`` is not a UK region.
        :raises ConfigurationError: if a variable is missing or malformed.
        """
        return cls()

    def build_keyring(self) -> Keyring:
        """The keyring these settings name.

        :raises ConfigurationError: if the keyring settings are incomplete.
        """
        if self.keyring == "keyvault":
            if not self.key_vault_url:
                raise ConfigurationError("MIZAIC_KEY_VAULT_URL is required for keyvault")
            from mizaic_processor._azure.keyvault import KeyVaultKeyring

            return KeyVaultKeyring(self.key_vault_url)
        if self.local_keyring_path is None:
            raise ConfigurationError(
                "MIZAIC_LOCAL_KEYRING_PATH is required with the local keyring"
            )
        return _PersistentLocalKeyring(self.local_keyring_path)


class _PersistentLocalKeyring(LocalKeyring):
    """A LocalKeyring that saves itself to its file whenever a key is created."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        if path.exists():
            loaded = LocalKeyring.from_file(path)
            self._keys = loaded._keys

    def create_key(self, name: str) -> str:
        key_id = super().create_key(name)
        self.save(self._path)
        return key_id

    def rotate_key(self, name: str) -> str:
        key_id = super().rotate_key(name)
        self.save(self._path)
        return key_id
