"""Stored or remote text made safe to show: control characters escaped, URL secrets redacted.

Everything tuiaudit prints, logs or lists that came from a client, the store
or a remote server goes through here (DESIGN §8.2): an event named
``"\\x1b[2J"`` must not clear the operator's terminal, and a webhook URL of
``https://user:pass@host/?api_key=…`` must not put its secrets on a screen.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

# C0 controls, DEL and the C1 controls: what a name, type or key may never hold.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")

# What a terminal must never receive raw: the controls above, plus the Unicode
# line/paragraph separators and the bidirectional overrides ("Trojan Source"),
# which reorder what the reader sees.
_INVISIBLE = [0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(code: int) -> str:
    short = _SHORT.get(chr(code))
    if short is not None:
        return short
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


_TABLE = {c: _escape(c) for c in [*range(0x20), *range(0x7F, 0xA0), *_INVISIBLE]}


# In JSON text, the characters JSON itself does not escape but a terminal may
# act on (DEL, C1, separators, bidi overrides): as \uXXXX the JSON is the same.
_JSON_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def json_safe(json_text: str) -> str:
    """JSON text (e.g. orjson's output) with every terminal-active character as ``\\uXXXX``.

    orjson escapes C0 controls already; the result decodes to the same value.
    """
    if _JSON_UNSAFE.search(json_text) is None:
        return json_text
    return _JSON_UNSAFE.sub(_json_escape, json_text)


def has_control(text: str) -> bool:
    """True when ``text`` holds a C0/C1 control character or DEL."""
    # isprintable() is one C loop and true for nearly every real name; only
    # the rare non-printable text (e.g. a no-break space) needs the regex.
    return not text.isprintable() and CONTROL_CHARS.search(text) is not None


def escape_controls(text: object) -> str:
    """``text`` as one terminal-safe line: controls become ``\\n``, ``\\x1b``, ``\\u202e``."""
    s = text if isinstance(text, str) else str(text)
    if s.isprintable():
        return s
    return s.translate(_TABLE)


def redact_url(url: str) -> str:
    """``url`` with its user info and query values hidden (``***``), fit to display.

    ``https://user:pw@host/hook?api_key=k&x=1`` →
    ``https://***@host/hook?api_key=***&x=***``; the fragment is dropped.
    Text that does not parse as a URL is returned with the same treatment
    applied to anything that looks like user info.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return re.sub(r"//[^/@]*@", "//***@", url.split("?", 1)[0])
    netloc = parts.netloc
    if "@" in netloc:
        shown_host = f"[{host}]" if host and ":" in host else (host or "")
        netloc = "***@" + shown_host + (f":{port}" if port is not None else "")
    query = parts.query
    if query:
        keys = [k for k, _ in parse_qsl(query, keep_blank_values=True)]
        query = "&".join(f"{quote(k, safe='')}=***" for k in keys) if keys else "***"
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_text(text: str, url: str) -> str:
    """A message (an exception's text) fit to store and show: ``url`` in it redacted."""
    if url and url in text:
        text = text.replace(url, redact_url(url))
    return escape_controls(text)


# A spreadsheet runs a cell that starts with one of these as a formula
# (OWASP "CSV injection"); a leading ' makes it text. A cell that starts with
# ' is prefixed too, so unescaping is exact: drop one leading '.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(value: str) -> str:
    """``value`` for a CSV cell a spreadsheet will not evaluate."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def csv_uncell(value: str) -> str:
    """The value ``csv_cell`` was given (``tuiaudit import`` reads exports back)."""
    return value[1:] if value.startswith("'") else value


def safe_url(url: str) -> str:
    """A URL fit for a terminal, a log line or a screen: redacted, then escaped."""
    return escape_controls(redact_url(url))


__all__ = [
    "CONTROL_CHARS",
    "csv_cell",
    "csv_uncell",
    "escape_controls",
    "has_control",
    "json_safe",
    "redact_text",
    "redact_url",
    "safe_url",
]
