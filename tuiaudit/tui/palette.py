"""The command palette provider: every dashboard action, found by name."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tuiaudit.tui.keys import ACTIONS, KEYS, WEBHOOKS, WRITE_ACTIONS, Key

if TYPE_CHECKING:
    from tuiaudit.tui.app import AuditApp


def palette_keys(read_only: bool) -> list[Key]:
    """Each action once (a key bound in two places is listed once), writes unless read-only."""
    seen: set[str] = set()
    out = []
    for key in KEYS:
        if key.action in seen or key.action in ("command_palette", "dismiss"):
            continue
        if read_only and (key.scope in (ACTIONS, WEBHOOKS) or key.action in WRITE_ACTIONS):
            continue
        seen.add(key.action)
        out.append(key)
    return out


class DashboardCommands(Provider):
    """Lists the actions of ``tuiaudit.tui.keys.KEYS`` (themes come from Textual's own)."""

    def _keys(self) -> list[Key]:
        app: AuditApp = self.app  # type: ignore[assignment]
        return palette_keys(getattr(app, "read_only", False))

    def _run(self, key: Key) -> None:
        app: AuditApp = self.app  # type: ignore[assignment]
        app.run_palette_action(key.action)

    async def discover(self) -> Hits:
        for key in self._keys():
            yield DiscoveryHit(key.description, partial(self._run, key), help=f"key: {key.display}")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for key in self._keys():
            score = matcher.match(key.description)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(key.description),
                    partial(self._run, key),
                    text=key.description,
                    help=f"key: {key.display}",
                )
