"""What a transport reports: counters since start, and one snapshot per connected peer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Metrics:
    """Counters since start; read them, never write them."""

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    dropped: int = 0
    """Messages discarded unsent: queue overflow (oldest first) or still queued when a connection closed."""
    unroutable: int = 0
    """``send`` calls for a peer that was not connected."""
    oversized_frames: int = 0
    protocol_errors: int = 0
    stalled: int = 0
    """Peers disconnected because their socket accepted nothing for ``stall_timeout``."""
    handshakes: int = 0
    """Handshakes that succeeded (including duplicates closed by the tie-break)."""
    rejected_handshakes: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    """Rejected handshakes by reason code."""
    dial_failures: int = 0
    duplicates_closed: int = 0
    callback_errors: int = 0
    throttled: int = 0
    """Times a peer's reading paused because it sent more than ``inbound_bytes_per_second``."""


@dataclass(frozen=True)
class PeerInfo:
    validator: bytes
    name: str
    outbound: bool
    """True when this node dialled the connection."""
    address: str
    """The peer's end of the TCP connection, host:port."""
    local_address: str
    """This node's end of the TCP connection, host:port."""
    tls_version: str
    cipher: str
    cert_sha256: bytes
    queued_messages: int
    queued_bytes: int
    dropped: int
    """Messages dropped from this connection's queue on overflow."""
