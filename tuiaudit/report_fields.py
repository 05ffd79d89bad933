"""What the instance report holds, as data (DESIGN §5 step 3, §3.1).

:mod:`tuiaudit.report` builds the body from exactly these fields, in this
order, and the consent text (:mod:`tuiaudit.policy_words`) lists them, so the
words cannot miss a field. A module of its own (no imports): the policy words
read it without importing the report builder, which imports the policy.
"""

from __future__ import annotations

REPORT_TYPE = "telemetry-legacy-report"

REPORT_ENVELOPE_FIELDS: tuple[tuple[str, str], ...] = (
    ("type", f'always "{REPORT_TYPE}"'),
    ("version", "the tuiaudit version"),
    ("instance-id", "the random id of this installation"),
    ("stats", "the statistics below"),
)

REPORT_FIELDS: tuple[tuple[str, str], ...] = (
    ("event-counters", "today's telemetry events per event name (names the policy lets through)"),
    ("total-events", "the sum of those counters"),
    ("store-backend", "sqlite or postgresql"),
    ("store-total-rows", "rows in the audit log"),
    ("pending-telemetry-rows", "telemetry rows waiting to be sent"),
    ("quarantined-rows", "telemetry rows the receiver rejected"),
    ("dropped-rows", "telemetry rows dropped unsent, per reason"),
    ("os", "operating system name (e.g. Linux)"),
    ("os-release", "operating system or kernel release"),
    ("arch", "machine architecture (e.g. x86_64)"),
    ("cpus", "number of CPUs"),
    ("python-version", "Python version"),
    ("python-implementation", "Python implementation (e.g. CPython)"),
    ("timezone", "time zone name"),
)
"""Every field of the report's ``stats``, in body order, with what it holds."""
