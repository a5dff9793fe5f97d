"""An application's credentials on the hub, and the signature they put on each request.

An application registered on the hub (``zhongshu app register``) gets an app id and an SM2 key;
with them, ``Client(..., app=...)`` signs every request it sends (docs/access-spec.md, *Signed
requests*). The registration writes a credentials file, a JSON object::

    {"app_id": "app-0123456789abcdef", "key_file": "app_key.pem"}

whose ``key_file`` is the PEM private key, a path relative to the JSON file's directory (or
absolute). ``load_app`` reads it; other members of the object are ignored.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from zhongshu.crypto import PrivateKey, get_suite
from zhongshu.gateway.access import APP_ID_FORM, sign_request
from zhongshu.sdk.errors import FileError
from zhongshu.sdk.files import StrPath, load_key

REGISTERED_APP_ID = re.compile(r"app-[0-9a-f]{16}")
"""The app ids the hub gives: ``app-`` and 16 lowercase hex digits."""


def wall_clock_ms() -> int:
    """The time a request is signed at: milliseconds since the Unix epoch (UTC)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class AppCredentials:
    """What an application signs its requests with."""

    app_id: str
    """The app id the hub registered, sent as ``X-Zhongshu-App``."""
    key: PrivateKey
    """The app's current SM2 private key (the public key the hub holds for the app)."""

    def __post_init__(self) -> None:
        # The id can go in the X-Zhongshu-App header.
        if not APP_ID_FORM.fullmatch(self.app_id):
            raise ValueError(f"{self.app_id!r} is not an app id (1 to 64 of A-Z a-z 0-9 . _ -)")
        # Applications sign with SM2, whatever a chain's suite.
        if len(self.key.public_bytes()) != get_suite("sm").public_key_size:
            raise ValueError("an application key is an SM2 key; this one is not")

    def sign(
        self,
        method: str,
        host: str,
        path: str,
        query_pairs: Sequence[tuple[str, str]],
        body: bytes,
        *,
        nonce: str,
        now_ms: int,
    ) -> dict[str, str]:
        """The four authentication headers of a request (``access.sign_request``)."""
        return sign_request(self.key, method, host, path, query_pairs, now_ms, nonce, self.app_id, body)


def load_app(path: StrPath) -> AppCredentials:
    """The credentials in an app credentials file (module docstring); FileError if it cannot be
    read or does not hold an app id and a readable SM2 key file."""
    where = Path(path)
    try:
        document = json.loads(where.read_bytes())
    except OSError as exc:
        raise FileError(str(path), f"cannot read the app credentials: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise FileError(str(path), f"the app credentials are not JSON: {exc}") from None
    # A JSON object with the app id and the key file.
    if not isinstance(document, dict):
        raise FileError(str(path), 'app credentials are a JSON object {"app_id": ..., "key_file": ...}')
    app_id, key_file = document.get("app_id"), document.get("key_file")
    # The app id is one the hub gives.
    if not isinstance(app_id, str) or not REGISTERED_APP_ID.fullmatch(app_id):
        raise FileError(str(path), f'"app_id" must be "app-" and 16 lowercase hex digits, not {app_id!r}')
    # The key file is a path.
    if not isinstance(key_file, str) or not key_file:
        raise FileError(str(path), f'"key_file" must be the path of the app\'s PEM key, not {key_file!r}')
    key = load_key(where.parent / key_file)
    try:
        return AppCredentials(app_id, key)
    except ValueError as exc:
        raise FileError(str(where.parent / key_file), str(exc)) from None
