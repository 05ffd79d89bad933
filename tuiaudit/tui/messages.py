"""Typed messages the dashboard's workers post with their results."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from tuiaudit.storage.base import AuditRow, Command
from tuiaudit.tui.data import BatchPreview, ShippingSnapshot


@dataclass
class RowsLoaded(Message):
    """A page of the audit log (``reset``: the first page of a new filter)."""

    generation: int
    rows: list[AuditRow]
    reset: bool
    exhausted: bool
    count: int | None = None  # known at once when the first page is short


@dataclass
class CountLoaded(Message):
    """The bounded count of a filter (posted after its first page is shown)."""

    generation: int
    count: int


@dataclass
class TailLoaded(Message):
    """Rows newer than the newest shown (oldest first), and shown rows that are gone."""

    generation: int
    rows: list[AuditRow]
    gone: list[str]
    flood: bool  # more new rows than one tail read: reload from the top


@dataclass
class ShippingLoaded(Message):
    snapshot: ShippingSnapshot


@dataclass
class PreviewLoaded(Message):
    preview: BatchPreview


@dataclass
class CommandQueued(Message):
    command_id: int
    kind: str


@dataclass
class CommandFinished(Message):
    command: Command


@dataclass
class StoreStatus(Message):
    """``problem`` is None when the store answers again."""

    problem: str | None


@dataclass
class ShowShared(Message):
    """Show what is shared for this row (from the table or the detail screen)."""

    row: AuditRow
