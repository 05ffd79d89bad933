"""The site's own policy rules: the ``[policy]`` table of the settings (DESIGN §3.1).

::

    [policy]
    profile-id = "daily-hash"          # keep | daily-hash | drop
    strict = false                     # true: share only the events and keys listed in keep
    drop-events = ["debug-dump"]       # never share these events
    [policy.keep]                      # event name (or "*" for all) -> { key = kind }
    "*" = { page-count = "count" }     # count: a number kept even with 9+ digits
    create-file = { template = "enum" }  # enum: a short plain text kept
    [policy.drop]                      # event name (or "*") -> keys never shared
    "*" = ["internal-score"]

``keep`` only relaxes a hardening rule for the keys it names (a ``count``
keeps a 9+ digit number, an ``enum`` or ``identifier`` keeps a short text
of its shape); the last scan still runs on every kept text. Keeping is
sharing more; dropping and ``strict`` share less. The effective site policy
has a fingerprint; consent records the site policy it accepted, and
``shares_more_than`` says why a new one needs a new acceptance (DESIGN §7.1).

``daily-hash`` replaces the profile id by an HMAC under a random key that
lives one UTC day (``DailyKeys``). The key is never stored with the data: it
lives in memory and in a 0600 file per day in the user state directory (so
daemons on one machine agree, and a restart mid-day keeps counting the same
person once). Daemons on other machines sharing a PostgreSQL store have
their own keys: a person seen by two machines on one day counts twice.
That over-count is the price of keeping the key out of the store: a key in
the store would sit beside the data and its backups, and anyone holding both
and a list of profile ids could recompute every pseudonym.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import orjson
import platformdirs

PROFILE_KEEP = "keep"
PROFILE_DAILY_HASH = "daily-hash"
PROFILE_DROP = "drop"
PROFILE_MODES = (PROFILE_DROP, PROFILE_DAILY_HASH, PROFILE_KEEP)  # least to most shared
KIND_COUNT = "count"
KIND_ENUM = "enum"
KIND_IDENTIFIER = "identifier"
KINDS = (KIND_COUNT, KIND_ENUM, KIND_IDENTIFIER)
ALL_EVENTS = "*"

_Keys = tuple[tuple[str, str], ...]  # (key, kind), sorted


@dataclass(frozen=True)
class SitePolicy:
    keep: tuple[tuple[str, _Keys], ...] = ()  # (event or "*", keys), sorted
    drop_events: frozenset[str] = frozenset()
    drop_keys: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (event or "*", keys), sorted
    strict: bool = False
    profile_id: str = PROFILE_KEEP
    # Per-event plans built from this site policy (``tuiaudit.policy``); not data.
    plans: dict[Any, Any] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # The daily-hash keys (None: the default, in the user state directory).
    daily_keys: DailyKeys | None = field(default=None, compare=False, hash=False, repr=False)

    def table(self) -> dict[str, Any]:
        """Plain JSON data, sorted: what consent records and the fingerprint hashes."""
        return {
            "profile-id": self.profile_id,
            "strict": self.strict,
            "drop-events": sorted(self.drop_events),
            "keep": {e: dict(keys) for e, keys in self.keep},
            "drop": {e: list(keys) for e, keys in self.drop_keys},
        }

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(orjson.dumps(self.table(), option=orjson.OPT_SORT_KEYS)).hexdigest()

    def keep_for(self, name: str) -> dict[str, str]:
        """Key -> kind kept for events named ``name`` (the ``*`` entries, then its own)."""
        out: dict[str, str] = {}
        for event, keys in self.keep:
            if event in (ALL_EVENTS, name):
                out.update(keys)
        return out

    def dropped_for(self, name: str) -> frozenset[str]:
        return frozenset(
            k for event, keys in self.drop_keys if event in (ALL_EVENTS, name) for k in keys
        )

    def lists_event(self, name: str) -> bool:
        """Under ``strict``: is the event named in ``keep`` (or is ``*`` there)?"""
        return any(event in (ALL_EVENTS, name) for event, _ in self.keep)

    def shares_more_than(self, accepted: SitePolicy) -> list[str]:
        """Why this site policy would share more than ``accepted`` (empty: it does not)."""
        why: list[str] = []
        if PROFILE_MODES.index(self.profile_id) > PROFILE_MODES.index(accepted.profile_id):
            why.append(f"profile-id {accepted.profile_id} -> {self.profile_id}")
        if accepted.strict and not self.strict:
            why.append("strict turned off")
        if accepted.strict and self.strict:
            new_events = {e for e, _ in self.keep} - {e for e, _ in accepted.keep}
            if new_events and ALL_EVENTS not in {e for e, _ in accepted.keep}:
                why.append("strict lists more events: " + ", ".join(sorted(new_events)))
        old_keep = {(e, k): kind for e, keys in accepted.keep for k, kind in keys}
        for event, keys in self.keep:
            for key, kind in keys:
                if old_keep.get((event, key)) != kind:
                    why.append(f"keeps {key} ({kind}) for {event}")
        if not self.drop_events >= accepted.drop_events:
            why.append(
                "drops fewer events: " + ", ".join(sorted(accepted.drop_events - self.drop_events))
            )
        new_drop = {(e, k) for e, keys in self.drop_keys for k in keys}
        for event, dropped in accepted.drop_keys:
            for name in dropped:
                if (event, name) not in new_drop:
                    why.append(f"no longer drops {name} for {event}")
        return why


DEFAULT_SITE = SitePolicy()


def site_policy_from_table(table: Any, where: str = "[policy]") -> SitePolicy:
    """Parse a ``[policy]`` TOML table; a bad entry raises ``ValueError`` naming it."""
    if not isinstance(table, Mapping):
        raise ValueError(f"{where} must be a table")
    known = {"profile-id", "strict", "drop-events", "keep", "drop"}
    unknown = sorted(str(k) for k in table if k not in known)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(known))})"
        )
    profile = table.get("profile-id", PROFILE_KEEP)
    if profile not in PROFILE_MODES:
        raise ValueError(f"{where}.profile-id must be keep, daily-hash or drop, got {profile!r}")
    strict = table.get("strict", False)
    if type(strict) is not bool:
        raise ValueError(f"{where}.strict must be true or false")
    drop_events = table.get("drop-events", [])
    if not isinstance(drop_events, list) or not all(isinstance(e, str) for e in drop_events):
        raise ValueError(f"{where}.drop-events must be a list of event names")
    keep: list[tuple[str, _Keys]] = []
    for event, keys in _table(table.get("keep", {}), f"{where}.keep"):
        if not isinstance(keys, Mapping):
            raise ValueError(f'{where}.keep."{event}" must be a table of key = kind')
        for key, kind in keys.items():
            if kind not in KINDS:
                raise ValueError(
                    f'{where}.keep."{event}".{key} must be count, enum or identifier, got {kind!r}'
                )
        keep.append((event, tuple(sorted(keys.items()))))
    drop: list[tuple[str, tuple[str, ...]]] = []
    for event, keys in _table(table.get("drop", {}), f"{where}.drop"):
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ValueError(f'{where}.drop."{event}" must be a list of keys')
        drop.append((event, tuple(sorted(set(keys)))))
    return SitePolicy(
        keep=tuple(sorted(keep)),
        drop_events=frozenset(drop_events),
        drop_keys=tuple(sorted(drop)),
        strict=strict,
        profile_id=profile,
    )


def _table(value: Any, where: str) -> list[tuple[str, Any]]:
    if not isinstance(value, Mapping):
        raise ValueError(f'{where} must be a table of event name (or "*") = ...')
    return sorted((str(k), v) for k, v in value.items())


# ------------------------------------------------------------- daily hash


def default_key_dir() -> Path:
    return Path(platformdirs.user_state_dir("tuiaudit", appauthor=False))


class DailyKeys:
    """A random HMAC key per UTC day, never in the store (see the module docstring).

    ``directory`` None keeps the keys in memory only (one process).
    """

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._day: date | None = None
        self._key = b""

    def key(self, day: date) -> bytes:
        with self._lock:
            if day != self._day:
                self._key = self._load(day)
                self._day = day
            return self._key

    def pseudonym(self, profile_id: uuid.UUID, day: date) -> uuid.UUID:
        """HMAC-SHA256 of the id under the day's key, shaped as a UUID (version 8)."""
        digest = bytearray(hmac.digest(self.key(day), profile_id.bytes, "sha256")[:16])
        digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom
        digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
        return uuid.UUID(bytes=bytes(digest))

    def _load(self, day: date) -> bytes:
        if self.directory is None:
            return secrets.token_bytes(32)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.directory / f"daily-hash-{day.isoformat()}.key"
        # Written aside, then linked into place: link fails if another daemon on
        # this machine made today's key first, and nobody reads a half-written file.
        tmp = self.directory / f".daily-hash-{os.getpid()}-{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(secrets.token_bytes(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink(missing_ok=True)
        key = path.read_bytes()
        if len(key) != 32:
            raise ValueError(f"daily-hash key file {path} is damaged: delete it")
        for old in self.directory.glob("daily-hash-*.key"):
            if old != path:  # yesterday's key is destroyed: no following across days
                old.unlink(missing_ok=True)
        return key
