"""The telemetry policy in plain words (``tuiaudit consent``, the dashboard, DESIGN §3).

Generated from the policy table itself (``tuiaudit.policy.POLICY``), so the
words cannot drift from what the ingest path applies.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from tuiaudit.report_fields import REPORT_FIELDS

if TYPE_CHECKING:
    from tuiaudit.policy import Policy


def describe(policy: Policy, fingerprint: str) -> str:
    """``policy`` as text, with its version and the first 12 digits of ``fingerprint``."""

    def names(s: frozenset[str]) -> str:
        return ", ".join(sorted(s))

    def events(s: frozenset[tuple[str, str, str | None]]) -> str:
        return ", ".join(f"{o} {t} events named {n}" for o, t, n in sorted(s, key=str))

    def item(bullet: str, text: str, indent: int = 2) -> list[str]:
        pad = " " * indent
        return textwrap.wrap(
            text,
            76,
            initial_indent=pad + bullet,
            subsequent_indent=pad + " " * len(bullet),
            break_on_hyphens=False,
        )

    backend_identify = sorted(n for o, _t, n in policy.identify_like if o == "backend" and n)
    lines = [
        f"tuiaudit telemetry policy, version {policy.version} (fingerprint {fingerprint[:12]})",
        "",
        *textwrap.wrap(
            "Nothing leaves this machine until a telemetry URI is configured and this "
            "version of the policy is accepted (tuiaudit consent --accept). What is "
            "shared is an anonymised copy of each event; the audit log itself is never "
            "altered and never sent.",
            78,
        ),
        "",
        "Every shared event:",
        *item("- ", "gets a new id; it cannot be joined back to its audit row."),
        *item(
            "- ",
            "has its IP address replaced by 0.0.0.0; the profile id (a random UUID, "
            "not personal data) is kept.",
        ),
        *item("- ", "has its timestamps truncated to the day (00:00:00 UTC)."),
        *item(
            "- ",
            "keeps its name and type; its source becomes telemetry:backend or telemetry:frontend.",
        ),
        "",
        "Event properties, by event:",
        *item(
            "1. ",
            "Identify-like events (frontend events of type identify; backend events "
            f"named {', '.join(backend_identify)}): UUID, boolean and number values, plus "
            f"{names(policy.identify_keep)}; the email address is reduced to its domain "
            "(email-domain). The email, the full name and every other text are removed.",
        ),
        *item(
            "2. ",
            f"{events(policy.pass_through)}: properties pass unchanged (version, enabled "
            "flags, public URI).",
        ),
        *item("3. ", f"{events(policy.navigate)}: only {names(policy.navigate_keep)}."),
        *item(
            "4. ",
            "Every other event: only UUID, boolean and number values; texts, nested "
            "objects and lists are removed.",
        ),
        *item(
            "",
            "Null values are removed; keys holding '/' (qualified keys) are removed in every case.",
        ),
        "",
        "Event context:",
    ]
    for origin, keep in sorted(policy.context_keep.items()):
        lines += item("- ", f"{origin} events keep only: {names(keep)}.")
    lines += item(
        "- ",
        "any other origin keeps nothing. Session links, access tokens, request ids "
        "and everything else are removed.",
    )
    # Every field of the report, from the list its builder uses (DESIGN §5 step 3).
    lines += [
        "",
        *textwrap.wrap(
            "Before the events, each telemetry run also sends an instance report "
            "(shown with its SHA-256 by tuiaudit preview): the tuiaudit version, this "
            "installation's random instance id, and these statistics:",
            78,
        ),
    ]
    for name, meaning in REPORT_FIELDS:
        lines += item("- ", f"{name}: {meaning}.")
    return "\n".join(lines) + "\n"
