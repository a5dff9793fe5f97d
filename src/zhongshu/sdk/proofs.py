"""Offline verification of proof bundles: exactly the checks ``zhongshu verify`` runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, BinaryIO

from zhongshu.ledger.proof import (
    STATE_FORMAT,
    VerifiedProof,
    VerifiedState,
    load_bundle,
    verify_bundle,
    verify_state_bundle,
)
from zhongshu.ledger.types import Genesis
from zhongshu.sdk.errors import FileError
from zhongshu.sdk.types import ProofBundle


def verify_proof(
    bundle: ProofBundle | dict[str, Any] | bytes | str,
    *,
    trusted: Genesis | None,
    file_digest: bytes | None = None,
    file: BinaryIO | str | os.PathLike[str] | None = None,
) -> VerifiedProof | VerifiedState:
    """What a bundle proves, checked offline; ProofInvalid at the first check that fails.

    A transaction bundle (``zhongshu-proof/2``) gives a VerifiedProof, a state bundle
    (``zhongshu-state-proof/1``: a key's value or its absence at a height) a VerifiedState.

    ``bundle`` is a fetched or loaded ``ProofBundle``, its JSON object, or its JSON text (read
    strictly). ``trusted`` is the chain's genesis as you obtained it yourself (``load_genesis``);
    without it the validator set is taken from the bundle itself and proves only that the
    bundle is consistent. ``file_digest`` or ``file`` (a path or a binary stream, hashed with
    the hash the deposit names) must be what the transaction deposited.
    """
    if isinstance(bundle, ProofBundle):
        document: Any = bundle.document
    elif isinstance(bundle, bytes | str):
        document = load_bundle(bundle)
    else:
        document = bundle
    if file is None or not isinstance(file, str | os.PathLike):
        return _verify(document, trusted, file_digest, file, None)
    try:
        with Path(file).open("rb") as stream:
            return _verify(document, trusted, file_digest, stream, str(file))
    except OSError as exc:
        raise FileError(str(file), f"cannot read the file: {exc.strerror or exc}") from None


def _verify(
    document: Any,
    trusted: Genesis | None,
    file_digest: bytes | None,
    stream: BinaryIO | None,
    name: str | None,
) -> VerifiedProof | VerifiedState:
    # The bundle's format says which kind it is; any other format is a tx bundle's error.
    verify = (
        verify_state_bundle
        if isinstance(document, dict) and document.get("format") == STATE_FORMAT
        else verify_bundle
    )
    try:
        return verify(document, trusted=trusted, file_digest=file_digest, file=stream)
    except OSError as exc:
        where = name or getattr(stream, "name", "the file")
        raise FileError(str(where), f"cannot read the file: {exc.strerror or exc}") from None
