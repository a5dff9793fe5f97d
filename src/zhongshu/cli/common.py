"""What the commands share: the consoles, one-line errors with an exit status, options, times."""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console

from zhongshu.cli.exits import NOT_COMMITTED, REFUSED, UNREACHABLE, USAGE, CliError

DEFAULT_API = "http://127.0.0.1:7700"
"""The gateway of ``zhongshu up`` on this machine (``zhongshu.sdk.DEFAULT_URL``, without
importing the SDK for ``--help``)."""

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def print_error(message: str) -> None:
    """``error: MESSAGE`` as one line on stderr, whatever newlines the message holds."""
    sys.stderr.write(f"error: {' '.join(message.split())}\n")
    sys.stderr.flush()


def exit_status_of(exc: BaseException) -> int | None:
    """The exit status of an expected failure (zhongshu.cli.exits); None for a bug."""
    import httpx

    from zhongshu.crypto import CryptoError
    from zhongshu.ledger.genesis import GenesisError
    from zhongshu.node.home import HomeError
    from zhongshu.sdk.errors import ApiError, CommitTimeout, ConnectionFailed, FileError, UnexpectedResponse
    from zhongshu.store import StoreDamaged

    if isinstance(exc, CliError):
        return exc.exit_code
    if isinstance(exc, ConnectionFailed | httpx.HTTPError):
        return UNREACHABLE
    if isinstance(exc, CommitTimeout):
        return NOT_COMMITTED
    if isinstance(exc, ApiError | UnexpectedResponse):
        return REFUSED
    if isinstance(exc, FileError):
        return USAGE
    if isinstance(exc, HomeError | GenesisError | CryptoError | StoreDamaged | OSError | ValueError):
        return REFUSED
    return None


def error_message(exc: BaseException) -> str:
    import httpx

    if isinstance(exc, httpx.HTTPError):
        return f"cannot reach the gateway: {exc}"
    return str(exc) or type(exc).__name__


def friendly(fn: F) -> F:
    """Report an expected failure as one ``error:`` line and exit with its status; let Ctrl-C
    and the command's own exits through (the entry reports Ctrl-C)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except Exception as exc:
            status = exit_status_of(exc)
            if status is None:
                raise
            print_error(error_message(exc))
            raise typer.Exit(status) from None

    return wrapper  # type: ignore[return-value]


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_time(ms: int | None) -> str:
    """A block time (milliseconds since the epoch) as UTC, or ``-`` when there is none."""
    if ms is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
    except (OverflowError, OSError, ValueError):
        return f"{ms} ms (beyond the calendar)"


def api_option() -> Any:
    return typer.Option(DEFAULT_API, "--api", help="Gateway URL.")


def chain_option() -> Any:
    return typer.Option("main", "--chain", help="Chain id.")


def json_option() -> Any:
    return typer.Option(False, "--json", help="Print JSON (for programs) instead of text.")


def print_json(value: Any) -> None:
    """``value`` (msgspec Structs and plain values) as indented JSON on stdout."""
    import msgspec

    text = msgspec.json.format(msgspec.json.encode(value), indent=2).decode()
    sys.stdout.write(text + "\n")
    sys.stdout.flush()
