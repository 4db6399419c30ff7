"""Keys never reach a file, a log or a message: the one place every error text passes through before it is stored
or printed.

``redact`` removes every key this process has read from the environment (``register``) and anything shaped like a
credential (``Bearer <token>``, ``sk-...``), whoever put it there: a server that echoes the request's
``Authorization`` header in its error body, an exception that quotes a URL with a key, a user who typed a key where
a variable name belongs. ``RedactingFilter`` applies it to log records.
"""

from __future__ import annotations

import logging
import re

MASK = "[REDACTED]"
# a bearer token or an OpenAI-style key; long enough (and, for Bearer, holding a digit) that words such as
# "bearer bonds" are left alone
_SHAPES = re.compile(
    r"(?i:\bbearer)\s+(?=[A-Za-z0-9._~+/=-]*\d)[A-Za-z0-9._~+/=-]{12,}"
    r"|\bsk-[A-Za-z0-9_-]{12,}"
)
_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_known: set[str] = set()


def register(secret: str | None) -> None:
    """Remember a key read from the environment, so that it is masked wherever it turns up."""
    if secret and len(secret) >= 4:
        _known.add(secret)


def redact(text: str) -> str:
    """``text`` with every registered key and every credential-shaped token replaced by [REDACTED]."""
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _SHAPES.sub(lambda m: "Bearer " + MASK if m.group(0)[:1] in "bB" else MASK, text)


def is_variable_name(value: str) -> bool:
    """An environment variable's name (what --api-key-env takes), as opposed to a key pasted in its place."""
    return bool(_VARIABLE_NAME.fullmatch(value))


def looks_like_a_key(value: str) -> bool:
    """A value that is a credential rather than a variable name: not a name at all, a key shape, or a long
    lowercase token with digits (variable names are conventionally upper case)."""
    random_looking = len(value) >= 20 and any(c.isdigit() for c in value) and any(c.islower() for c in value)
    return not is_variable_name(value) or bool(_SHAPES.search(value)) or random_looking


class RedactingFilter(logging.Filter):
    """Masks keys in every record that passes (message and arguments rendered first)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
