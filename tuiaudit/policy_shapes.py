"""Value shapes of the hardened telemetry policy (DESIGN §3.1).

The shapes themselves (the regular expressions) are rows of the policy table
(``tuiaudit.policy.POLICY.shapes``); this module holds the few operations a
regular expression cannot express: NFKC normalisation, rounding a float,
the domain of an RFC 5322 mailbox, a URI reduced to its origin and a user
agent reduced to browser and OS family. All are pure and cheap, or cached.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from email.utils import parseaddr
from urllib.parse import urlsplit

from ua_parser import parse_os, parse_user_agent

_NFKC = functools.partial(unicodedata.normalize, "NFKC")


def nfkc(text: str) -> str:
    """``text`` in NFKC form (a full-width ``＠`` becomes ``@``); ASCII is already NFKC."""
    return text if text.isascii() else _NFKC(text)


def round_significant(value: float, digits: int) -> float:
    """``value`` rounded to ``digits`` significant digits (52.520008 -> 52.52)."""
    if value == 0.0 or not math.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


# A host name of dot-separated labels whose last label starts with a letter
# (so an IPv4 address is not a host name), 253 characters at most.
_HOST = re.compile(
    r"(?=.{1,253}\Z)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?"
)


def mailbox_domain(value: str) -> str | None:
    """The lower-cased domain of an RFC 5322 mailbox, or None.

    ``Ana <ana@x.example>`` -> ``x.example``. The address is parsed by
    ``email.utils.parseaddr`` (strict), the domain is what follows its last
    ``@``, and only a valid host name with a dot is returned (IDN labels in
    their ASCII form).
    """
    text = nfkc(value).strip()
    if text[:7].lower() == "mailto:":
        text = text[7:].strip()
    _name, address = parseaddr(text)
    at = address.rfind("@")
    if at < 0:
        return None
    domain = address[at + 1 :].strip().rstrip(".").lower()
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    return domain if _HOST.fullmatch(domain) else None


def uri_origin(value: str) -> str | None:
    """``scheme://host[:port]`` of a URI: no user info, path, query or fragment; None if none."""
    try:
        parts = urlsplit(nfkc(value).strip())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    scheme = parts.scheme.lower()
    if not scheme or not host:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


@functools.lru_cache(maxsize=4096)
def user_agent_family(value: str) -> str | None:
    """``Firefox 133 / Linux``: browser family and major version, OS family; None if unknown.

    Cached: a day brings a few thousand distinct user agents, and the first
    parse of one costs about a millisecond.
    """
    ua = parse_user_agent(value)
    if ua is None or not ua.family or ua.family == "Other":
        return None
    browser = f"{ua.family} {ua.major}" if ua.major and ua.major.isdigit() else ua.family
    os_ = parse_os(value)
    if os_ is None or not os_.family or os_.family == "Other":
        return browser
    return f"{browser} / {os_.family}"
