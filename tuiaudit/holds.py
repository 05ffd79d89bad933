"""Why telemetry is held, in one wording for every reader (DESIGN §7.1).

The shipper's run report, ``tuiaudit ship``, ``status``, ``preview`` and the
dashboard all say the same words for the same hold, and each reason names
what lifts it. The checks run in one order everywhere, so two readers never
disagree about which hold comes first.
"""

from __future__ import annotations

from tuiaudit.config import Settings
from tuiaudit.consent import ConsentState

NO_DAEMON = "no daemon running"
NO_URI = "no telemetry URI: set --telemetry-uri"
PAUSED = "paused: resume with h in the dashboard"
ACCEPT = "`tuiaudit consent --accept`"


def telemetry_off(do_not_track: bool) -> str:
    if do_not_track:
        return "telemetry flag off (DO_NOT_TRACK is set)"
    return "telemetry flag off: add telemetry to --flags"


def bad_uri(problem: str) -> str:
    return f"bad telemetry URI: {problem}"


def not_accepted(consent: ConsentState) -> str:
    if consent.accepted_version == consent.current_version and consent.site_shares_more:
        return f"the site rules share more than the accepted ones: {ACCEPT}"
    return f"policy v{consent.current_version} not accepted: {ACCEPT}"


def settings_hold(settings: Settings) -> str | None:
    """The holds the settings alone decide: the telemetry flag, then the URI."""
    if not settings.has("telemetry"):
        return telemetry_off(settings.do_not_track)
    if not settings.telemetry_uri:
        return NO_URI
    return None


def store_hold(consent: ConsentState, paused: bool) -> str | None:
    """The holds the store decides: the consent, then the pause."""
    if not consent.ok:
        return not_accepted(consent)
    if paused:
        return PAUSED
    return None


def hold_reason(
    settings: Settings, consent: ConsentState, paused: bool, *, daemon_alive: bool = True
) -> str | None:
    """Why a run starting now would send nothing, or None (the order the shipper checks)."""
    if not daemon_alive:
        return NO_DAEMON
    return settings_hold(settings) or store_hold(consent, paused)
