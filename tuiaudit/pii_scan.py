"""The last scan of the hardened policy (DESIGN §3.1).

Every string still present in a telemetry copy (the event name and type,
every key, every text value) is scanned for personal data; ``scan`` says
which kind it found, the policy removes the field (or withholds the event
when the hit is in its name) and records the hit under the rule ``pii-<kind>``.

Kinds, in the order they are tried:

* ``email``: a word character, ``@``, a word character (``a@b`` is enough);
* ``url``: a URL with user info, a query or a fragment, or a bare ``?k=v``;
* ``token``: a JWT, or 20+ characters of base64/hex that are not a canonical
  UUID and look random (hex mixing digits and letters; upper case and
  digits; or digits among letters with the character class changing at least
  every third character: ``createFileV2`` is a name, ``aZ3x9Qp...`` is not);
* ``digits``: 9 or more digits in a row (phone, card, account, epoch time);
* ``ip``: an IPv4 or IPv6 address, except in version fields, where
  ``124.0.0.0`` is a browser version;
* ``phone``: a phone number, by libphonenumber (``phonenumbers``): any
  international number, or a national one of 7+ digits without dots (a dotted
  number is a version or a date).

The scan must not remove realistic values: versions (``124.0.6367.91``), OS
names (``Mac OS 10.15.7``), locales (``zh_CN``), UUIDs and route names pass.
Results are memoised: the strings that survive the shapes repeat (names,
keys, versions), so the hot path is a dictionary lookup.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import phonenumbers

from tuiaudit.ids import UUID_PATTERN

SCAN_KINDS = ("email", "url", "token", "digits", "ip", "phone")

# Anything a hit needs at least one of; most names, keys and words have none.
# (tests/test_pii_prefilter.py checks that no text without one is a hit: a JWT
# needs only "eyJ", 5 characters, a dot and 5 more, so "eyJ" is a mark of its own.)
_SUSPECT = re.compile(r"[@:?#=]|\d[\d.]|eyJ|[A-Za-z0-9+/_=-]{20}")
_EMAIL = re.compile(r"[\w.+%-]@[\w-]")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_QUERY = re.compile(r"\?[^\s=&#]*=|#[^\s]*=")
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_RUN = re.compile(r"[A-Za-z0-9+/_=-]{20,}")
_HEX = re.compile(r"[0-9A-Fa-f]+")
_SEPARATORS = re.compile(r"[-_/+=]")
_DIGITS = re.compile(r"\d{9,}")
_IPV4 = re.compile(r"(?<!\d)(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?!\d)")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:%\w+)?(?![\w:])")
_PHONE_DIGITS = 7
_POSSIBLE = phonenumbers.Leniency.POSSIBLE

_cache: dict[tuple[str, bool], str | None] = {}
_CACHE_MAX = 1 << 16


def scan(text: str, *, version: bool = False) -> str | None:
    """The first kind of personal data found in ``text`` (NFKC already applied), or None.

    ``version``: the field holds a version, so a dotted quad is not an IP.
    """
    if _SUSPECT.search(text) is None and (
        len(text) < _PHONE_DIGITS or sum(map(str.isdigit, text)) < _PHONE_DIGITS
    ):
        return None  # no mark any kind needs, and too few digits for a phone number
    key = (text, version)
    try:
        return _cache[key]
    except KeyError:
        pass
    hit = _scan(text, version)
    if len(_cache) >= _CACHE_MAX:
        _cache.clear()
    _cache[key] = hit
    return hit


def _scan(text: str, version: bool) -> str | None:
    if len(text) >= 36:  # a canonical UUID is never personal data, whatever its digits
        text = UUID_PATTERN.sub(" ", text)
    if _EMAIL.search(text):
        return "email"
    if _url_hit(text):
        return "url"
    if _token_hit(text):
        return "token"
    if _DIGITS.search(text):
        return "digits"
    if not version and _ip_hit(text):
        return "ip"
    if sum(c.isdigit() for c in text) >= _PHONE_DIGITS and _phone_hit(text):
        return "phone"
    return None


def _url_hit(text: str) -> bool:
    if _QUERY.search(text):
        return True
    for m in _URL.finditer(text):
        try:
            parts = urlsplit(m.group())
            if parts.username is not None or parts.password is not None:
                return True
        except ValueError:
            return True  # a URL too odd to parse is not shared either
        if parts.query or parts.fragment:
            return True
    return False


def _token_hit(text: str) -> bool:
    if _JWT.search(text):
        return True
    if len(text) < 20:
        return False
    return any(_random_run(m.group()) for m in _RUN.finditer(text))


def _random_run(run: str) -> bool:
    """Does a base64/hex run hold a random-looking stretch of 20+ characters?

    A token may be glued to a name (``create-file-<token>``) and may itself hold
    ``-`` or ``_``: every stretch between separators (or the run's ends) is tried.
    """
    cuts = [0, *(m.end() for m in _SEPARATORS.finditer(run)), len(run) + 1][:24]
    for i, start in enumerate(cuts):
        for end in cuts[i + 1 :]:
            if end - 1 - start >= 20 and _random_looking(run[start : end - 1]):
                return True
    return False


def _random_looking(run: str) -> bool:
    chars = [c for c in run if c.isalnum()]
    n = len(chars)
    if n < 16:
        return False
    digits = sum(c.isdigit() for c in chars)
    if digits and digits < n and _HEX.fullmatch("".join(chars)):
        return True  # 16+ hex digits mixing digits and letters: a hash, a key
    switches = 0
    last = ""
    upper = lower = False
    for c in chars:
        cls = "d" if c.isdigit() else "u" if c.isupper() else "l"
        upper = upper or cls == "u"
        lower = lower or cls == "l"
        if last and cls != last:
            switches += 1
        last = cls
    if digits:
        # Upper case and digits: an access key id (AKIA...); else digits among letters
        # with the class changing at least every third character.
        return (upper and not lower) or switches * 3 >= n
    # Letters only: random mixed case changes case every 2 characters on average,
    # a camelCase name every 4 or more (getUserProfileSettings).
    return upper and lower and (switches + 1) * 5 >= n * 2


def _ip_hit(text: str) -> bool:
    for m in _IPV4.finditer(text):
        if all(int(g) <= 255 for g in m.groups()):
            return True
    if ":" in text:
        for m in _IPV6.finditer(text):
            try:
                ipaddress.ip_address(m.group())
                return True
            except ValueError:
                continue
    return False


def _phone_hit(text: str) -> bool:
    if phonenumbers.PhoneNumberMatcher(text, None, leniency=_POSSIBLE).has_next():
        return True  # an international number (+CC ...)
    for m in phonenumbers.PhoneNumberMatcher(text, "US", leniency=_POSSIBLE):
        raw = m.raw_string
        if "." not in raw and sum(c.isdigit() for c in raw) >= _PHONE_DIGITS:
            return True
    return False
