"""mizaic_processor: controller-scoped, encrypted patient-data storage on UK Azure.

The Data Controller (a healthcare provider) owns the data; Mizaic processes it on the
controller's documented instructions. Start with :class:`Processor`, register a
controller, then work inside :meth:`Processor.tenant`.
"""

from mizaic_processor._azure.keyvault import KeyVaultKeyring
from mizaic_processor._content import ContentReader
from mizaic_processor.errors import (
    AccessDeniedError,
    AuditError,
    ConfigurationError,
    ConflictError,
    HoldError,
    IntegrityError,
    InvalidInputError,
    KeyManagementError,
    MizaicError,
    NotFoundError,
    ResidencyError,
    RestrictedError,
    StorageError,
)
from mizaic_processor.keyring import Keyring, LocalKeyring, WrappedKey
from mizaic_processor.models import (
    Actor,
    ContentInfo,
    Controller,
    HospitalNumber,
    NHSNumber,
    Record,
    RecordRef,
    Role,
    SubjectId,
)
from mizaic_processor.processor import ControllerScope, Processor
from mizaic_processor.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "Actor",
    "AuditError",
    "ConfigurationError",
    "ConflictError",
    "ContentInfo",
    "ContentReader",
    "Controller",
    "ControllerScope",
    "HoldError",
    "HospitalNumber",
    "IntegrityError",
    "InvalidInputError",
    "KeyManagementError",
    "KeyVaultKeyring",
    "Keyring",
    "LocalKeyring",
    "MizaicError",
    "NHSNumber",
    "NotFoundError",
    "Processor",
    "Record",
    "RecordRef",
    "ResidencyError",
    "RestrictedError",
    "Role",
    "Settings",
    "StorageError",
    "SubjectId",
    "WrappedKey",
]
