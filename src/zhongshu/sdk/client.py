"""``zhongshu.sdk.Client``: build and sign transactions, submit, wait, fetch and verify proofs."""

from __future__ import annotations

from typing import Any, BinaryIO, TypeVar

import httpx

from zhongshu.crypto import PrivateKey
from zhongshu.gateway.access import new_nonce
from zhongshu.ledger.proof import VerifiedProof, VerifiedState
from zhongshu.ledger.types import Genesis, Transaction
from zhongshu.sdk import calls
from zhongshu.sdk.app import AppCredentials, wall_clock_ms
from zhongshu.sdk.calls import Call, ChainRef, Operation
from zhongshu.sdk.errors import ApiError
from zhongshu.sdk.proofs import verify_proof
from zhongshu.sdk.transport import (
    FAILURES,
    TrustedValidators,
    connection_failed,
    read_response,
    request_args,
    sign_app_request,
)
from zhongshu.sdk.tx import DEFAULT_VALIDITY, evidence_tx, sign_tx
from zhongshu.sdk.types import (
    BlockView,
    ChainPage,
    ChainStatus,
    EvidenceAt,
    EvidencePage,
    EvidenceRecord,
    ProofBundle,
    Receipt,
    StateValue,
    SubmitResult,
    TxView,
)

DEFAULT_URL = "http://127.0.0.1:7700"
DEFAULT_TIMEOUT = 60.0
"""Seconds a request may take (a commit wait gets its own wait on top)."""
DEFAULT_COMMIT_WAIT = 30.0
"""Seconds ``wait=commit`` waits by default, as the gateway does."""

T = TypeVar("T")


class Client:
    """A connection to one gateway and one chain on it; every failure is a ``ZhongshuError``.

    The chain's genesis hash, which every transaction signs, is read from the chain's status
    once and kept: if the gateway later serves another network's chain of that name,
    its transactions are refused (``wrong-genesis``) rather than signed for the new network.
    With ``trusted`` (a genesis you hold), every answer must carry the signature of one of its
    validators over that answer to that request, or the call raises ``UntrustedAnswer``.
    With ``app`` (``load_app`` reads a registration's credentials file), every request is signed
    with the application's id and key, a fresh nonce and the current time, as a hub node
    requires for submitting to a business chain; both options may be on at once.
    ``AsyncClient`` has the same methods, as coroutines.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        chain: str = "main",
        timeout: float = DEFAULT_TIMEOUT,
        *,
        trusted: Genesis | None = None,
        app: AppCredentials | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.chain = chain
        self.timeout = timeout
        self._ref = ChainRef(chain)
        self._trusted = TrustedValidators(trusted) if trusted is not None else None
        """With ``trusted``, every answer must be signed by one of its validators."""
        self._app = app
        """With ``app``, every request is signed with the application's id and key."""
        self._http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, call: Call[Any]) -> Any:
        nonce = new_nonce() if self._trusted or self._app else ""
        try:
            request = self._http.build_request(**request_args(call, self.timeout, nonce))
            if self._app is not None:
                sign_app_request(request, self._app, nonce, wall_clock_ms())
            response = self._http.send(request)
        except FAILURES as exc:
            raise connection_failed(self.url, exc) from None
        if self._trusted:
            self._trusted.check(self.url, response, nonce)
        return read_response(call, response)

    def _run(self, op: Operation[T]) -> T:
        return calls.run_sync(op, self._send)

    def chains(self) -> list[ChainStatus]:
        """Every chain the node serves, by chain id (all pages)."""
        return self._run(calls.all_chains())

    def chain_page(self, cursor: str | None = None, limit: int | None = None) -> ChainPage:
        """One page of the chains the node serves."""
        return self._run(calls.chain_page(cursor, limit))

    def status(self) -> ChainStatus:
        """The chain's height, latest block, genesis hash and mempool."""
        return self._run(calls.status(self._ref))

    def genesis_hash(self) -> bytes:
        """The chain's genesis hash, read from its status once and then kept."""
        return self._run(calls.genesis_hash(self._ref))

    def genesis(self) -> Genesis:
        """The genesis document the gateway serves (for a proof, trust your own copy instead)."""
        return self._run(calls.genesis(self._ref))

    def sign(
        self, key: PrivateKey, contract: str, method: str, args: Any, *, validity: int = DEFAULT_VALIDITY
    ) -> Transaction:
        """Sign a transaction for this chain, valid for ``validity`` blocks from the current height."""
        return self._run(calls.sign(self._ref, key, contract, method, args, validity))

    def submit(
        self, txs: Transaction | list[Transaction], *, wait: bool = True, timeout: float = DEFAULT_COMMIT_WAIT
    ) -> SubmitResult:
        """Submit one transaction or a batch (all or nothing); with ``wait``, return once all are
        committed, with receipts (CommitTimeout after ``timeout`` seconds)."""
        return self._run(calls.submit(self._ref, txs, wait, timeout))

    def put_evidence(
        self,
        key: PrivateKey,
        digest: bytes,
        name: str,
        metadata: dict[str, str] | None = None,
        payload: bytes = b"",
        *,
        algorithm: str | None = None,
        timeout: float = DEFAULT_COMMIT_WAIT,
    ) -> Receipt:
        """Deposit a digest (made with ``algorithm``, when named) and wait for its commit; return
        its receipt (``receipt.deposit()`` reads the deposit's result)."""
        return self._run(
            calls.put_evidence(self._ref, key, digest, name, metadata, payload, algorithm, timeout)
        )

    def get_tx(self, tx_hash: str | bytes) -> TxView:
        """A transaction by hash, with its receipt once committed."""
        return self._run(calls.get_tx(self._ref, tx_hash))

    def get_block(self, height: int | str) -> BlockView:
        """A block by height, or ``"latest"``."""
        return self._run(calls.get_block(self._ref, height))

    def get_proof(self, tx_hash: str | bytes, *, anchor_latest: bool = False) -> ProofBundle:
        """The offline proof bundle of a committed transaction; ``anchor_latest`` proves its
        block through the newest header too."""
        return self._run(calls.get_proof(self._ref, tx_hash, anchor_latest))

    def get_evidence(self, digest: str | bytes) -> EvidenceRecord:
        """The evidence record of a digest."""
        return self._run(calls.get_evidence(self._ref, digest))

    def get_state(
        self, key: bytes, *, height: int | None = None, proof: bool = False, anchor_latest: bool = False
    ) -> StateValue:
        """State key ``key``'s value, or its absence, after block ``height`` (default: the newest);
        ``proof`` adds the offline state bundle (``verify_proof`` checks it), ``anchor_latest``
        proves its block through the newest header too. Keys: docs/state-layout.md."""
        return self._run(calls.get_state(self._ref, key, height, proof, anchor_latest))

    def get_evidence_at(
        self,
        digest: str | bytes,
        *,
        height: int | None = None,
        proof: bool = False,
        anchor_latest: bool = False,
    ) -> EvidenceAt:
        """Whether ``digest`` was deposited as of block ``height`` (default: the newest): its
        record or its absence, with the offline state bundle when ``proof``."""
        return self._run(calls.get_evidence_at(self._ref, digest, height, proof, anchor_latest))

    def evidence_page(
        self, owner: str | bytes, cursor: str | None = None, limit: int | None = None
    ) -> EvidencePage:
        """One page of the records ``owner`` (a public key) deposited, oldest first."""
        return self._run(calls.evidence_page(self._ref, owner, cursor, limit))

    def list_evidence(self, owner: str | bytes) -> list[EvidenceRecord]:
        """Every record ``owner`` (a public key) deposited, oldest first (all pages)."""
        return self._run(calls.all_evidence(self._ref, owner))

    @staticmethod
    def verify_proof(
        bundle: ProofBundle | dict[str, Any],
        *,
        trusted: Genesis | None,
        file_digest: bytes | None = None,
        file: BinaryIO | None = None,
    ) -> VerifiedProof | VerifiedState:
        """``zhongshu.sdk.verify_proof``, kept here for existing callers."""
        return verify_proof(bundle, trusted=trusted, file_digest=file_digest, file=file)


__all__ = ["DEFAULT_URL", "DEFAULT_VALIDITY", "ApiError", "Client", "evidence_tx", "sign_tx"]
