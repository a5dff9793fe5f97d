"""The network's PKI: one CA per network, one TLS certificate per node, bound to its validator key.

Every network (``zhongshu network init``) gets its own certificate authority. Each node holds a
TLS key and a certificate signed by that CA; the certificate names the node's *validator* public
key in a subjectAltName URI ``zhongshu:validator:<lowercase hex>``. A SAN URI was chosen over a
private extension because every X.509 tool shows it (``openssl x509 -text``) and no OID has to be
registered. At connection time each side also proves possession of the validator key itself
(see ``zhongshu.p2p.handshake``), so a stolen TLS key alone does not make a validator.

TLS keys and the CA are ECDSA P-256 with SHA-256. SM2 TLS (TLCP, GB/T 38636) is not available:
Python's ``ssl`` module is built on the system OpenSSL, which has no TLCP, and Tongsuo (which has
it) offers no ``ssl``-compatible socket layer to Python. The national-crypto guarantee therefore
rests on the SM2 validator signatures (consensus messages and the p2p handshake), not on the
transport cipher; docs/p2p.md says so.

The certificate also names the node's address (``hosts``: an IP SAN or a DNS SAN) beside its
node name. Those names are for people and tools (``openssl x509 -text``, a monitoring probe);
the handshakes never check them.

Contexts: TLS 1.3 only, a client certificate is required both ways, the only trust anchor is the
network CA, and host names are not checked (peers are identified by validator key, not by name:
the address a node is dialled at can change, behind NAT or DNS, without a new certificate from
the CA, whose key stays off the nodes).
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDATOR_URI_PREFIX = "zhongshu:validator:"
"""The subjectAltName URI prefix that carries a node's validator public key (lowercase hex)."""

CLOCK_SKEW = datetime.timedelta(days=1)
"""How far before its issue time a certificate is already valid (tolerated clock difference)."""
CA_VALID_DAYS = 7300
NODE_VALID_DAYS = 3650


class PKIError(ValueError):
    """A certificate or key that does not fit the network's PKI (wrong form, no validator key)."""


@dataclass(frozen=True)
class NetworkCA:
    """The network CA's certificate and private key, loaded."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def from_pem(cls, cert_pem: bytes, key_pem: bytes) -> NetworkCA:
        """Load a CA from the PEM pair ``create_network_ca`` returns."""
        return cls(load_certificate(cert_pem), load_tls_key(key_pem))

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class TLSFiles:
    """The three TLS files of a node home: the network CA, the node's certificate and its key."""

    ca_cert: Path
    cert: Path
    key: Path


def _now(now_ms: int | None) -> datetime.datetime:
    if now_ms is None:
        return datetime.datetime.now(datetime.UTC)
    return datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_tls_key() -> bytes:
    """A fresh ECDSA P-256 TLS private key, PKCS#8 PEM, unencrypted."""
    return _pem_key(ec.generate_private_key(ec.SECP256R1()))


def load_tls_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load a P-256 private key; raise PKIError for anything else."""
    try:
        key = serialization.load_pem_private_key(pem, None)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"not a PEM private key: {exc}") from None
    # The network PKI uses P-256 only.
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise PKIError("the TLS key is not an ECDSA P-256 key")
    return key


def load_certificate(pem_or_der: bytes) -> x509.Certificate:
    """Load the first certificate of a PEM file, or a DER certificate; raise PKIError otherwise."""
    try:
        if pem_or_der.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(pem_or_der)
        return x509.load_der_x509_certificate(pem_or_der)
    except ValueError as exc:
        raise PKIError(f"not an X.509 certificate: {exc}") from None


def create_network_ca(name: str, *, now_ms: int | None = None) -> tuple[bytes, bytes]:
    """A new self-signed network CA named ``name``: (certificate PEM, private key PEM).

    The CA may sign only end-entity certificates (path length 0) and is valid for 20 years from
    ``now_ms`` (the wall clock when None), backdated by CLOCK_SKEW.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zhongshu network"),
            x509.NameAttribute(NameOID.COMMON_NAME, name),
        ]
    )
    now = _now(now_ms)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue_node_cert(
    ca: NetworkCA,
    node_name: str,
    validator_public_key: bytes,
    tls_key: bytes,
    *,
    now_ms: int | None = None,
    hosts: Sequence[str] = (),
) -> bytes:
    """A node certificate (PEM) for the TLS key ``tls_key`` (PEM), signed by ``ca``.

    It names ``node_name`` (CN and a DNS SAN) and each of ``hosts`` (an IP SAN for an IP address,
    a DNS SAN for a name), all informational only, and carries the validator key as the SAN URI
    ``zhongshu:validator:<hex>``; it is usable for both TLS server and client authentication and
    valid for 10 years from ``now_ms``, backdated by CLOCK_SKEW.
    """
    # A node certificate binds exactly one, non-empty validator key.
    if not validator_public_key:
        raise PKIError("a node certificate needs a validator public key")
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(VALIDATOR_URI_PREFIX + validator_public_key.hex()),
        x509.DNSName(node_name),
    ]
    for host in hosts:
        name = _host_name(host)
        # Each name once (a host may equal the node name).
        if name not in names:
            names.append(name)
    public = load_tls_key(tls_key).public_key()
    now = _now(now_ms)
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Zhongshu network"),
                    x509.NameAttribute(NameOID.COMMON_NAME, node_name),
                ]
            )
        )
        .issuer_name(ca.cert.subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=NODE_VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName(names),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _host_name(host: str) -> x509.GeneralName:
    """The SAN for a host: an IP address as an IP SAN, anything else as a DNS SAN."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def host_names_of(cert: x509.Certificate | bytes) -> list[str]:
    """The IP and DNS subjectAltNames of a node certificate, in order (node name first)."""
    if isinstance(cert, bytes):
        cert = load_certificate(cert)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in san if isinstance(n, (x509.DNSName, x509.IPAddress))]


def validator_key_of(cert: x509.Certificate | bytes) -> bytes:
    """The validator public key a node certificate (object, PEM or DER) names.

    Rule: the certificate has exactly one SAN URI starting with ``zhongshu:validator:``, followed
    by non-empty lowercase hex. Anything else raises PKIError.
    """
    if isinstance(cert, bytes):
        cert = load_certificate(cert)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise PKIError("the certificate has no subjectAltName, so no validator key") from None
    uris = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(VALIDATOR_URI_PREFIX)
    ]
    # Exactly one validator key per certificate.
    if len(uris) != 1:
        raise PKIError(f"the certificate names {len(uris)} validator keys; exactly one is required")
    text = uris[0][len(VALIDATOR_URI_PREFIX) :]
    # Canonical form: non-empty lowercase hex.
    if not text or text != text.lower():
        raise PKIError("the validator key in the certificate is not lowercase hex")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise PKIError("the validator key in the certificate is not hex") from None


def cert_sha256(cert_der: bytes) -> bytes:
    """The SHA-256 fingerprint of a DER certificate (what the handshake signs)."""
    return hashlib.sha256(cert_der).digest()


def cert_der(cert_pem: bytes) -> bytes:
    """The DER form of the first certificate in ``cert_pem``."""
    return load_certificate(cert_pem).public_bytes(serialization.Encoding.DER)


def _context(protocol: int, files: TLSFiles) -> ssl.SSLContext:
    ctx = ssl.SSLContext(protocol)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    # Peers are identified by their validator key, never by host name.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    ctx.options |= ssl.OP_NO_TICKET
    # The only trust anchor is the network CA: no system roots.
    ctx.load_verify_locations(cafile=str(files.ca_cert))
    ctx.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    return ctx


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """The listening side's context: TLS 1.3 only, a client certificate from the network CA required.

    The peer's validator key is checked after the TLS handshake, by the transport.
    """
    return _context(ssl.PROTOCOL_TLS_SERVER, files)


def client_context(files: TLSFiles) -> ssl.SSLContext:
    """The dialling side's context: TLS 1.3 only, the server's certificate must come from the network CA."""
    return _context(ssl.PROTOCOL_TLS_CLIENT, files)
