"""mizaic_processor: controller-scoped, encrypted patient-data storage on UK Azure.

The Data Controller (a healthcare provider) owns the data; Mizaic processes it on the
controller's documented instructions. Start with :class:`Processor`, register a
controller, then work inside :meth:`Processor.tenant`.
"""

from mizaic_processor._azure.keyvault import KeyVaultKeyring
from mizaic_processor._content import ContentReader
from mizaic_processor._destruction import DestructionEvidence
from mizaic_processor._ledger import Hold, Instruction
from mizaic_processor._subject_ops import Disclosure, ErasureReport, ExportSummary
from mizaic_processor.audit import AuditEvent, AuditReport, AuditTrail
from mizaic_processor.errors import (
    AccessDeniedError,
    AuditError,
    AuditTamperedError,
    ClockError,
    ConfigurationError,
    ConflictError,
    HoldError,
    IntegrityError,
    InvalidInputError,
    KeyManagementError,
    MizaicError,
    NotFoundError,
    PartialFailureError,
    ResidencyError,
    RestrictedError,
    StorageError,
)
from mizaic_processor.keyring import Keyring, LocalKeyring, WrappedKey
from mizaic_processor.keys import IndexReport, KeyRotation, RotationReport
from mizaic_processor.models import (
    Actor,
    ContentInfo,
    Controller,
    HospitalNumber,
    NewRecord,
    NHSNumber,
    Record,
    RecordRef,
    Role,
    SubjectId,
)
from mizaic_processor.processor import ControllerScope, Processor
from mizaic_processor.requests import (
    BreachNotice,
    BreachRef,
    Channel,
    ContactDetails,
    ControllerRequests,
    DeliveryInfo,
    DeliveryReport,
    Fulfilment,
    QueueRoute,
    Receipt,
    RequestDesk,
    RequestDetails,
    RequestKind,
    RequestStatus,
    RequestSummary,
    RouteInfo,
    TriagedRequest,
    WaitingFor,
    WebhookRoute,
    verify_webhook,
)
from mizaic_processor.retention import (
    Appraisal,
    AppraisalItem,
    DestructionReport,
    Retention,
    RetentionInstruction,
    RetentionRule,
)
from mizaic_processor.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "Actor",
    "Appraisal",
    "AppraisalItem",
    "AuditError",
    "AuditEvent",
    "AuditReport",
    "AuditTamperedError",
    "AuditTrail",
    "BreachNotice",
    "BreachRef",
    "Channel",
    "ClockError",
    "ConfigurationError",
    "ConflictError",
    "ContactDetails",
    "ContentInfo",
    "ContentReader",
    "Controller",
    "ControllerRequests",
    "ControllerScope",
    "DeliveryInfo",
    "DeliveryReport",
    "DestructionEvidence",
    "DestructionReport",
    "Disclosure",
    "ErasureReport",
    "ExportSummary",
    "Fulfilment",
    "Hold",
    "HoldError",
    "HospitalNumber",
    "IndexReport",
    "Instruction",
    "IntegrityError",
    "InvalidInputError",
    "KeyManagementError",
    "KeyRotation",
    "KeyVaultKeyring",
    "Keyring",
    "LocalKeyring",
    "MizaicError",
    "NHSNumber",
    "NewRecord",
    "NotFoundError",
    "PartialFailureError",
    "Processor",
    "QueueRoute",
    "Receipt",
    "Record",
    "RecordRef",
    "RequestDesk",
    "RequestDetails",
    "RequestKind",
    "RequestStatus",
    "RequestSummary",
    "ResidencyError",
    "RestrictedError",
    "Retention",
    "RetentionInstruction",
    "RetentionRule",
    "Role",
    "RotationReport",
    "RouteInfo",
    "Settings",
    "StorageError",
    "SubjectId",
    "TriagedRequest",
    "WaitingFor",
    "WebhookRoute",
    "WrappedKey",
    "verify_webhook",
]
