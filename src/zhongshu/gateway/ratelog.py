"""A logging filter that lets one line per kind of message through per interval.

Hostile clients can cause the same condition thousands of times a second (slow requests, broken
framing, aborted uploads). Each kind (logger and message template) is logged the first time and
then at most once per ``interval`` seconds, with the number of occurrences left out since its last
line; a traceback is kept only on the line that is written. Time comes from the record itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

LOG_INTERVAL = 10.0
"""Seconds between two lines of the same kind."""
MAX_KINDS = 256
"""Kinds remembered at once."""


@dataclass
class _Kind:
    last_written: float
    """``record.created`` of the last line written for this kind."""
    left_out: int = 0
    """Occurrences not written since that line."""


class RateLimitFilter(logging.Filter):
    """Writes a record if no record of its kind was written in the last ``interval`` seconds."""

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        super().__init__()
        self.interval = interval
        self.kinds: dict[tuple[str, str], _Kind] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        kind = self.kinds.get(key)
        if kind is None:
            # Messages are templates, so kinds are few; a message built from input starts afresh.
            if len(self.kinds) >= MAX_KINDS:
                self.kinds.clear()
            self.kinds[key] = _Kind(record.created)
            return True
        # Within the interval of the last line of this kind: count it, write nothing. (A clock
        # set back ends the interval rather than stretching it.)
        if 0 <= record.created - kind.last_written < self.interval:
            kind.left_out += 1
            return False
        if kind.left_out:
            record.msg = f"{record.getMessage()} ({kind.left_out} more since the last such line)"
            record.args = ()
        kind.last_written = record.created
        kind.left_out = 0
        return True


def install_rate_limit(names: list[str], interval: float = LOG_INTERVAL) -> RateLimitFilter:
    """Attach one rate-limit filter to each named logger; ``remove_rate_limit`` takes it off."""
    limiter = RateLimitFilter(interval)
    for name in names:
        logging.getLogger(name).addFilter(limiter)
    return limiter


def remove_rate_limit(names: list[str], limiter: RateLimitFilter) -> None:
    for name in names:
        logging.getLogger(name).removeFilter(limiter)
