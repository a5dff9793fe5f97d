"""The validator's signer for BFT consensus, applying the double-sign guard with a synced file.

``LastSigned`` (position, sign-bytes, signature) is written and fsynced *before* a signature is
released, so no crash can make the node sign two different messages at one position; asking
again for what it already signed returns the stored signature.
"""

from __future__ import annotations

from pathlib import Path

from zhongshu.codec import decode, encode
from zhongshu.consensus.guard import LastSigned, SignCheck, check_signing, get_position
from zhongshu.consensus.messages import Proposal
from zhongshu.crypto import PrivateKey
from zhongshu.ledger.types import Vote
from zhongshu.node.durable import save_durably
from zhongshu.node.signer import DoubleSignRefused


class ConsensusSigner:
    def __init__(self, key: PrivateKey, state_path: Path) -> None:
        self.key = key
        self.public_key = key.public_bytes()
        self.state_path = state_path
        self.last: LastSigned | None = None
        if state_path.exists() and state_path.stat().st_size:
            self.last = decode(state_path.read_bytes(), LastSigned)

    def sign(self, message: Proposal | Vote) -> bytes:
        """Sign ``message`` unless that would be a double sign; see zhongshu.consensus.guard."""
        check = check_signing(self.last, message)
        if check is SignCheck.REUSE and self.last is not None:
            return self.last.signature
        if check is not SignCheck.SIGN:
            raise DoubleSignRefused(f"refusing to sign {message!r}: {check.value}")
        height, round_, step, data = get_position(message)
        signature = self.key.sign(data)
        last = LastSigned(height, round_, step, data, signature)
        save_durably(self.state_path, encode(last))
        self.last = last
        return signature
