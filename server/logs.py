"""Server logging: ``--log-level`` / ``--log-format`` (or their environment variables), text or JSON lines.

Structured fields travel on a record as ``extra={"fields": {...}}``. The JSON format writes one object
per line — ``ts``, ``level``, ``logger``, ``msg``, then the fields (and ``exc`` with a traceback); the
text format appends the fields as ``key=value``. Field values and messages may carry text a client
chose (a ``request_id``), so neither format lets one record span two lines: JSON escapes control
characters by construction, and the text format escapes them as ``\\n``, ``\\x1b``, ``\\u2028``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FORMATS = ("text", "json")
LEVEL_ENV, FORMAT_ENV = "ONNXPLAIN_LOG_LEVEL", "ONNXPLAIN_LOG_FORMAT"
MAX_CLIENT_TEXT = 200  # characters of a client-chosen value kept in a log line

# C0 and C1 controls, DEL, and the Unicode line/paragraph separators: anything a terminal or a log
# shipper may take as the end of a line or an escape sequence
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def client_text(value: str, limit: int = MAX_CLIENT_TEXT) -> str:
    """A client-supplied string cut to ``limit`` characters (a megabyte request_id stays out of the logs)."""
    return value if len(value) <= limit else value[:limit] + "…"


def fields_of(record: logging.LogRecord) -> Mapping[str, Any]:
    return getattr(record, "fields", None) or {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``msg``, the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            line.setdefault(key, value)  # a field never overwrites the four above
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``<time> LEVEL logger: message key=value …``; control characters escaped, spaced values quoted.

    A traceback (``exc_info``) follows on its own lines, as usual: it is the server's own text.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        escaped = logging.makeLogRecord(record.__dict__)  # other handlers keep the record as it was
        escaped.message = escape_controls(record.message)
        line = super().formatMessage(escaped)
        pairs = [f"{key}={_text_value(value)}" for key, value in fields_of(record).items()]
        return " ".join([line, *pairs])


def _text_value(value: Any) -> str:
    """``value`` as is, or JSON-quoted when empty or holding spaces, quotes, ``=`` or control characters."""
    text = str(value)
    if text and not _NEEDS_QUOTES.search(text) and not _CONTROL.search(text):
        return text
    return escape_controls(json.dumps(text, ensure_ascii=False))  # JSON escapes C0; the rest here


def _choice(name: str, allowed: tuple[str, ...], env: str, normalise) -> Any:
    def parse(value: str) -> str:
        chosen = normalise(value.strip())
        if chosen not in allowed:
            raise argparse.ArgumentTypeError(
                f"{value!r} (from {name} or ${env}) is not one of: {', '.join(allowed)}")
        return chosen

    parse.__name__ = name  # argparse names the type in its messages
    return parse


def add_log_flags(parser: argparse.ArgumentParser, environ: Mapping[str, str] = os.environ) -> None:
    """``--log-level`` and ``--log-format``; their defaults come from ``$ONNXPLAIN_LOG_LEVEL`` and
    ``$ONNXPLAIN_LOG_FORMAT`` when set, so a flag given on the command line wins over the environment.

    An invalid value — flag or environment — is a usage error naming both.
    """
    parser.add_argument(
        "--log-level", type=_choice("--log-level", LEVELS, LEVEL_ENV, str.upper),
        default=environ.get(LEVEL_ENV) or "INFO",
        help=f"{', '.join(LEVELS)} (default INFO, or ${LEVEL_ENV})")
    parser.add_argument(
        "--log-format", type=_choice("--log-format", FORMATS, FORMAT_ENV, str.lower),
        default=environ.get(FORMAT_ENV) or "text",
        help=f"text, or json: one object per line (default text, or ${FORMAT_ENV})")


def configure_logging(level: str = "INFO", log_format: str = "text", stream=None) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr) in ``log_format``.

    Replaces the root logger's handlers, so calling it twice does not double the lines. Returns the
    handler (tests attach it to a buffer).
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
