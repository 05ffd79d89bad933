"""Asking the live daemon to run now: queue the request, wait for its outcome.

``tuiaudit ship`` (``ship-now``) and ``tuiaudit archive`` (``archive-now``)
both hand their run to the daemon that works on the store, so its settings
apply, and fall back to a run in this process with ``--local``.
"""

from __future__ import annotations

import asyncio

from tuiaudit.commands._common import eprint
from tuiaudit.liveness import ALIVE, daemon_liveness
from tuiaudit.storage.base import Command, DaemonState, Store
from tuiaudit.timeutil import utcnow

POLL_S = 0.2  # how often the command looks at the request row while the daemon works


def daemon_who(daemon: DaemonState) -> str:
    return f"the daemon (pid {daemon.pid} on {daemon.host})"


async def run_on_daemon(
    store: Store,
    daemon: DaemonState,
    kind: str,
    *,
    prog: str,
    asked: str,
    verb: str,
    queued: str,
) -> Command | None:
    """Queue ``kind`` for ``daemon`` and wait until it is done or failed.

    None when the daemon stopped before it ran the request (said on stderr:
    the request stays queued for the next daemon). ``prog`` starts every
    line; ``asked`` and ``queued`` may name ``{who}`` and ``{request}``;
    ``verb`` is the command a person runs with ``--local`` instead.
    """
    who = daemon_who(daemon)
    request = await store.enqueue_command(kind, {})
    eprint(f"{prog}: {asked.format(who=who, request=request)}")
    try:
        while True:
            command = await store.get_command(request)
            if command is not None and command.status in ("done", "failed"):
                return command
            states = {s.daemon_id: s for s in await store.daemon_states()}
            state = states.get(daemon.daemon_id)
            if state is None or daemon_liveness(state, utcnow()) != ALIVE:
                eprint(
                    f"{prog}: {who} stopped before it ran the request; "
                    f"it runs when a daemon starts, or {verb} with --local"
                )
                return None
            await asyncio.sleep(POLL_S)
    except asyncio.CancelledError:
        eprint(f"{prog}: {queued.format(who=who, request=request)}")
        raise
