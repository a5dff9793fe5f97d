"""``zhongshu.sdk.AsyncClient``: the methods of ``Client``, as coroutines over asyncio."""

from __future__ import annotations

from typing import Any, TypeVar

import httpx

from zhongshu.crypto import PrivateKey
from zhongshu.gateway.access import new_nonce
from zhongshu.ledger.types import Genesis, Transaction
from zhongshu.sdk import calls
from zhongshu.sdk.app import AppCredentials, wall_clock_ms
from zhongshu.sdk.calls import Call, ChainRef, Operation
from zhongshu.sdk.client import DEFAULT_COMMIT_WAIT, DEFAULT_TIMEOUT, DEFAULT_URL
from zhongshu.sdk.transport import (
    FAILURES,
    TrustedValidators,
    connection_failed,
    read_response,
    request_args,
    sign_app_request,
)
from zhongshu.sdk.tx import DEFAULT_VALIDITY
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

T = TypeVar("T")


class AsyncClient:
    """A connection to one gateway and one chain on it, for asyncio; use ``async with``.

    Each method is ``Client``'s, awaited: the same requests, answers and errors (the two run
    the same operations of ``zhongshu.sdk.calls``).
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
        self._http = httpx.AsyncClient(base_url=self.url, timeout=timeout)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _send(self, call: Call[Any]) -> Any:
        nonce = new_nonce() if self._trusted or self._app else ""
        try:
            request = self._http.build_request(**request_args(call, self.timeout, nonce))
            if self._app is not None:
                sign_app_request(request, self._app, nonce, wall_clock_ms())
            response = await self._http.send(request)
        except FAILURES as exc:
            raise connection_failed(self.url, exc) from None
        if self._trusted:
            self._trusted.check(self.url, response, nonce)
        return read_response(call, response)

    async def _run(self, op: Operation[T]) -> T:
        return await calls.run_async(op, self._send)

    async def chains(self) -> list[ChainStatus]:
        """Every chain the node serves, by chain id (all pages)."""
        return await self._run(calls.all_chains())

    async def chain_page(self, cursor: str | None = None, limit: int | None = None) -> ChainPage:
        """One page of the chains the node serves."""
        return await self._run(calls.chain_page(cursor, limit))

    async def status(self) -> ChainStatus:
        """The chain's height, latest block, genesis hash and mempool."""
        return await self._run(calls.status(self._ref))

    async def genesis_hash(self) -> bytes:
        """The chain's genesis hash, read from its status once and then kept."""
        return await self._run(calls.genesis_hash(self._ref))

    async def genesis(self) -> Genesis:
        """The genesis document the gateway serves (for a proof, trust your own copy instead)."""
        return await self._run(calls.genesis(self._ref))

    async def sign(
        self, key: PrivateKey, contract: str, method: str, args: Any, *, validity: int = DEFAULT_VALIDITY
    ) -> Transaction:
        """Sign a transaction for this chain, valid for ``validity`` blocks from the current height."""
        return await self._run(calls.sign(self._ref, key, contract, method, args, validity))

    async def submit(
        self, txs: Transaction | list[Transaction], *, wait: bool = True, timeout: float = DEFAULT_COMMIT_WAIT
    ) -> SubmitResult:
        """Submit one transaction or a batch; with ``wait``, return once all are committed."""
        return await self._run(calls.submit(self._ref, txs, wait, timeout))

    async def put_evidence(
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
        """Deposit a digest and wait for its commit; return its receipt."""
        return await self._run(
            calls.put_evidence(self._ref, key, digest, name, metadata, payload, algorithm, timeout)
        )

    async def get_tx(self, tx_hash: str | bytes) -> TxView:
        """A transaction by hash, with its receipt once committed."""
        return await self._run(calls.get_tx(self._ref, tx_hash))

    async def get_block(self, height: int | str) -> BlockView:
        """A block by height, or ``"latest"``."""
        return await self._run(calls.get_block(self._ref, height))

    async def get_proof(self, tx_hash: str | bytes, *, anchor_latest: bool = False) -> ProofBundle:
        """The offline proof bundle of a committed transaction."""
        return await self._run(calls.get_proof(self._ref, tx_hash, anchor_latest))

    async def get_evidence(self, digest: str | bytes) -> EvidenceRecord:
        """The evidence record of a digest."""
        return await self._run(calls.get_evidence(self._ref, digest))

    async def get_state(
        self, key: bytes, *, height: int | None = None, proof: bool = False, anchor_latest: bool = False
    ) -> StateValue:
        """State key ``key``'s value, or its absence, after block ``height`` (default: the newest);
        ``proof`` adds the offline state bundle (``verify_proof`` checks it), ``anchor_latest``
        proves its block through the newest header too. Keys: docs/state-layout.md."""
        return await self._run(calls.get_state(self._ref, key, height, proof, anchor_latest))

    async def get_evidence_at(
        self,
        digest: str | bytes,
        *,
        height: int | None = None,
        proof: bool = False,
        anchor_latest: bool = False,
    ) -> EvidenceAt:
        """Whether ``digest`` was deposited as of block ``height`` (default: the newest): its
        record or its absence, with the offline state bundle when ``proof``."""
        return await self._run(calls.get_evidence_at(self._ref, digest, height, proof, anchor_latest))

    async def evidence_page(
        self, owner: str | bytes, cursor: str | None = None, limit: int | None = None
    ) -> EvidencePage:
        """One page of the records ``owner`` (a public key) deposited, oldest first."""
        return await self._run(calls.evidence_page(self._ref, owner, cursor, limit))

    async def list_evidence(self, owner: str | bytes) -> list[EvidenceRecord]:
        """Every record ``owner`` (a public key) deposited, oldest first (all pages)."""
        return await self._run(calls.all_evidence(self._ref, owner))
