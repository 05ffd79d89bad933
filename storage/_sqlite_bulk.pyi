"""Types of the SQLite writer's bulk insert (_sqlite_bulk.pyx)."""

from collections.abc import Iterable, Sequence

class BulkInsert:
    columns: int
    def __init__(
        self, path: str, sql: str, pragmas: Iterable[str] = (), busy_timeout_ms: int = 5000
    ) -> None: ...
    def insert(self, rows: Sequence[Sequence[str | None]]) -> int: ...
    def close(self) -> None: ...
