"""The log of a node process: one line per record, with time and level, as text or JSON.

Text: ``2026-12-01T20:13:09.123Z INFO zhongshu.node message``. JSON: one object per line with
``time``, ``level``, ``logger``, ``message`` and the record's ``fields`` (``extra={"fields": ...}``)
beside them, plus ``error`` with the traceback when there is one. Times are UTC with milliseconds.
The zhongshu loggers write INFO and above; other libraries (uvicorn, asyncio) WARNING and above.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")
LOG_FORMAT_ENV = "ZHONGSHU_LOG_FORMAT"
"""Environment variable that picks the format when no ``--log-format`` is given (``up`` sets it
for the node processes it starts)."""


class LogFormatError(ValueError):
    """A log format other than text or json."""


def format_time(created: float) -> str:
    """``created`` (seconds since the epoch) as ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    whole = int(created)
    millis = int((created - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return dict(fields) if isinstance(fields, dict) else {}


class TextFormatter(logging.Formatter):
    """``TIME LEVEL LOGGER message``; a traceback follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{format_time(record.created)} {record.levelname} {record.name} {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the record's fields, error."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": format_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_fields(record).items():
            doc.setdefault(key, value)
        if record.exc_info:
            doc["error"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def resolve_log_format(given: str | None) -> str:
    """The format to use: ``given``, else $ZHONGSHU_LOG_FORMAT, else text; refuses others."""
    fmt = (given or os.environ.get(LOG_FORMAT_ENV) or "text").lower()
    if fmt not in LOG_FORMATS:
        raise LogFormatError(f"--log-format must be text or json, not {fmt!r}")
    return fmt


def configure_logging(fmt: str, stream: TextIO | None = None) -> None:
    """Send every record of this process to ``stream`` (stderr) in ``fmt``, one line each."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("zhongshu").setLevel(logging.INFO)
