"""Keys, genesis documents and proof bundles, to and from files; failures as ``FileError``."""

from __future__ import annotations

import json
import os
from pathlib import Path

from zhongshu.crypto import CryptoError, PrivateKey, get_suite, load_private_key_pem
from zhongshu.ledger import genesis as genesis_file
from zhongshu.ledger.proof import ProofInvalid, load_bundle
from zhongshu.ledger.types import Genesis
from zhongshu.sdk.errors import FileError
from zhongshu.sdk.types import ProofBundle

StrPath = str | os.PathLike[str]


def _read(path: StrPath, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise FileError(str(path), f"cannot read the {what}: {exc.strerror or exc}") from None


def new_key(suite: str = "sm") -> PrivateKey:
    """A fresh private key of ``suite`` (``sm``: SM2, ``intl``: Ed25519); it must be the chain's."""
    try:
        return get_suite(suite).generate_private_key()
    except CryptoError as exc:
        raise FileError("(new key)", str(exc)) from None


def save_key(path: StrPath, key: PrivateKey) -> None:
    """Write ``key`` as PKCS#8 PEM, readable by its owner only; an existing file is refused."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.encode_pem())
    except OSError as exc:
        raise FileError(str(path), f"cannot write the key: {exc.strerror or exc}") from None


def load_key(path: StrPath) -> PrivateKey:
    """The private key in a PEM file (PKCS#8, as ``zhongshu keys new`` writes): SM2 or Ed25519."""
    try:
        return load_private_key_pem(_read(path, "key"))
    except CryptoError as exc:
        raise FileError(str(path), str(exc)) from None


def load_genesis(path: StrPath) -> Genesis:
    """The genesis document in ``path`` (a node's genesis.json), read strictly: what a proof is
    verified against (``verify_proof(..., trusted=...)``)."""
    try:
        return genesis_file.load_genesis(Path(path))
    except genesis_file.GenesisError as exc:
        raise FileError(str(path), str(exc)) from None


def load_proof(path: StrPath) -> ProofBundle:
    """The proof bundle in ``path``; ProofInvalid unless it is strict JSON of an object (§6)."""
    document = load_bundle(_read(path, "proof bundle"))
    # A bundle is an object; anything else is no proof of anything.
    if not isinstance(document, dict):
        raise ProofInvalid("the bundle is not a JSON object")
    return ProofBundle(document=document)


def save_proof(path: StrPath, bundle: ProofBundle) -> None:
    """Write ``bundle`` as JSON text (what ``zhongshu verify`` and ``load_proof`` read)."""
    try:
        Path(path).write_text(json.dumps(bundle.document, indent=2) + "\n", "utf-8")
    except OSError as exc:
        raise FileError(str(path), f"cannot write the proof bundle: {exc.strerror or exc}") from None
