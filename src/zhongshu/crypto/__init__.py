"""Crypto suites. A chain picks one at genesis: ``sm`` (default) or ``intl``."""

from __future__ import annotations

from zhongshu.crypto.suite import (
    CryptoError,
    DecryptionFailed,
    InvalidKey,
    PrivateKey,
    Suite,
)

SUITE_NAMES = ("sm", "intl")


class UnknownSuite(CryptoError):
    """A suite name that is neither ``sm`` nor ``intl``."""


_SUITES: dict[str, Suite] = {}


def get_suite(name: str) -> Suite:
    """The suite called ``name``; raise UnknownSuite for any other name."""
    if name not in _SUITES:
        if name == "sm":
            from zhongshu.crypto.sm import SMSuite

            _SUITES[name] = SMSuite()
        elif name == "intl":
            from zhongshu.crypto.intl import IntlSuite

            _SUITES[name] = IntlSuite()
        else:
            raise UnknownSuite(f"unknown crypto suite {name!r}: choose one of {', '.join(SUITE_NAMES)}")
    return _SUITES[name]


def load_private_key_pem(pem: bytes) -> PrivateKey:
    """Load a PEM key of either suite, telling them apart by the key type."""
    last: Exception | None = None
    for name in SUITE_NAMES:
        try:
            return get_suite(name).load_private_key_pem(pem)
        except InvalidKey as exc:
            last = exc
    raise InvalidKey(f"the file holds no SM2 or Ed25519 private key ({last})")


__all__ = [
    "CryptoError",
    "DecryptionFailed",
    "InvalidKey",
    "PrivateKey",
    "Suite",
    "UnknownSuite",
    "get_suite",
    "load_private_key_pem",
]
