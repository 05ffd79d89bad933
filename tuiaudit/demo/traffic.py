"""Synthetic but realistic traffic for ``tuiaudit demo``, posted over the ingest API.

A handful of profiles log in, navigate, edit files and export them, from the
browser (frontend batches on ``/api/audit/events``) and from the application
server (backend events on ``/api/audit/submit``). Personal data sits where
real applications put it — emails and full names in identify-like props,
client IPs, session ids and user agents in context — so the dashboard's
"What is shared" tab has something real to remove.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from tuiaudit.timeutil import to_epoch_ms, utcnow

EVENTS_PATH = "/api/audit/events"
SUBMIT_PATH = "/api/audit/submit"

FIRST = ("Ana", "Bruno", "Chiara", "Dmitri", "Emeka", "Fatima", "Greta", "Hiroshi")
LAST = ("Silva", "Keller", "Rossi", "Ivanov", "Okafor", "Haddad", "Lind", "Tanaka")
DOMAINS = ("example.com", "studio.example.org", "acme.test", "mail.example.net")
LANGS = ("en", "es", "de", "fr", "ja", "pt-BR")
BROWSERS = (
    ("firefox", "128.0", "gecko"),
    ("chrome", "126.0", "blink"),
    ("safari", "17.5", "webkit"),
)
OSES = (("linux", "6.8"), ("macos", "14.5"), ("windows", "11"))
ROUTES = ("dashboard", "workspace", "settings", "view", "team-members")
FILE_NAMES = ("Quarterly report", "Landing page v2", "Mobile onboarding", "Design system")


@dataclass(frozen=True)
class Profile:
    id: uuid.UUID
    email: str
    fullname: str
    lang: str
    ip: str
    browser: tuple[str, str, str]
    os: tuple[str, str]
    team_id: uuid.UUID
    files: tuple[uuid.UUID, ...]


def make_profiles(rng: random.Random, count: int = 6) -> list[Profile]:
    profiles = []
    for i in range(count):
        first, last = FIRST[i % len(FIRST)], LAST[rng.randrange(len(LAST))]
        email = f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"
        profiles.append(
            Profile(
                id=uuid.UUID(int=rng.getrandbits(128), version=4),
                email=email if i % 3 else f"<mailto:{email.upper()}>",
                fullname=f"{first} {last}",
                lang=rng.choice(LANGS),
                ip=f"203.0.113.{rng.randrange(1, 255)}" if i % 2 else f"198.51.100.{i + 10}",
                browser=rng.choice(BROWSERS),
                os=rng.choice(OSES),
                team_id=uuid.UUID(int=rng.getrandbits(128), version=4),
                files=tuple(uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(3)),
            )
        )
    return profiles


@dataclass
class Request:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    events: int


class TrafficGenerator:
    """Builds requests; ``next_request()`` is pure given the RNG and the clock."""

    def __init__(self, rng: random.Random, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.rng = rng
        self.clock = clock
        self.profiles = make_profiles(rng)
        self.sessions = {
            p.id: str(uuid.UUID(int=rng.getrandbits(128), version=4)) for p in self.profiles
        }

    def _frontend_context(self, p: Profile) -> dict[str, Any]:
        name, version, engine = p.browser
        return {
            "version": "2.4.1",
            "locale": p.lang,
            "browser": name,
            "browser-version": version,
            "engine": engine,
            "os": p.os[0],
            "os-version": p.os[1],
            "screen-width": self.rng.choice((1280, 1440, 1920, 2560)),
            "screen-height": self.rng.choice((800, 900, 1080, 1440)),
            "event-origin": "workspace",
            "session": self.sessions[p.id],  # a session link: the policy removes it
            "external-session-id": f"ext-{self.sessions[p.id][:8]}",
        }

    def _backend_context(self, p: Profile) -> dict[str, Any]:
        name, version, _engine = p.browser
        return {
            "version": "2.4.1",
            "initiator": "app",
            "client-version": "2.4.1",
            "client-user-agent": f"Mozilla/5.0 ({p.os[0]}) {name}/{version}",
            "session-id": self.sessions[p.id],
            "access-token-id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
        }

    def frontend(self, p: Profile) -> Request:
        now_ms = to_epoch_ms(self.clock())
        events = []
        for _ in range(self.rng.randint(1, 4)):
            kind = self.rng.random()
            file_id = self.rng.choice(p.files)
            event: dict[str, Any]
            if kind < 0.5:
                event = {
                    "name": "navigate",
                    "type": "action",
                    "props": {
                        "route": self.rng.choice(ROUTES),
                        "file-id": str(file_id),
                        "team-id": str(p.team_id),
                        "page-id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
                        "referrer": f"https://app.example.com/#/{p.email}",
                    },
                }
            elif kind < 0.9:
                event = {
                    "name": self.rng.choice(
                        ("create-shape", "rename-layer", "add-comment", "zoom")
                    ),
                    "type": "action",
                    "props": {
                        "file-id": str(file_id),
                        "count": self.rng.randint(1, 40),
                        "layer-name": self.rng.choice(("Header", "Footer", f"{p.fullname}'s card")),
                        "is-shared": self.rng.random() < 0.3,
                    },
                }
            else:
                event = {
                    "name": "identify",
                    "type": "identify",
                    "props": {
                        "email": p.email,
                        "fullname": p.fullname,
                        "lang": p.lang,
                        "auth-backend": "oidc",
                        "is-active": True,
                    },
                }
            event["timestamp"] = now_ms - self.rng.randint(0, 4000)
            event["context"] = self._frontend_context(p)
            events.append(event)
        # Now and then a client clock from the future: the server keeps the original.
        if self.rng.random() < 0.05:
            events[0]["timestamp"] = now_ms + 7_200_000
        return Request(
            EVENTS_PATH,
            {"profile-id": str(p.id), "events": events},
            {"X-Forwarded-For": p.ip},
            len(events),
        )

    def backend(self, p: Profile) -> Request:
        kind = self.rng.random()
        event: dict[str, Any]
        if kind < 0.3:
            event = {
                "name": self.rng.choice(("login-with-password", "login-with-oidc")),
                "type": "action",
                "props": {
                    "email": p.email,
                    "fullname": p.fullname,
                    "lang": p.lang,
                    "auth-backend": "password",
                    "password": "never-stored",
                },
            }
        elif kind < 0.75:
            event = {
                "name": self.rng.choice(("update-file", "create-file", "export-file")),
                "type": "action",
                "props": {
                    "file-id": str(self.rng.choice(p.files)),
                    "project-id": str(p.team_id),
                    "revn": self.rng.randint(1, 300),
                    "name": self.rng.choice(FILE_NAMES),
                    "format": self.rng.choice(("svg", "png", "pdf")),
                },
            }
        elif kind < 0.9:
            event = {
                "name": "update-profile",
                "type": "action",
                "props": {"email": p.email, "fullname": p.fullname, "theme": "dark"},
            }
        else:
            event = {"name": "logout", "type": "action", "props": {"reason": "user"}}
        event["profile-id"] = str(p.id)
        event["ip-addr"] = p.ip
        event["context"] = self._backend_context(p)
        return Request(SUBMIT_PATH, event, {}, 1)

    def next_request(self) -> Request:
        p = self.rng.choice(self.profiles)
        return self.frontend(p) if self.rng.random() < 0.6 else self.backend(p)


@dataclass
class TrafficStats:
    requests: int = 0
    events: int = 0
    rejected: int = 0  # 4xx answers (a bug in the generator if ever non-zero)
    unavailable: int = 0  # 503 / connection errors
    statuses: dict[int, int] = field(default_factory=dict)


async def post_traffic(
    base_url: str,
    stop: asyncio.Event,
    *,
    rate: float = 5.0,
    rng: random.Random | None = None,
    session: aiohttp.ClientSession | None = None,
    sleep: Callable[[float], Awaitable[Any]] | None = None,
    stats: TrafficStats | None = None,
) -> TrafficStats:
    """POST requests at about ``rate`` per second until ``stop`` is set."""
    rng = rng or random.Random()
    gen = TrafficGenerator(rng)
    stats = stats or TrafficStats()
    own = session is None
    session = session or aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def pause(seconds: float) -> None:
        if sleep is not None:
            await sleep(seconds)
            return
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass

    try:
        while not stop.is_set():
            req = gen.next_request()
            try:
                async with session.post(
                    base_url + req.path, json=req.body, headers=req.headers
                ) as resp:
                    await resp.read()
                    stats.statuses[resp.status] = stats.statuses.get(resp.status, 0) + 1
                    if resp.status < 300:
                        stats.requests += 1
                        stats.events += req.events
                    elif resp.status == 503:
                        stats.unavailable += 1
                    else:
                        stats.rejected += 1
            except (aiohttp.ClientError, TimeoutError):
                stats.unavailable += 1
            # Bursty arrivals: exponential gaps around the mean rate.
            await pause(min(2.0, rng.expovariate(rate)) if rate > 0 else 1.0)
    finally:
        if own:
            await session.close()
    return stats
