"""The validator handshake that runs on every TLS connection before it carries messages.

After the TLS handshake (both sides present a certificate of the network CA) both sides:

1. check the validator key named in the peer's certificate: it must be a validator of the
   chain, not their own key, and (when dialling) the key configured for that address;
2. send HELLO = encode(Hello(version=1, chain_id, validator_public_key, nonce)), 32 random
   nonce bytes, and check the peer's: same version and chain, key equal to the certificate's;
3. send AUTH = their validator-key signature (the chain's suite) over
   encode(AuthSignBytes(chain_id, own nonce, peer nonce, SHA-256 of own certificate DER,
   SHA-256 of the peer's certificate DER)) and verify the peer's.

Any failed check raises ``HandshakeRefused`` with a short reason code; the transport logs it,
counts it and aborts the connection. docs/p2p.md gives the bytes of HELLO and AUTH.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass

import msgspec

from zhongshu.codec import DecodeError, decode, encode
from zhongshu.crypto import PrivateKey, Suite
from zhongshu.p2p.frames import AUTH, HELLO, read_frame, write_frame
from zhongshu.p2p.pki import PKIError, cert_sha256, validator_key_of

PROTOCOL_VERSION = 1
NONCE_SIZE = 32
HANDSHAKE_MAX_FRAME = 4096
"""Largest frame accepted before a peer is authenticated (HELLO and AUTH are a few hundred bytes)."""


class Hello(msgspec.Struct, array_like=True, frozen=True, tag="p2p-hello"):
    """The first handshake frame each side sends after TLS."""

    version: int
    """PROTOCOL_VERSION; a peer with another version is refused."""
    chain_id: str
    """The chain this connection serves; one transport serves one chain."""
    validator: bytes
    """The sender's validator public key; must equal the key its certificate names."""
    nonce: bytes
    """NONCE_SIZE fresh random bytes, which the peer's AUTH signature must cover."""


class AuthSignBytes(msgspec.Struct, array_like=True, frozen=True, tag="p2p-auth"):
    """What a side signs with its validator key in AUTH; its encoding is the signed message."""

    chain_id: str
    signer_nonce: bytes
    """The signer's own HELLO nonce."""
    peer_nonce: bytes
    """The nonce the signer received in the peer's HELLO."""
    signer_cert_sha256: bytes
    """SHA-256 of the DER certificate the signer presented in TLS."""
    peer_cert_sha256: bytes
    """SHA-256 of the DER certificate the signer received from the peer in TLS."""


def auth_sign_bytes(
    chain_id: str, signer_nonce: bytes, peer_nonce: bytes, signer_cert_sha256: bytes, peer_cert_sha256: bytes
) -> bytes:
    """The exact bytes a side signs in AUTH (see docs/p2p.md for the layout)."""
    return encode(AuthSignBytes(chain_id, signer_nonce, peer_nonce, signer_cert_sha256, peer_cert_sha256))


class HandshakeRefused(Exception):
    """A peer that failed a check of the handshake; ``reason`` is the short code counted in metrics."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Credentials:
    """What this node brings to every handshake, fixed when the transport is built."""

    chain_id: str
    """The chain this node serves; a peer on another chain is refused."""
    suite: Suite
    """The chain's crypto suite: AUTH signatures are made and verified with it."""
    validator_key: PrivateKey
    """This node's validator key, which signs its AUTH."""
    public_key: bytes
    """The public half of ``validator_key``; a peer presenting it is refused (``own key``)."""
    cert_sha256: bytes
    """SHA-256 of the DER certificate this node presents in TLS."""
    allowed: frozenset[bytes]
    """Validator keys that may connect: the chain's validators other than this node."""


@dataclass(frozen=True)
class AuthenticatedPeer:
    """A peer that passed the handshake."""

    validator: bytes
    """Its validator public key, named by its certificate and proven by its AUTH signature."""
    cert_sha256: bytes
    """SHA-256 of the DER certificate it presented in TLS."""


def short_key(key: bytes) -> str:
    """A key's first 8 bytes in hex, for log lines and refusal details."""
    return key.hex()[:16] + "…"


async def run_handshake(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    own: Credentials,
    *,
    expected: bytes | None,
) -> AuthenticatedPeer:
    """Run the validator handshake on a TLS stream; HandshakeRefused names the failed check.

    ``expected``: when dialling, the validator key configured for the dialled address; None when
    accepting. Frame errors and lost connections propagate as they are.
    """
    ssl_object = writer.get_extra_info("ssl_object")
    peer_der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    # TLS must have produced a verified peer certificate.
    if not peer_der:
        raise HandshakeRefused("tls", "no peer certificate")
    try:
        peer_key = validator_key_of(peer_der)
    except PKIError as exc:
        raise HandshakeRefused("certificate", str(exc)) from None
    # A node never connects to itself.
    if peer_key == own.public_key:
        raise HandshakeRefused("own key", "the peer's certificate names this node's own validator key")
    # Only validators of this chain may connect.
    if peer_key not in own.allowed:
        raise HandshakeRefused("unknown validator", f"{short_key(peer_key)} is not in the validator set")
    # A dialled address must be served by the validator configured for it.
    if expected is not None and peer_key != expected:
        raise HandshakeRefused(
            "unexpected validator", f"expected {short_key(expected)}, got {short_key(peer_key)}"
        )
    peer_fp = cert_sha256(peer_der)
    nonce = secrets.token_bytes(NONCE_SIZE)
    hello = Hello(PROTOCOL_VERSION, own.chain_id, own.public_key, nonce)
    await write_frame(writer, HELLO, encode(hello), HANDSHAKE_MAX_FRAME)
    frame = await read_frame(reader, HANDSHAKE_MAX_FRAME)
    # The first frame must be a HELLO.
    if frame.kind != HELLO:
        raise HandshakeRefused("protocol", f"expected HELLO, got frame kind {frame.kind}")
    try:
        peer_hello = decode(frame.body, Hello)
    except DecodeError as exc:
        raise HandshakeRefused("protocol", f"malformed HELLO: {exc}") from None
    # Same protocol version.
    if peer_hello.version != PROTOCOL_VERSION:
        raise HandshakeRefused(
            "protocol", f"protocol version {peer_hello.version}, expected {PROTOCOL_VERSION}"
        )
    # Same chain.
    if peer_hello.chain_id != own.chain_id:
        raise HandshakeRefused(
            "wrong chain", f"peer serves chain {peer_hello.chain_id!r}, not {own.chain_id!r}"
        )
    # The claimed validator key is the one the certificate names.
    if peer_hello.validator != peer_key:
        raise HandshakeRefused("key mismatch", "HELLO names another validator key than the certificate")
    # A fresh nonce of the right size, not a reflection of ours.
    if len(peer_hello.nonce) != NONCE_SIZE or peer_hello.nonce == nonce:
        raise HandshakeRefused("protocol", "bad nonce")
    own_signed = auth_sign_bytes(own.chain_id, nonce, peer_hello.nonce, own.cert_sha256, peer_fp)
    await write_frame(writer, AUTH, own.validator_key.sign(own_signed), HANDSHAKE_MAX_FRAME)
    frame = await read_frame(reader, HANDSHAKE_MAX_FRAME)
    # The second frame must be an AUTH.
    if frame.kind != AUTH:
        raise HandshakeRefused("protocol", f"expected AUTH, got frame kind {frame.kind}")
    peer_signed = auth_sign_bytes(own.chain_id, peer_hello.nonce, nonce, peer_fp, own.cert_sha256)
    # The peer holds the validator key its certificate names.
    if not own.suite.verify(peer_key, peer_signed, frame.body):
        raise HandshakeRefused("bad signature", "AUTH is not a signature by the certificate's validator key")
    return AuthenticatedPeer(peer_key, peer_fp)
