"""``tuiaudit consent``: show the telemetry policy; accept or revoke it (DESIGN §7.1)."""

from __future__ import annotations

import argparse

from tuiaudit import consent
from tuiaudit.commands._common import eprint, run_with_store
from tuiaudit.config import Settings
from tuiaudit.effective import daemon_settings, hold_now, live_daemon
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.policy_words import describe_policy
from tuiaudit.safe_text import escape_controls, safe_url
from tuiaudit.storage.base import Store
from tuiaudit.timeutil import utcnow

NAME = "consent"
HELP = "show the telemetry policy and its version; --accept or --revoke it"

EPILOG = """\
examples:
  tuiaudit consent                  print the policy in plain words and the current acceptance
  tuiaudit consent --accept         accept the version shown (recorded in the store)
  tuiaudit consent --accept 1       accept only if version 1 is current (scripts)
  tuiaudit consent --revoke         withdraw consent and delete every pending telemetry row

Nothing leaves the machine until a telemetry URI is set and the current policy
version is accepted. A headless daemon can accept with --accept-policy VERSION
(or TUIAUDIT_ACCEPT_POLICY); that never undoes a --revoke made after it was
last applied. DO_NOT_TRACK (any value but empty or 0) turns telemetry off
regardless. The instance report's fields are listed with the policy.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--accept",
        nargs="?",
        const=-1,
        type=int,
        metavar="VERSION",
        help="accept the current policy version (must equal VERSION when given)",
    )
    group.add_argument(
        "--revoke", action="store_true", help="withdraw consent and purge pending telemetry rows"
    )


def run(args: argparse.Namespace) -> int:
    async def main(store: Store, settings: Settings) -> int:
        if args.revoke:
            purged = await consent.revoke(store)
            rows = "row" if purged == 1 else "rows"
            print(f"consent withdrawn; {purged} pending telemetry {rows} deleted")
            return 0
        if args.accept is not None:
            version = POLICY_VERSION if args.accept == -1 else args.accept
            try:
                await consent.accept(store, version)
            except ValueError as exc:
                eprint(f"tuiaudit consent: {exc}")
                return 2
            print(f"telemetry policy version {version} accepted")
            # The running daemon's settings count, not this command's (DESIGN §8.1),
            # and the hold is said in the words every reader uses (tuiaudit.holds).
            daemon = live_daemon(await store.daemon_states(), utcnow())
            effective = daemon_settings(settings, daemon)
            hold = await hold_now(store, effective, daemon_alive=daemon is not None)
            if daemon is not None and hold.reason is None:
                print(
                    f"the daemon (pid {daemon.pid} on {escape_controls(daemon.host)}) sends to "
                    f"{safe_url(effective.telemetry_uri or '')}; it ships within seconds"
                )
            elif hold.reason is not None:
                print(f"nothing is sent yet: {hold.reason}")
            if effective.do_not_track:
                print("DO_NOT_TRACK is set: telemetry stays off while it is")
            return 0
        print(describe_policy(settings.policy))  # with the site rules ([policy])
        print()
        state = await consent.consent_state(store)
        print(f"current acceptance: {state.describe()}")
        if state.accepted_at is not None:
            print(f"accepted at: {state.accepted_at.isoformat()}")
        if settings.do_not_track:
            print("DO_NOT_TRACK is set: telemetry is off regardless of consent")
        return 0

    # Not read-only even to show: the store is migrated if it is behind. A
    # missing store is refused (run_with_store): the daemon creates it.
    return run_with_store(args, main)
