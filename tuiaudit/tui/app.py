"""The dashboard App: tabs, the refresh loop, actions as command rows.

The App reads through one read-only store connection. Live updates come from
change detection (``store.change_token()``): each refresh asks whether
another connection committed and only then re-reads; the next refresh is
scheduled when the last one has finished, and a refresh is skipped while live
updates are paused or a modal is open. Actions never touch data directly:
they enqueue a command row through a separate writable connection and the
daemon performs it; the App reports the command's result when it is done.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.dom import DOMNode
from textual.lazy import Lazy
from textual.screen import ModalScreen
from textual.timer import Timer
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from tuiaudit import __version__
from tuiaudit.approval import KIND_EVENTS, rebuilt
from tuiaudit.codec import decode_envelope
from tuiaudit.config import Settings
from tuiaudit.consent import consent_state
from tuiaudit.control import filter_to_json
from tuiaudit.outcomes import describe_failure, describe_result
from tuiaudit.policy import POLICY_VERSION
from tuiaudit.policy_words import describe_policy
from tuiaudit.storage import open_store, parse_store_url
from tuiaudit.storage.base import AuditRow, Store, StoreError
from tuiaudit.storage.url import display_store_url
from tuiaudit.timeutil import utcnow
from tuiaudit.tui.archive_panel import ArchivePanel
from tuiaudit.tui.data import DaemonHealth, daemon_health, load_preview, load_shipping
from tuiaudit.tui.filters import describe
from tuiaudit.tui.keys import (
    ACTIONS,
    AUDIT,
    EVERYWHERE,
    KEYS,
    LEDGER,
    NEXT_BATCH,
    WEBHOOKS,
    WRITE_ACTIONS,
    bindings,
)
from tuiaudit.tui.messages import (
    CommandFinished,
    CommandQueued,
    PreviewLoaded,
    ShippingLoaded,
    ShowShared,
    StoreStatus,
)
from tuiaudit.tui.palette import DashboardCommands
from tuiaudit.tui.screens.confirm import ConfirmScreen
from tuiaudit.tui.screens.help import HelpScreen
from tuiaudit.tui.screens.row_detail import RowDetailScreen
from tuiaudit.tui.webhooks_panel import WebhooksPanel
from tuiaudit.tui.widgets.audit_view import AuditView
from tuiaudit.tui.widgets.batch_view import BatchView, decision_prompt
from tuiaudit.tui.widgets.shared_view import SharedView
from tuiaudit.tui.widgets.shipping_view import ShippingView

KEYED_TABLES = {"shipping": "#ledger-table", "webhooks": "#webhooks-table"}
"""Tabs whose keys are their table's: focused on arrival so the keys work at once."""
TAB_SCOPES = {
    AUDIT: ("audit", "#audit-view"),
    NEXT_BATCH: ("batch", "#batch-view"),
    LEDGER: ("shipping", "#shipping-view"),
    WEBHOOKS: ("webhooks", "#webhooks-panel"),
}
"""The keys of a tab's own widget (``keys.py`` scope -> tab id, widget), for the palette."""


class AuditApp(App[None]):
    """``AuditApp(store_url_or_store, settings=..., clock=..., refresh_interval=...)``."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "tuiaudit"
    BINDINGS = bindings(EVERYWHERE, ACTIONS)
    COMMANDS = App.COMMANDS | {DashboardCommands}

    def __init__(
        self,
        store: str | Store | None = None,
        *,
        settings: Settings | None = None,
        clock: Callable[[], datetime] = utcnow,
        refresh_interval: float | None = 1.0,
        read_only: bool = False,
        writer: str | Store | None = None,
        debounce: float = 0.25,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self._reader_arg = store if store is not None else self.settings.store_url
        self._owns_reader = not hasattr(self._reader_arg, "fetch_rows")
        self._reader: Store | None = None if self._owns_reader else self._reader_arg  # type: ignore[assignment]
        self.store_url: str = (
            self._reader_arg if isinstance(self._reader_arg, str) else self._reader_arg.url
        )
        self._writer_arg = writer
        self._writer: Store | None = None
        self.clock = clock
        self.refresh_interval = refresh_interval
        self.read_only = read_only
        self.debounce = debounce
        self.live_paused = False
        self._token: int | None = None
        self._refresh_timer: Timer | None = None
        self.health: DaemonHealth | None = None
        self.store_problem: str | None = None
        self.pending_commands: dict[int, str] = {}
        self.finished_commands: list[Any] = []
        self.refreshes = 0  # completed refreshes (tests and bench wait on it)
        self.sub_title = ("read-only · " if read_only else "") + display_store_url(self.store_url)

    # ----------------------------------------------------------------- layout
    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="banner")
        # The hidden panes mount after the first paint (Lazy): the audit rows show sooner.
        with TabbedContent(initial="audit", id="tabs"):
            with TabPane("Audit log [1]", id="audit"):
                yield AuditView(id="audit-view", debounce=self.debounce)
            with TabPane("What is shared [2]", id="shared"):
                yield Lazy(SharedView(site=self.settings.policy, id="shared-view"))
            with TabPane("Next batch [3]", id="batch"):
                yield Lazy(BatchView(id="batch-view", read_only=self.read_only))
            with TabPane("Shipping [4]", id="shipping"):
                yield Lazy(ShippingView(id="shipping-view"))
            with TabPane("Webhooks [5]", id="webhooks"):
                yield Static("Webhooks appear once the store is open.", id="webhooks-placeholder")
            with TabPane("Archive [6]", id="archive"):
                yield Static(
                    "The archive appears once the store is open.", id="archive-placeholder"
                )
        yield Footer()

    @property
    def reader(self) -> Store:
        if self._reader is None:
            raise StoreError(f"the store {self.store_url} is not open yet")
        return self._reader

    @property
    def audit_view(self) -> AuditView:
        return self.query_one(AuditView)

    @property
    def active_tab(self) -> str:
        return str(self.query_one(TabbedContent).active)

    async def on_mount(self) -> None:
        self.query_one(AuditView).query_one("#audit-table").focus()
        if await self._open_reader(panels=False):
            # The first rows before the webhooks and archive panels: they mount
            # while the first refresh waits on the store (first paint, issue 21).
            self.refresh_now()
            await self._mount_webhooks()
        self._schedule()

    async def _open_reader(self, *, panels: bool = True) -> bool:
        if self._reader is None:
            try:
                self._reader = await open_store(self.store_url, read_only=True)
            except (StoreError, OSError, ValueError) as exc:
                self._set_problem(f"cannot open the store {self.store_url}: {exc}")
                return False
        self._set_problem(None)
        if panels:
            await self._mount_webhooks()
        return True

    async def _mount_webhooks(self) -> None:
        if self.query("#webhooks-panel"):
            return
        pane = self.query_one("#webhooks", TabPane)
        await pane.query("#webhooks-placeholder").remove()
        # Its add/enable/disable/remove write through our writable connection.
        panel = WebhooksPanel(
            self.reader, writer=self._get_writer, read_only=self.read_only, id="webhooks-panel"
        )
        await pane.mount(panel)
        archive = self.query_one("#archive", TabPane)
        await archive.query("#archive-placeholder").remove()
        await archive.mount(ArchivePanel(self.reader, id="archive-panel"))

    async def on_unmount(self) -> None:
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
        if self._owns_reader and self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._writer is not None and self._writer is not self._writer_arg:
            await self._writer.close()
            self._writer = None

    # ---------------------------------------------------------- refresh loop
    def _schedule(self) -> None:
        if self.refresh_interval is not None and self.is_running:
            self._refresh_timer = self.set_timer(self.refresh_interval, self._refresh_tick)

    def _refresh_tick(self) -> None:
        self.run_worker(self._refresh_chain(), group="refresh", exclusive=True, exit_on_error=False)

    async def _refresh_chain(self) -> None:
        try:
            if not self.live_paused and not isinstance(self.screen, ModalScreen):
                await self.refresh_data()
        finally:
            self._schedule()  # only once this refresh finished

    def refresh_now(self, *, force: bool = True) -> Worker[None]:
        """One refresh outside the loop (the ``r`` key; tests and the bench call it)."""
        return self.run_worker(
            self.refresh_data(force=force), group="refresh-now", exclusive=True, exit_on_error=False
        )

    async def refresh_data(self, *, force: bool = False) -> None:
        """Re-read what changed since the last refresh, and the daemon's heartbeat."""
        try:
            if self._reader is None and not await self._open_reader():
                return
            store = self.reader
            self._check_file(store)
            token = await store.change_token()
            changed = force or token != self._token
            self._token = token
            now = self.clock()
            self.health = daemon_health(await store.daemon_states(), now)
            if changed:
                await self.audit_view.read_tail()
                await self._refresh_active(now)
                if self.pending_commands:
                    await self._check_commands(store)
            elif self.active_tab == "shipping":
                self.query_one(ShippingView).tick(now)
            self.post_message(StoreStatus(None))
        except (StoreError, OSError) as exc:
            self.post_message(StoreStatus(f"the store is unavailable: {exc}"))
        finally:
            self.refreshes += 1
            self._render_banner()

    def _check_file(self, store: Store) -> None:
        if store.backend != "sqlite":
            return
        path = parse_store_url(store.url).path
        if path is not None and not path.exists():
            raise StoreError(f"{path} was removed or moved; restart the dashboard on a store")

    async def _refresh_active(self, now: datetime) -> None:
        tab = self.active_tab
        if tab == "shipping":
            self.post_message(ShippingLoaded(await load_shipping(self.reader, self.settings, now)))
        elif tab == "batch":
            self.post_message(PreviewLoaded(await load_preview(self.reader, self.settings)))
        elif tab == "webhooks" and self.query("#webhooks-panel"):
            await self.query_one(WebhooksPanel).refresh_data()
        elif tab == "archive" and self.query("#archive-panel"):
            await self.query_one(ArchivePanel).refresh_data(now)

    async def _check_commands(self, store: Store) -> None:
        for command_id in list(self.pending_commands):
            command = await store.get_command(command_id)
            if command is not None and command.status in ("done", "failed"):
                self.post_message(CommandFinished(command))

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "audit":
            # The audit keys (/, t, enter, w) are the table's: work at once on arrival.
            self.query_one(AuditView).query_one("#audit-table").focus()
        if event.pane.id == "batch":
            # The queue's keys (a approve, r reject) are the table's: work at once.
            for queue in self.query("#approval-queue"):
                if queue.display:
                    queue.focus()
        # Likewise the ledger's (enter, c) and the webhooks table's (n, space, t, delete).
        keyed = KEYED_TABLES.get(event.pane.id or "")
        if keyed is not None:
            for table in self.query(keyed):
                table.focus()
        if self._reader is not None:
            self.run_worker(self._load_tab(), group="tab-load", exclusive=True, exit_on_error=False)

    async def _load_tab(self) -> None:
        await self._refresh_active(self.clock())

    # ----------------------------------------------------------- messages
    def on_shipping_loaded(self, message: ShippingLoaded) -> None:
        self.query_one(ShippingView).show(message.snapshot, self.clock())

    def on_preview_loaded(self, message: PreviewLoaded) -> None:
        self.query_one(BatchView).show_preview(message.preview)

    def action_approve_body(self) -> None:
        self._on_queue(approve=True)

    def action_reject_body(self) -> None:
        self._on_queue(approve=False)

    def _on_queue(self, *, approve: bool) -> None:
        """The palette's approve/reject: the Next batch tab's selected body (the tab's own
        ``a`` / ``r`` keys reach the BatchView first)."""
        self.query_one(TabbedContent).active = "batch"
        view = self.query(BatchView).first() if self.query(BatchView) else None
        if view is None or not view.queue:
            self.notify("Nothing waits for approval (see the Next batch tab).", markup=False)
        elif approve:
            view.action_approve_body()
        else:
            view.action_reject_body()

    @on(BatchView.Decide)
    def _decide_body(self, message: BatchView.Decide) -> None:
        self.run_worker(
            self._confirm_decision(message), group="approval", exclusive=True, exit_on_error=False
        )

    async def _confirm_decision(self, message: BatchView.Decide) -> None:
        """Approval mode (DESIGN §10): show what the person decides on, then queue the
        daemon's ``approve`` / ``reject`` command. An events body is rebuilt by the one
        builder and shown decoded from its bytes; one that no longer rebuilds with its
        SHA-256 is not offered (the shipper would refuse it)."""
        body, events = message.body, None
        if message.approve and body.kind == KIND_EVENTS:
            batch = None
            if message.instance_id is not None:
                batch = await rebuilt(
                    self.reader, body, instance_id=message.instance_id, version=__version__
                )
            if batch is None:
                self.notify(
                    "This body no longer rebuilds with its SHA-256 (some of its rows left the "
                    "queue): the shipper will not send it. Its rows get a new body at the next "
                    "run: approve that one.",
                    severity="warning",
                    markup=False,
                )
                return
            events = decode_envelope(batch.body)["events"]
        title, text, label = decision_prompt(
            body, events, describe_policy(self.settings.policy), approve=message.approve
        )
        kind = "approve" if message.approve else "reject"

        def done(ok: bool | None) -> None:
            if ok:
                self.send_command(kind, {"sha256": body.sha256})

        self.push_screen(ConfirmScreen(title, text, label, danger=not message.approve), done)

    def on_store_status(self, message: StoreStatus) -> None:
        self._set_problem(message.problem)

    def on_show_shared(self, message: ShowShared) -> None:
        self.query_one(SharedView).show_row(message.row)
        self.query_one(TabbedContent).active = "shared"

    def on_command_queued(self, message: CommandQueued) -> None:
        self.pending_commands[message.command_id] = message.kind
        warning = ""
        if self.health is not None and self.health.state != "alive":
            warning = " No daemon is running: it runs when one starts."
        self.notify(
            f"{message.kind} queued (command {message.command_id}).{warning}",
            severity="warning" if warning else "information",
        )

    def on_command_finished(self, message: CommandFinished) -> None:
        command = message.command
        if self.pending_commands.pop(command.id, None) is None:
            return
        self.finished_commands.append(command)
        if command.status == "done":
            # Results and errors are data, not markup (DESIGN §8.2); said in
            # words, as `tuiaudit ship` says them (tuiaudit.outcomes).
            self.notify(
                describe_result(command.kind, command.result),
                title="Daemon",
                markup=False,
            )
        else:
            self.notify(
                describe_failure(command.kind, command.result),
                title="Daemon",
                severity="error",
                timeout=10,
                markup=False,
            )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """Every failed worker becomes an error notification, never a crash."""
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{error.__class__.__name__}: {error}",
                title="Dashboard error",
                severity="error",
                timeout=10,
                markup=False,
            )

    def _set_problem(self, problem: str | None) -> None:
        self.store_problem = problem
        self._render_banner()

    def _render_banner(self) -> None:
        try:
            banner = self.query_one("#banner", Static)
        except Exception:  # not composed yet / shutting down
            return
        text = Text()
        if self.store_problem:
            text.append(f"⚠ {self.store_problem}", style="bold")
        elif self.health is not None and self.health.banner:
            text.append(f"⚠ {self.health.banner}", style="bold")
        banner.update(text)
        banner.display = bool(text.plain)

    # --------------------------------------------------------------- actions
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self.read_only and action in WRITE_ACTIONS:
            return False  # hidden from the footer, unbound
        return True

    def action_show_tab(self, tab: str) -> None:
        # Blur first: a focused table in the pane being left would otherwise pull
        # TabbedContent back to its own pane (a tab without a keyed table, such as
        # Archive, could not be reached from Shipping or Webhooks).
        self.set_focus(None)
        self.query_one(TabbedContent).active = tab

    def action_help(self) -> None:
        self.push_screen(HelpScreen(read_only=self.read_only))

    def action_refresh_now(self) -> None:
        self.refresh_now()

    def action_toggle_live(self) -> None:
        self.live_paused = not self.live_paused
        self.audit_view.set_paused(self.live_paused)
        self.notify("live updates paused" if self.live_paused else "live updates resumed")
        if not self.live_paused:
            self.refresh_now()

    def open_detail(self, row: AuditRow) -> None:
        self.push_screen(RowDetailScreen(row))

    def run_palette_action(self, action: str) -> None:
        self.call_later(self.run_action, action, self._action_owner(action))

    def _action_owner(self, action: str) -> DOMNode:
        """Who runs a palette action: a tab's own key acts on that tab's selected row, so
        the tab is shown and its widget runs it; any other action is the App's."""
        scope = next((k.scope for k in KEYS if k.action == action), None)
        if scope in TAB_SCOPES:
            tab, owner = TAB_SCOPES[scope]
            self.action_show_tab(tab)
            for widget in self.query(owner):
                return widget
        return self

    def action_ship_now(self) -> None:
        self.send_command("ship-now")

    def action_toggle_shipping(self) -> None:
        paused = bool(self.health and self.health.daemon and self.health.daemon.paused)
        self.send_command("resume" if paused else "pause")

    def action_gc(self) -> None:
        self.send_command("gc")

    def action_accept_policy(self) -> None:
        self.run_worker(self._accept_policy(), group="accept", exclusive=True, exit_on_error=False)

    async def _accept_policy(self) -> None:
        def done(ok: bool | None) -> None:
            if ok:
                self.send_command("accept-policy", {"version": POLICY_VERSION})

        # Already accepted: say so and leave the focus on Cancel, so enter
        # does not record the same acceptance again.
        state = await consent_state(self.reader)
        title = f"Telemetry policy, version {POLICY_VERSION}"
        body = describe_policy()
        if state.ok:
            title += " (accepted)"
            when = f" on {state.accepted_at:%Y-%m-%d}" if state.accepted_at else ""
            body = f"You accepted this version{when}: there is nothing to do.\n\n{body}"
        self.push_screen(
            ConfirmScreen(
                title,
                body,
                f"Accept version {POLICY_VERSION}",
                danger=False,
                focus_confirm=not state.ok,
            ),
            done,
        )

    def action_revoke_policy(self) -> None:
        self._confirm(
            "Revoke consent",
            "Withdraw consent to the telemetry policy. Shipping stops, and every pending "
            "telemetry row is deleted (counted as consent-revoked drops). The audit log "
            "itself is kept.",
            "Revoke and purge",
            "revoke-policy",
        )

    def action_release_quarantine(self) -> None:
        self._confirm(
            "Release quarantined rows",
            "Move every quarantined row back into the telemetry queue: the next run "
            "sends them again.",
            "Release all",
            "release-quarantine",
            danger=False,
        )

    def action_purge_quarantine(self) -> None:
        self._confirm(
            "Purge quarantined rows",
            "Delete every quarantined row (counted as rejected drops).",
            "Purge quarantine",
            "purge-quarantine",
        )

    def action_purge_pending(self) -> None:
        flt = self.audit_view.flt
        what = describe(flt) or "no filter: EVERY pending row"
        self._confirm(
            "Purge pending telemetry rows",
            f"Delete the pending telemetry rows that match the audit filter ({what}). "
            "They will never be sent (counted as user-purge drops). Audit rows are kept.",
            "Purge pending",
            "purge-pending",
            {"filter": filter_to_json(flt)},
        )

    def _confirm(
        self,
        title: str,
        body: str,
        label: str,
        kind: str,
        args: dict[str, Any] | None = None,
        *,
        danger: bool = True,
    ) -> None:
        def done(ok: bool | None) -> None:
            if ok:
                self.send_command(kind, args)

        self.push_screen(ConfirmScreen(title, body, label, danger=danger), done)

    def send_command(self, kind: str, args: dict[str, Any] | None = None) -> None:
        if self.read_only:
            self.notify("read-only dashboard: actions are off", severity="warning")
            return
        self._enqueue(kind, args or {})

    @work(group="actions", exit_on_error=False)
    async def _enqueue(self, kind: str, args: dict[str, Any]) -> None:
        writer = await self._get_writer()
        command_id = await writer.enqueue_command(kind, args)
        self.post_message(CommandQueued(command_id, kind))

    async def _get_writer(self) -> Store:
        if self._writer is None:
            arg = self._writer_arg if self._writer_arg is not None else self.store_url
            if isinstance(arg, str):
                self._writer = await open_store(arg, migrate=False)
            else:
                self._writer = arg
        return self._writer
