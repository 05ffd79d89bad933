"""Store URLs: ``sqlite:///abs/path.db``, a plain path, ``postgresql://…?schema=NAME``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_SCHEMA_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


@dataclass(frozen=True, slots=True)
class StoreLocation:
    backend: str  # "sqlite" | "postgresql"
    path: Path | None = None  # SQLite file
    dsn: str | None = None  # PostgreSQL DSN without our own query parameters
    schema: str = "public"  # PostgreSQL search_path


def parse_store_url(url: str) -> StoreLocation:
    """Split a store URL into what a back-end needs; ValueError says what is wrong."""
    url = url.strip()
    if not url:
        raise ValueError("empty store URL: pass a file path, sqlite:///path or postgresql://…")
    lower = url.lower()
    if lower.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
        schema = "public"
        rest = []
        for key, value in query:
            if key == "schema":
                schema = value
            else:
                rest.append((key, value))
        if not _SCHEMA_RE.match(schema):
            raise ValueError(
                f"invalid schema name {schema!r} in the store URL: use letters, digits and _"
            )
        dsn = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(rest), ""))
        return StoreLocation("postgresql", dsn=dsn, schema=schema)
    if lower.startswith("sqlite:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"sqlite URL {url!r} has a host: write sqlite:///absolute/path.db")
        if not parts.path:
            raise ValueError(f"sqlite URL {url!r} has no path: write sqlite:///absolute/path.db")
        # sqlite:///abs and sqlite:////abs both name /abs.
        return StoreLocation("sqlite", path=Path("/" + parts.path.lstrip("/")))
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise ValueError(
            f"unsupported store URL scheme {scheme!r}: use a file path, sqlite:///path "
            "or postgresql://user@host/db"
        )
    return StoreLocation("sqlite", path=Path(url).expanduser())


def display_store_url(url: str) -> str:
    """The store URL fit to print or show: a PostgreSQL password is masked."""
    if "://" not in url or url.lower().startswith("sqlite:"):
        return url
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}", fragment=""))
