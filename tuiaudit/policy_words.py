"""The telemetry policy in plain words (``tuiaudit consent``, the dashboard; DESIGN §3, §3.1).

Generated from the policy table itself (``tuiaudit.policy.POLICY``), the
site's own rules (``[policy]``) and the instance report's field list
(``tuiaudit.report_fields.REPORT_FIELDS``), so the words cannot drift from what the
ingest path applies and the shipper sends. The text says what IS shared,
truthfully: names, identifier-shaped keys, UUIDs, booleans, numbers as the
rules shape them, the listed context values, the pseudonymous profile id and
the report. It never claims that "everything else" is removed.
"""

from __future__ import annotations

import textwrap

from tuiaudit.policy import POLICY, POLICY_FINGERPRINT, Policy
from tuiaudit.report_fields import REPORT_ENVELOPE_FIELDS, REPORT_FIELDS
from tuiaudit.site_policy import (
    ALL_EVENTS,
    DEFAULT_SITE,
    PROFILE_DAILY_HASH,
    PROFILE_DROP,
    SitePolicy,
)


def describe_policy(site: SitePolicy = DEFAULT_SITE) -> str:
    """The policy in force (table + site rules) in plain words, with its version."""
    return describe(POLICY, POLICY_FINGERPRINT, site)


def _item(bullet: str, text: str, indent: int = 2) -> list[str]:
    pad = " " * indent
    return textwrap.wrap(
        text,
        76,
        initial_indent=pad + bullet,
        subsequent_indent=pad + " " * len(bullet),
        break_on_hyphens=False,
    )


def _names(s: frozenset[str] | set[str]) -> str:
    return ", ".join(sorted(s))


def _events(s: frozenset[tuple[str, str, str | None]]) -> str:
    return ", ".join(f"{o} {t} events named {n}" for o, t, n in sorted(s, key=str))


def describe(policy: Policy, fingerprint: str, site: SitePolicy = DEFAULT_SITE) -> str:
    """``policy`` as text, with its version and the first 12 digits of ``fingerprint``."""
    item = _item
    digits = policy.long_int_digits
    backend_identify = sorted(n for o, _t, n in policy.identify_like if o == "backend" and n)
    lines = [
        f"tuiaudit telemetry policy, version {policy.version} (fingerprint {fingerprint[:12]}"
        + (f", site rules {site.fingerprint[:12]})" if site != DEFAULT_SITE else ")"),
        "",
        *textwrap.wrap(
            "Nothing leaves this machine until a telemetry URI is configured and this "
            "version of the policy is accepted (tuiaudit consent --accept). What is "
            "shared is a reduced copy of each event, made when the event arrives, and "
            "an instance report before each send; the audit log itself is never altered "
            "and never sent.",
            78,
        ),
        "",
        "Every shared event:",
        *item("- ", "gets a new id; it cannot be joined back to its audit row."),
        *item("- ", "has its IP address replaced by 0.0.0.0."),
        *item("- ", _profile_words(site)),
        *item("- ", "has its timestamps truncated to the day (00:00:00 UTC)."),
        *item(
            "- ",
            "keeps its name and type, which are shared as they are: an event whose name "
            "is not an identifier (letters, digits and _.:/-, at most 100) or whose type "
            "is not a short lower-case word, or whose name holds an e-mail address, an IP "
            "address, a URL, a token, a phone number or a long number, is not shared at "
            "all (only its audit row is kept). Its source becomes telemetry:backend or "
            "telemetry:frontend.",
        ),
        "",
        *textwrap.wrap(
            "Event properties are shared under their keys; a key must be an identifier "
            "(letters, digits, _ and -, at most 64) or the entry is removed. By event:",
            78,
        ),
        *item(
            "1. ",
            "Identify-like events (frontend events of type identify; backend events "
            f"named {', '.join(backend_identify)}): UUIDs, booleans and numbers, the "
            "language (lang, a language tag such as en or zh_CN) and the authentication "
            "backend (auth-backend, a short word), and the domain of the e-mail address "
            "(email-domain, taken only from the address itself, and only when it is a "
            "host name). The e-mail address, the full name and other texts are removed.",
        ),
        *item(
            "2. ",
            f"{_events(policy.pass_through)} that this daemon made itself: its version, "
            "enabled flags and public URI (reduced to scheme://host[:port]). The same "
            "event sent by a client is treated as rule 4.",
        ),
        *item(
            "3. ",
            f"{_events(policy.navigate)}: only {_names(policy.navigate_keep)}; the route "
            "must be a route name (no query or fragment) and the ids UUIDs. They are "
            "shared as text.",
        ),
        *item(
            "4. ",
            "Every other event: UUIDs, booleans and numbers only; texts, nested "
            "objects and lists are removed.",
        ),
        *item(
            "",
            f"Numbers: an integer of {digits} or more digits is removed (a phone, card or "
            "account number, or an exact time, rather than a count); a fraction is "
            f"rounded to {policy.float_digits} significant digits. Null values and keys "
            "holding '/' are removed.",
        ),
        "",
        "Event context (the client's environment):",
    ]
    for origin, keep in sorted(policy.context_keep.items()):
        lines += item("- ", f"{origin} events share: {_names(keep)}.")
    versions = _names({k for k, s in policy.context_shapes.items() if s == "version"})
    lines += item(
        "- ",
        f"{versions} must look like versions; screen sizes must be numbers; the user "
        "agent is reduced to browser family and major version and OS family (e.g. "
        "Firefox 133 / Linux); every other value must be short plain text. Other "
        "origins share no context; session links, access tokens and request ids are "
        "never shared.",
    )
    lines += [
        "",
        *textwrap.wrap(
            "Last check: every text still present (names, keys, values) is scanned for "
            "e-mail addresses, IP addresses (versions such as 124.0.0.0 aside), URLs with "
            "user info or a query, tokens and long opaque strings, and phone numbers; a "
            "hit removes the value, or withholds the event when it is in the name.",
            78,
        ),
    ]
    lines += _site_words(site)
    lines += ["", "The instance report, sent before the events, holds:"]
    for name, what in REPORT_ENVELOPE_FIELDS:
        lines += item("- ", f"{name}: {what}")
    for name, what in REPORT_FIELDS:
        lines += item("- ", f"stats.{name}: {what}", indent=4)
    return "\n".join(lines) + "\n"


def _profile_words(site: SitePolicy) -> str:
    if site.profile_id == PROFILE_DROP:
        return "has its profile id replaced by the zero UUID (site rule profile-id = drop)."
    if site.profile_id == PROFILE_DAILY_HASH:
        return (
            "has its profile id replaced by a daily pseudonym (an HMAC under a random key "
            "that changes every UTC day and is never stored with the data): a receiver can "
            "count daily users but cannot follow one across days."
        )
    return (
        "keeps its profile id: a random UUID that is the same for a person in every "
        "event, so it is a pseudonym (personal data), not an anonymous value. The site "
        "can replace it by a daily pseudonym or drop it ([policy] profile-id)."
    )


def _site_words(site: SitePolicy) -> list[str]:
    if site == DEFAULT_SITE:
        return []
    lines = ["", "Site rules ([policy] in the settings):"]
    if site.strict:
        lines += _item(
            "- ",
            "strict: only the events and property keys listed under keep are shared.",
        )
    if site.drop_events:
        lines += _item("- ", f"never shared: events {_names(set(site.drop_events))}.")
    for event, keys in site.drop_keys:
        where = "every event" if event == ALL_EVENTS else f"events named {event}"
        lines += _item("- ", f"never shared for {where}: {', '.join(keys)}.")
    for event, kinds in site.keep:
        where = "every event" if event == ALL_EVENTS else f"events named {event}"
        listed = ", ".join(f"{k} ({kind})" for k, kind in kinds)
        lines += _item(
            "- ",
            f"also shared for {where}: {listed}; a count keeps any number, an enum a short "
            "identifier, an identifier a longer one (the last check still applies).",
        )
    return lines
