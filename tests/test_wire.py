"""Every message replicas send each other decodes through the one wire union.

A message type missing from ``WireMessage`` is never answered (a node's ``GetBlock`` went
unanswered that way): each tagged struct of ``zhongshu.node.wire`` must round-trip through
``decode(payload, WireMessage)``.
"""

from __future__ import annotations

import inspect
import typing

import msgspec
import pytest

from zhongshu.codec import DecodeError, decode, decode_any, encode
from zhongshu.consensus.messages import Proposal, SignedProposal, SignedVote
from zhongshu.ledger.types import PRECOMMIT, Block, CommitCertificate, CommitSig, Header, Transaction, Vote
from zhongshu.node import wire

H = bytes(range(32))
KEY = b"\x04" + bytes(64)


def _header() -> Header:
    return Header(
        chain_id="main",
        height=7,
        time=1_700_000_000_000,
        prev_hash=H,
        tx_count=1,
        tx_root=H,
        receipt_root=H,
        state_root=H,
        history_root=H,
        validator_set_hash=H,
        proposer=KEY,
    )


def _tx() -> Transaction:
    return Transaction("main", H, KEY, "evidence", "put", b"\x90", 100, 5, b"\x30\x06")


def _examples() -> list[msgspec.Struct]:
    header = _header()
    block = Block(header, [_tx()])
    proposal = SignedProposal(Proposal("main", 7, 0, H, -1, KEY), b"sig")
    vote = SignedVote(Vote(PRECOMMIT, "main", 7, 0, H), KEY, b"sig")
    commit = CommitCertificate(7, 0, H, [CommitSig(KEY, b"sig")])
    return [
        wire.TxsGossip([_tx()]),
        wire.ProposalGossip(proposal, header, [H]),
        wire.VoteGossip(vote),
        wire.GetTxs(H, [H]),
        wire.TxsReply(H, [_tx()]),
        wire.GetBlock(H),
        wire.BlockBody(block),
        wire.Status(7),
        wire.GetBlocks(1, 20),
        wire.BlocksReply([wire.SyncedBlock(block, commit)]),
    ]


def _tagged_structs() -> set[type]:
    """Every struct defined in the wire module that carries a ``w.`` tag."""
    return {
        cls
        for _, cls in inspect.getmembers(wire, inspect.isclass)
        if issubclass(cls, msgspec.Struct)
        and cls.__module__ == wire.__name__
        and isinstance(cls.__struct_config__.tag, str)
        and cls.__struct_config__.tag.startswith("w.")
        and cls is not wire.ProposalHead
    }


def test_every_tagged_message_is_in_the_union() -> None:
    assert set(typing.get_args(wire.WireMessage)) == _tagged_structs()


def test_the_examples_cover_the_union() -> None:
    assert {type(m) for m in _examples()} == set(typing.get_args(wire.WireMessage))


@pytest.mark.parametrize("message", _examples(), ids=lambda m: type(m).__name__)
def test_round_trip_through_the_union(message: msgspec.Struct) -> None:
    payload = encode(message)
    back = decode(payload, wire.WireMessage)  # type: ignore[arg-type]
    assert type(back) is type(message)
    assert back == message
    assert encode(back) == payload


def test_peek_reads_only_proposals() -> None:
    gossip = _examples()[1]
    assert isinstance(gossip, wire.ProposalGossip)
    assert wire.peek_proposal(encode(gossip)) == gossip.proposal
    for other in _examples():
        if not isinstance(other, wire.ProposalGossip):
            assert wire.peek_proposal(encode(other)) is None
    assert wire.peek_proposal(b"\xff\x00garbage") is None


def test_a_string_that_is_not_utf8_is_a_malformed_message_not_an_error() -> None:
    # msgspec raises UnicodeDecodeError (not DecodeError) for such a string; a peer's bytes
    # must never raise past the reader (a fuzzing peer once filled a node's log with tracebacks).
    gossip = _examples()[1]
    assert isinstance(gossip, wire.ProposalGossip)
    payload = encode(gossip)
    chain = encode("main")
    assert payload.count(chain) >= 1
    bad = payload.replace(chain, chain[:1] + b"\xff\xfe\xfd\xfc")
    assert wire.peek_proposal(bad) is None
    with pytest.raises(DecodeError):
        decode(bad, wire.WireMessage)  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode_any(encode(["a", b"b"]).replace(b"\xa1a", b"\xa1\xff"))
