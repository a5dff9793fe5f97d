"""The ``zhongshu`` entry: run one command, report any failure in one line, never a traceback.

This module imports nothing heavy: ``zhongshu verify`` runs from zhongshu.cli.verify alone
(argparse and the verifier: no Typer, gateway, HTTP client or Rich); every other command, and
``verify --help``, runs from the whole tree in zhongshu.cli.app. Wherever it happens, Ctrl-C
prints ``interrupted`` and exits 130; a usage mistake prints ``error: ...`` and exits 2; an
unexpected exception prints ``error: internal error ...`` and exits 1 (set ZHONGSHU_TRACEBACK=1
to see its traceback instead).
"""

from __future__ import annotations

import os
import sys
from typing import Any, NoReturn

from zhongshu.cli.exits import INTERRUPTED, REFUSED, USAGE

TRACEBACK_ENV = "ZHONGSHU_TRACEBACK"
"""Set to 1 to let an unexpected exception end the command with its traceback."""


def _error(message: str) -> None:
    sys.stderr.write(f"error: {' '.join(message.split())}\n")


def run_command(command: Any, args: list[str], prog_name: str) -> int:
    """Run a click command (Typer's) on ``args``; its exit status, usage mistakes in one line."""
    from typer import Abort
    from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

    try:
        result = command.main(args=args, prog_name=prog_name, standalone_mode=False)
    except NoArgsIsHelpError as exc:
        exc.show()
        return USAGE
    except UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        _error(exc.format_message() + hint)
        return USAGE
    except ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except Abort:
        # Standard input closed while a command asked for input.
        _error("aborted: end of input")
        return REFUSED
    # Typer turns Ctrl-C inside a command into exit status 130, silently: say so here.
    if result == INTERRUPTED:
        sys.stderr.write("interrupted\n")
    return result if isinstance(result, int) else 0


def main(argv: list[str] | None = None) -> int:
    """Run ``zhongshu ARGV`` (default: the process's arguments); return the exit status."""
    args = sys.argv[1:] if argv is None else argv
    try:
        if args[:1] == ["verify"] and "--help" not in args:
            from zhongshu.cli.verify import run

            return run(args[1:])
        import typer

        from zhongshu.cli.app import app as tree

        return run_command(typer.main.get_command(tree), args, "zhongshu")
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return INTERRUPTED
    except Exception as exc:
        if os.environ.get(TRACEBACK_ENV) == "1":
            raise
        _error(f"internal error ({type(exc).__name__}): {exc}; set {TRACEBACK_ENV}=1 to see where")
        return REFUSED


def app() -> NoReturn:
    """The console script (pyproject: ``zhongshu = "zhongshu.cli.main:app"``)."""
    sys.exit(main())
