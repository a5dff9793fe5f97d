"""The single validator's signer: it persists its last signed vote before releasing it.

A vote is released only after the guard file is on disk, so a crash and restart can never
sign two different blocks at the same (height, round, step).
"""

from __future__ import annotations

import json
from pathlib import Path

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey
from zhongshu.ledger.types import Vote
from zhongshu.node.durable import save_durably


class DoubleSignRefused(RuntimeError):
    """The signer was asked to sign a conflicting or older vote."""


class Signer:
    def __init__(self, key: PrivateKey, state_path: Path) -> None:
        self.key = key
        self.public_key = key.public_bytes()
        self.state_path = state_path
        self._last: tuple[int, int, int] = (0, 0, 0)
        self._last_hash = ""
        self._last_signature = b""
        if state_path.exists():
            data = json.loads(state_path.read_text())
            self._last = (data["height"], data["round"], data["step"])
            self._last_hash = data["block_hash"]
            self._last_signature = bytes.fromhex(data.get("signature", ""))

    def sign_vote(self, vote: Vote) -> bytes:
        """Sign ``vote`` unless it goes back in (height, round, step) or conflicts with it."""
        hrs = (vote.height, vote.round, vote.kind)
        # Never sign below the last signed position.
        if hrs < self._last:
            raise DoubleSignRefused(f"vote at {hrs} is older than last signed {self._last}")
        # At the same position only the same block may be signed again.
        if hrs == self._last and vote.block_hash.hex() != self._last_hash:
            raise DoubleSignRefused(f"conflicting vote at {hrs}")
        # The same vote again (a replay after a crash) gets the signature already released.
        if hrs == self._last and self._last_signature:
            return self._last_signature
        signature = self.key.sign(encode(vote))
        self._save(hrs, vote.block_hash.hex(), signature)
        return signature

    def _save(self, hrs: tuple[int, int, int], block_hash: str, signature: bytes) -> None:
        doc = {"height": hrs[0], "round": hrs[1], "step": hrs[2], "block_hash": block_hash}
        doc["signature"] = signature.hex()
        save_durably(self.state_path, json.dumps(doc).encode())
        self._last = hrs
        self._last_hash = block_hash
        self._last_signature = signature
