"""The double-sign guard: the rule a signer applies before releasing a signature.

The signer keeps ``LastSigned``: the (height, round, step) it signed last, the sign-bytes and
the signature. It persists the new ``LastSigned`` *before* releasing a signature, so a crash
can never make it forget one. Steps: proposal 0, prevote 1, precommit 2 (``Step``).

- A position after the last one: sign.
- The same position with the same bytes: return the stored signature (a replay after a crash
  asks again for what was already signed; SM2 signatures are randomised, so re-signing would
  give different bytes for one message).
- The same position with different bytes: refuse, that is a double sign.
- An earlier position: refuse.
"""

from __future__ import annotations

from enum import Enum

import msgspec

from zhongshu.consensus.messages import Proposal, Step, proposal_sign_bytes, vote_sign_bytes
from zhongshu.ledger.types import Vote


class LastSigned(msgspec.Struct, array_like=True, frozen=True, tag="last_signed"):
    """What the signer persists before releasing a signature."""

    height: int
    round: int
    step: int
    sign_bytes: bytes
    signature: bytes


class SignCheck(Enum):
    SIGN = "sign"
    """New position: sign, persist, release."""
    REUSE = "reuse"
    """Already signed exactly this: release the stored signature."""
    REFUSE_CONFLICT = "conflict"
    """Different bytes at the signed position: a double sign."""
    REFUSE_STALE = "stale"
    """Before the last signed position."""


def get_position(message: Proposal | Vote) -> tuple[int, int, int, bytes]:
    """(height, round, step, sign-bytes) of a message to sign."""
    if isinstance(message, Proposal):
        return message.height, message.round, int(Step.PROPOSE), proposal_sign_bytes(message)
    return message.height, message.round, message.kind, vote_sign_bytes(message)


def check_signing(last: LastSigned | None, message: Proposal | Vote) -> SignCheck:
    """May the signer sign ``message`` after ``last``? See the module docstring for the rule."""
    height, round, step, data = get_position(message)
    if last is None:
        return SignCheck.SIGN
    position, last_position = (height, round, step), (last.height, last.round, last.step)
    if position > last_position:
        return SignCheck.SIGN
    if position < last_position:
        return SignCheck.REFUSE_STALE
    return SignCheck.REUSE if data == last.sign_bytes else SignCheck.REFUSE_CONFLICT
