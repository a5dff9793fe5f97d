"""``zhongshu.sdk.Client``: build and sign transactions, submit, wait, fetch and verify proofs."""

from __future__ import annotations

import secrets
from typing import Any, BinaryIO

import httpx

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey
from zhongshu.ledger.evidence_args import DIGEST_ALGORITHM_KEY, EvidencePut
from zhongshu.ledger.genesis import genesis_from_json
from zhongshu.ledger.proof import VerifiedProof, verify_bundle
from zhongshu.ledger.types import Genesis, Transaction, TxBody
from zhongshu.node.txcheck import tx_to_json

DEFAULT_URL = "http://127.0.0.1:7700"
DEFAULT_VALIDITY = 10_000
"""Blocks a transaction stays valid for, by default."""


class ApiError(Exception):
    """The gateway answered with a problem document."""

    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        self.status = status
        self.problem = problem
        self.type = str(problem.get("type", ""))
        self.detail = str(problem.get("detail", problem))
        super().__init__(f"{status} {problem.get('title', '')}: {self.detail}")


def sign_tx(
    key: PrivateKey,
    chain_id: str,
    genesis_hash: bytes,
    contract: str,
    method: str,
    args: Any,
    valid_until: int,
    nonce: int | None = None,
) -> Transaction:
    """A signed transaction for the chain ``chain_id`` of genesis ``genesis_hash`` (its status's
    ``genesis_hash``); ``args`` is a msgspec Struct (or bytes already encoded)."""
    raw_args = args if isinstance(args, bytes) else encode(args)
    body = TxBody(
        chain_id,
        genesis_hash,
        key.public_bytes(),
        contract,
        method,
        raw_args,
        valid_until,
        secrets.randbits(63) if nonce is None else nonce,
    )
    signature = key.sign(encode(body))
    return Transaction(
        body.chain_id,
        body.genesis_hash,
        body.sender,
        body.contract,
        body.method,
        body.args,
        body.valid_until,
        body.nonce,
        signature,
    )


def evidence_tx(
    key: PrivateKey,
    chain_id: str,
    genesis_hash: bytes,
    digest: bytes,
    name: str,
    valid_until: int,
    metadata: dict[str, str] | None = None,
    payload: bytes = b"",
    algorithm: str | None = None,
) -> Transaction:
    """A signed ``evidence.put`` of ``digest``; ``algorithm`` (e.g. ``sha512``) names the hash the
    digest was made with, recorded as ``metadata["algorithm"]`` (docs/proof-format.md §2). Left
    out, a verifier takes the suite's hash for 32 bytes, sha384 for 48 and sha512 for 64."""
    meta = dict(metadata or {})
    if algorithm is not None:
        meta[DIGEST_ALGORITHM_KEY] = algorithm
    args = EvidencePut(digest, name, meta, payload)
    return sign_tx(key, chain_id, genesis_hash, "evidence", "put", args, valid_until)


class Client:
    """A connection to one gateway and one chain on it.

    The chain's genesis hash, which every transaction signs, is read from the chain's status
    once and kept: if the gateway later serves another network's chain of that name,
    its transactions are refused (``wrong-genesis``) rather than signed for the new network.
    """

    def __init__(self, url: str = DEFAULT_URL, chain: str = "main", timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.chain = chain
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._genesis_hash: bytes | None = None

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                problem = response.json()
            except ValueError:
                problem = {"detail": response.text}
            raise ApiError(
                response.status_code, problem if isinstance(problem, dict) else {"detail": problem}
            )
        return response.json()

    def _chain(self, suffix: str) -> str:
        return f"/v1/chains/{self.chain}{suffix}"

    def _all_pages(self, path: str, **params: str) -> list[dict[str, Any]]:
        """Every item of a paged list route, following ``next_cursor`` to the end."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            page = self._call("GET", path, params={**params, "cursor": cursor} if cursor else params)
            items.extend(page["items"])
            if page["next_cursor"] is None:
                return items
            cursor = str(page["next_cursor"])

    def chains(self) -> list[dict[str, Any]]:
        return self._all_pages("/v1/chains")

    def status(self) -> dict[str, Any]:
        return dict(self._call("GET", self._chain("/status")))

    def genesis_hash(self) -> bytes:
        """The chain's genesis hash, fetched from its status once and then cached."""
        if self._genesis_hash is None:
            self._genesis_hash = bytes.fromhex(self.status()["genesis_hash"])
        return self._genesis_hash

    def genesis(self) -> Genesis:
        return genesis_from_json(self._call("GET", self._chain("/genesis")))

    def sign(
        self, key: PrivateKey, contract: str, method: str, args: Any, *, validity: int = DEFAULT_VALIDITY
    ) -> Transaction:
        """Sign a transaction for this chain, valid for ``validity`` blocks from the current height."""
        height = int(self.status()["height"])
        return sign_tx(key, self.chain, self.genesis_hash(), contract, method, args, height + validity)

    def submit(
        self, txs: Transaction | list[Transaction], *, wait: bool = True, timeout: float = 30.0
    ) -> dict[str, Any]:
        """Submit one transaction or a batch; with ``wait`` return once committed, with receipts."""
        body = [tx_to_json(t) for t in txs] if isinstance(txs, list) else tx_to_json(txs)
        params = {"wait": "commit", "timeout": str(timeout)} if wait else {}
        return dict(self._call("POST", self._chain("/txs"), json=body, params=params))

    def put_evidence(
        self,
        key: PrivateKey,
        digest: bytes,
        name: str,
        metadata: dict[str, str] | None = None,
        payload: bytes = b"",
        *,
        algorithm: str | None = None,
    ) -> dict[str, Any]:
        """Deposit a digest (made with ``algorithm``, when named) and wait for its commit; return
        the receipt view."""
        height = int(self.status()["height"])
        valid_until = height + DEFAULT_VALIDITY
        tx = evidence_tx(
            key, self.chain, self.genesis_hash(), digest, name, valid_until, metadata, payload, algorithm
        )
        return dict(self.submit(tx)["receipts"][0])

    def get_tx(self, tx_hash: str) -> dict[str, Any]:
        return dict(self._call("GET", self._chain(f"/txs/{tx_hash}")))

    def get_block(self, height: int | str) -> dict[str, Any]:
        return dict(self._call("GET", self._chain(f"/blocks/{height}")))

    def get_proof(self, tx_hash: str, *, anchor_latest: bool = False) -> dict[str, Any]:
        params = {"anchor": "latest"} if anchor_latest else {}
        return dict(self._call("GET", self._chain(f"/txs/{tx_hash}/proof"), params=params))

    def get_evidence(self, digest: str) -> dict[str, Any]:
        return dict(self._call("GET", self._chain(f"/evidence/{digest}")))

    def list_evidence(self, owner: str) -> list[dict[str, Any]]:
        """Every record deposited by ``owner`` (public key, hex), oldest first, page by page."""
        return self._all_pages(self._chain("/evidence"), owner=owner)

    @staticmethod
    def verify_proof(
        bundle: dict[str, Any],
        *,
        trusted: Genesis | None,
        file_digest: bytes | None = None,
        file: BinaryIO | None = None,
    ) -> VerifiedProof:
        """Verify a bundle offline, with exactly the code ``zhongshu verify`` runs; ``file`` is
        hashed with the hash the deposit names."""
        return verify_bundle(bundle, trusted=trusted, file_digest=file_digest, file=file)
