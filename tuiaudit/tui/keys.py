"""Every key binding of the dashboard, in one table.

The App, the panes and the modal screens build their ``BINDINGS`` from this
table, the help screen prints it, and ``tests/test_tui_docs.py`` checks that
README.md's "Dashboard keys" section lists every row, so the three cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding, BindingType

# Where a key works; also the section titles of the help screen, in order.
EVERYWHERE = "Everywhere"
AUDIT = "Audit log"
DETAIL = "Row detail"
# Approval mode (DESIGN §10): on the Next batch tab's queue, `a` and `r` are the
# tab's own (approve, reject) and win over the global accept-policy and refresh.
NEXT_BATCH = "Next batch queue (approval mode; hidden with --read-only)"
ACTIONS = "Actions (hidden with --read-only)"
# The Shipping tab's sent ledger and its attempt detail (the SHA-256 to check).
LEDGER = "Sent ledger (Shipping tab)"
# The Webhooks tab's own keys, on its webhooks table (the same code as `tuiaudit webhooks`).
WEBHOOKS = "Webhooks tab (hidden with --read-only)"
SCOPES = (EVERYWHERE, AUDIT, DETAIL, NEXT_BATCH, ACTIONS, LEDGER, WEBHOOKS)


@dataclass(frozen=True, slots=True)
class Key:
    key: str  # Textual key name(s), comma-separated
    display: str  # how the README and the help screen spell it
    action: str
    description: str  # README and help screen
    scope: str
    label: str = ""  # footer label; empty: not shown in the footer


KEYS: tuple[Key, ...] = (
    Key("1", "1", "show_tab('audit')", "Audit log tab", EVERYWHERE),
    Key(
        "2",
        "2",
        "show_tab('shared')",
        "What is shared tab (the selected row and its telemetry copy)",
        EVERYWHERE,
    ),
    Key("3", "3", "show_tab('batch')", "Next batch tab (exactly what would be sent)", EVERYWHERE),
    Key("4", "4", "show_tab('shipping')", "Shipping tab (daemon, queue, sent ledger)", EVERYWHERE),
    Key("5", "5", "show_tab('webhooks')", "Webhooks tab", EVERYWHERE),
    Key("6", "6", "show_tab('archive')", "Archive tab (audit archive, deletions)", EVERYWHERE),
    Key("p", "p", "toggle_live", "Pause / resume live updates (the tail too)", EVERYWHERE, "pause"),
    Key("r", "r", "refresh_now", "Refresh now", EVERYWHERE),
    Key("question_mark", "?", "help", "Help: every key", EVERYWHERE, "help"),
    Key(
        "ctrl+p", "ctrl+p", "command_palette", "Command palette (every action, themes)", EVERYWHERE
    ),
    Key("q", "q", "quit", "Quit", EVERYWHERE, "quit"),
    Key("ctrl+c", "ctrl+c", "quit", "Quit too (as in every terminal program)", EVERYWHERE),
    Key(
        "slash",
        "/",
        "filter",
        "Filter as you type (name: source: type: profile: archived:yes|no free text)",
        AUDIT,
        "filter",
    ),
    Key("t", "t", "cycle_range", "Time range: all, 1h, 24h, 7d", AUDIT, "range"),
    Key(
        "enter",
        "enter",
        "open_detail",
        "Row detail (every field, props and context as JSON)",
        AUDIT,
        "detail",
    ),
    Key("w", "w", "what_is_shared", "What is shared for the selected row", AUDIT, "shared"),
    Key("escape", "escape", "clear_filter", "Clear the filter, back to the table", AUDIT),
    # In the filter box ctrl+u is the Input's own; on the table it must not fall
    # through: the typing that follows would run dashboard keys (v: revoke...).
    Key(
        "ctrl+u",
        "ctrl+u",
        "retype_filter",
        "Clear the filter and type a new one (from the table too)",
        AUDIT,
    ),
    Key("pagedown", "pagedown", "load_more", "Next page (older rows load at the end)", AUDIT),
    Key("escape", "escape", "dismiss", "Close the row detail", DETAIL, "close"),
    Key("w", "w", "what_is_shared", "What is shared for this row", DETAIL, "shared"),
    Key(
        "a",
        "a",
        "approve_body",
        "Approve the selected body (shows its decoded events and the policy first)",
        NEXT_BATCH,
        "approve",
    ),
    Key(
        "r",
        "r",
        "reject_body",
        "Reject the selected body (its rows go to quarantine)",
        NEXT_BATCH,
        "reject",
    ),
    Key(
        "enter",
        "enter",
        "open_attempt",
        "Attempt detail: the full SHA-256, idempotency key and error",
        LEDGER,
        "detail",
    ),
    Key("c", "c", "copy_sha", "Copy the attempt's SHA-256 to the clipboard", LEDGER, "copy SHA"),
    Key("escape", "escape", "dismiss", "Close the attempt detail", LEDGER, "close"),
    Key("n", "n", "add_webhook", "Add a webhook (URL, events, retries, secret)", WEBHOOKS, "add"),
    Key(
        "space",
        "space",
        "toggle_webhook",
        "Enable / disable the selected webhook",
        WEBHOOKS,
        "on/off",
    ),
    Key(
        "t",
        "t",
        "test_webhook",
        "Send a signed test event to the selected webhook (the daemon sends it)",
        WEBHOOKS,
        "test",
    ),
    Key(
        "delete",
        "delete",
        "remove_webhook",
        "Remove the selected webhook and its deliveries (asks first)",
        WEBHOOKS,
        "remove",
    ),
    Key("s", "s", "ship_now", "Ship now", ACTIONS, "ship now"),
    Key("h", "h", "toggle_shipping", "Pause / resume shipping", ACTIONS, "hold/resume"),
    Key("g", "g", "gc", "Run GC now", ACTIONS, "gc"),
    Key(
        "a", "a", "accept_policy", "Accept the telemetry policy (shows it first)", ACTIONS, "accept"
    ),
    Key("v", "v", "revoke_policy", "Revoke consent (purges pending rows)", ACTIONS),
    Key("e", "e", "release_quarantine", "Release quarantined rows", ACTIONS),
    Key("x", "x", "purge_quarantine", "Purge quarantined rows", ACTIONS),
    Key("d", "d", "purge_pending", "Purge pending rows matching the filter", ACTIONS),
)

# Action name -> command kind; actions that reach the daemon (hidden when read-only).
WRITE_ACTIONS = {
    "ship_now": "ship-now",
    "toggle_shipping": "pause/resume",
    "gc": "gc",
    "accept_policy": "accept-policy",
    "revoke_policy": "revoke-policy",
    "release_quarantine": "release-quarantine",
    "purge_quarantine": "purge-quarantine",
    "purge_pending": "purge-pending",
    "approve_body": "approve",
    "reject_body": "reject",
}


def bindings(*scopes: str, actions: tuple[str, ...] = ()) -> list[BindingType]:
    """The Textual bindings of these scopes (only these ``actions``, when given)."""
    return [
        Binding(
            k.key, k.action, k.label or k.description, show=bool(k.label), key_display=k.display
        )
        for k in KEYS
        # The App already binds its command palette key itself.
        if k.scope in scopes
        and k.action != "command_palette"
        and (not actions or k.action in actions)
    ]


def keys_markdown() -> str:
    """The README's "Dashboard keys" table, generated from ``KEYS``."""
    lines = ["| key | where | does |", "|---|---|---|"]
    for k in KEYS:
        lines.append(f"| `{k.display}` | {k.scope} | {k.description} |")
    return "\n".join(lines)
