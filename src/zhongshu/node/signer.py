"""The validator's signer: it persists its last signed (height, round, step) before signing.

A vote is released only after the guard file is on disk, so a crash and restart can never
sign two different blocks at the same (height, round, step).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from zhongshu.codec import encode
from zhongshu.crypto import PrivateKey
from zhongshu.ledger.types import Vote


class DoubleSignRefused(RuntimeError):
    """The signer was asked to sign a conflicting or older vote."""


class Signer:
    def __init__(self, key: PrivateKey, state_path: Path) -> None:
        self.key = key
        self.public_key = key.public_bytes()
        self.state_path = state_path
        self._last: tuple[int, int, int] = (0, 0, 0)
        self._last_hash = ""
        if state_path.exists():
            data = json.loads(state_path.read_text())
            self._last = (data["height"], data["round"], data["step"])
            self._last_hash = data["block_hash"]

    def sign_vote(self, vote: Vote) -> bytes:
        """Sign ``vote`` unless it goes back in (height, round, step) or conflicts with it."""
        hrs = (vote.height, vote.round, vote.kind)
        # Never sign below the last signed position.
        if hrs < self._last:
            raise DoubleSignRefused(f"vote at {hrs} is older than last signed {self._last}")
        # At the same position only the same block may be signed again.
        if hrs == self._last and vote.block_hash.hex() != self._last_hash:
            raise DoubleSignRefused(f"conflicting vote at {hrs}")
        self._save(hrs, vote.block_hash.hex())
        return self.key.sign(encode(vote))

    def _save(self, hrs: tuple[int, int, int], block_hash: str) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"height": hrs[0], "round": hrs[1], "step": hrs[2], "block_hash": block_hash}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)
        self._last = hrs
        self._last_hash = block_hash
