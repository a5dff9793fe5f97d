"""What a transport is given: its chain, keys, peers and limits."""

from __future__ import annotations

from dataclasses import dataclass

from zhongshu.crypto import PrivateKey
from zhongshu.ledger.types import ChainParams
from zhongshu.p2p.frames import DEFAULT_MAX_FRAME
from zhongshu.p2p.pki import TLSFiles

FRAME_MARGIN = 1024 * 1024
"""Room in a frame beyond the chain's largest block: header, commit certificate, message wrappers."""


def compute_max_frame(params: ChainParams) -> int:
    """The frame limit a chain's replicas use: its largest block plus ``FRAME_MARGIN``."""
    return max(DEFAULT_MAX_FRAME, params.max_block_bytes + FRAME_MARGIN)


class TransportError(RuntimeError):
    """A transport configured inconsistently (its certificate names another key, wrong suite, ...)."""


@dataclass(frozen=True)
class PeerAddress:
    """A peer to dial: where it listens and the validator key it must present there."""

    name: str
    host: str
    port: int
    validator: bytes


@dataclass(frozen=True)
class TransportConfig:
    chain_id: str
    suite: str
    """The chain's crypto suite (``sm`` or ``intl``): the handshake signatures use it."""
    validator_key: PrivateKey
    validators: frozenset[bytes]
    """Public keys allowed to connect: the chain's validator set (this node's own key is ignored)."""
    tls: TLSFiles
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    """0 picks a free port (see ``Transport.port``)."""
    peers: tuple[PeerAddress, ...] = ()
    name: str = ""
    """This node's name, for log lines."""
    max_frame: int = DEFAULT_MAX_FRAME
    """Largest frame (kind byte + body) read or sent; a peer sending more is disconnected."""
    queue_messages: int = 10_000
    """Per-peer outbound queue bound in messages."""
    queue_bytes: int = 32 * 1024 * 1024
    """Per-peer outbound queue bound in bytes (framed)."""
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    handshake_timeout: float = 5.0
    """Seconds for TCP connect + TLS + validator handshake."""
    stall_timeout: float = 30.0
    """Seconds a peer's socket may accept no data while we have data for it, before we disconnect."""
    inbound_bytes_per_second: int = 16 * 1024 * 1024
    """Average bytes per second read from one peer (bursts up to two frames); more waits."""
    max_pending_handshakes: int = 64
    """Inbound connections still in their handshake beyond this are refused at once."""
