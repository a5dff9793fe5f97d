"""The exit status of every ``zhongshu`` command, and the errors that carry one.

Commands that talk to a gateway (``status``, ``tx get``, ``block get``, ``proof get``,
``evidence ...``) and the key commands:

- 0: done;
- 1: the node refused or answered an error (unknown hash, a failed deposit, another suite);
- 2: bad arguments, or a file that cannot be read or written;
- 3: the node cannot be reached;
- 4: the transaction was accepted but not seen committed within the wait (it may still commit).

``verify`` keeps its own: 0 valid, 1 invalid, 2 a file cannot be read (docs/proof-format.md).
The commands that run or prepare nodes (``up``, ``node start``, ``network init``, ``backup``,
``restore``, ``bench``) exit 1 on any failure. Every command exits 130 on Ctrl-C. This module
imports nothing, so the entry can use it before it loads any command.
"""

from __future__ import annotations

OK = 0
REFUSED = 1
"""The node refused, or a node-running command failed."""
USAGE = 2
"""Bad arguments, or a file that cannot be read or written."""
UNREACHABLE = 3
"""No answer from the gateway."""
NOT_COMMITTED = 4
"""Accepted, not seen committed within the wait."""
INTERRUPTED = 130
"""Ctrl-C (128 + SIGINT), as shells report it."""

CLIENT_EXITS = (
    "Exit status: 0 done, 1 refused by the node, 2 bad arguments or file, "
    "3 node unreachable, 130 interrupted."
)
"""The line every gateway command's help ends with."""
PUT_EXITS = CLIENT_EXITS.replace("130 interrupted", "4 not committed within --timeout, 130 interrupted")
"""The line ``evidence put``'s help ends with."""


class CliError(Exception):
    """A failure to report in one line (``error: ...``) with exit status ``exit_code``."""

    exit_code = REFUSED


class UsageProblem(CliError):
    """A bad argument or an unreadable file: the user can fix the command line."""

    exit_code = USAGE


class Refused(CliError):
    """The node answered, and the answer is no."""

    exit_code = REFUSED


class NotCommitted(CliError):
    """The node accepted the transaction but it was not seen committed in time."""

    exit_code = NOT_COMMITTED
