"""Python client of the Zhongshu gateway (docs/sdk.md).

``Client`` (blocking) and ``AsyncClient`` (asyncio) implement docs/access-spec.md: their answers
are typed values (``zhongshu.sdk.types``), their failures ``ZhongshuError``s. Keys, genesis
documents and proof bundles load from files; proofs verify offline with ``verify_proof``.
"""

from zhongshu.crypto import PrivateKey
from zhongshu.ledger.proof import VerifiedProof, VerifiedState
from zhongshu.ledger.types import Genesis, Transaction
from zhongshu.sdk.aio import AsyncClient
from zhongshu.sdk.app import AppCredentials, load_app
from zhongshu.sdk.client import DEFAULT_URL, Client
from zhongshu.sdk.errors import (
    ApiError,
    CommitTimeout,
    ConnectionFailed,
    FileError,
    ProofInvalid,
    UnexpectedResponse,
    UnsignableRequest,
    UntrustedAnswer,
    ZhongshuError,
)
from zhongshu.sdk.files import load_genesis, load_key, load_proof, new_key, save_key, save_proof
from zhongshu.sdk.proofs import verify_proof
from zhongshu.sdk.tx import DEFAULT_VALIDITY, evidence_tx, sign_tx
from zhongshu.sdk.types import (
    BlockView,
    ChainPage,
    ChainStatus,
    CommitSignature,
    CommitView,
    DepositResult,
    Event,
    EvidenceAt,
    EvidencePage,
    EvidenceRecord,
    HeaderView,
    Outcome,
    ProofBundle,
    Receipt,
    SignedTx,
    StateValue,
    SubmitResult,
    TxView,
)

__all__ = [
    "DEFAULT_URL",
    "DEFAULT_VALIDITY",
    "ApiError",
    "AppCredentials",
    "AsyncClient",
    "BlockView",
    "ChainPage",
    "ChainStatus",
    "Client",
    "CommitSignature",
    "CommitTimeout",
    "CommitView",
    "ConnectionFailed",
    "DepositResult",
    "Event",
    "EvidenceAt",
    "EvidencePage",
    "EvidenceRecord",
    "FileError",
    "Genesis",
    "HeaderView",
    "Outcome",
    "PrivateKey",
    "ProofBundle",
    "ProofInvalid",
    "Receipt",
    "SignedTx",
    "StateValue",
    "SubmitResult",
    "Transaction",
    "TxView",
    "UnexpectedResponse",
    "UnsignableRequest",
    "UntrustedAnswer",
    "VerifiedProof",
    "VerifiedState",
    "ZhongshuError",
    "evidence_tx",
    "load_app",
    "load_genesis",
    "load_key",
    "load_proof",
    "new_key",
    "save_key",
    "save_proof",
    "sign_tx",
    "verify_proof",
]
