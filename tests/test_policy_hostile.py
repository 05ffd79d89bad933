"""A hostile corpus through a real daemon (DESIGN §3.1): nothing personal reaches a receiver.

Each event exploits one hole listed in issue 11. They go through the real
HTTP ingest API of a daemon running in process on loopback, are shipped by
the real ship path to a loopback receiver, and the test decodes what the
receiver got (the project's codec for the event blobs, JSON for the instance
report): no planted string appears anywhere. ``explain`` on each full audit
row must show every removal with its rule. Both back-ends.
"""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from shipper_support import ScriptedReceiver

from tuiaudit.codec import Keyword
from tuiaudit.codec.blob import decode_envelope
from tuiaudit.config import Settings
from tuiaudit.daemon.service import running_daemon
from tuiaudit.policy import POLICY_VERSION, explain
from tuiaudit.storage.base import AuditRow

TEAM = "6f1c2a3b-4d5e-4f60-8a7b-9c0d1e2f3a4b"
PROFILE = "0190a0b1-2c3d-7e4f-8a9b-0c1d2e3f4a5b"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbmEifQ.c2lnbmF0dXJlX3NlY3JldA"
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
PUBLIC_URI = "https://adminuser:pw-secret@host.example:8443/p?k=qsecret#fragment"


@dataclass
class Hostile:
    """One attack: the event, where it is sent, what must never leave, the rules expected."""

    hole: str
    path: str  # "submit" (backend) or "events" (frontend)
    event: dict[str, Any]
    planted: tuple[str, ...]
    rules: frozenset[str]


def _b(name: str, type_: str = "action", **kw: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **kw}


CORPUS = [
    Hostile(
        "free-text event name",
        "submit",
        _b("password-reset for ana@corp.example"),
        ("ana@corp.example", "password-reset for"),
        frozenset({"unsafe-name"}),
    ),
    Hostile(
        "an IP hidden in an identifier-shaped name",
        "submit",
        _b("login-alert-10.20.30.40"),
        ("10.20.30.40",),
        frozenset({"pii-name"}),
    ),
    Hostile(
        "a 5,000-character type",
        "submit",
        _b("odd-type", "t" + "Q" * 4999),
        ("Q" * 20,),
        frozenset({"unsafe-type"}),
    ),
    Hostile(
        "prop keys, long numbers, coordinates",
        "submit",
        _b(
            "profile-updated",
            props={
                "ana@corp.example": True,
                "4915112345678": 1,
                "ａｎａ＠ｃｏｒｐ．ｅｘａｍｐｌｅ": True,
                "phone": 4915112345678,
                "card": 4111111111111111,
                "at": 1714563015123,
                "lat": 52.520008,
                "lon": 13.404954,
                "pages": 12,
            },
        ),
        ("ana@corp.example", "4915112345678", "4111111111111111", "1714563015123", "52.520008"),
        frozenset({"unsafe-key", "pii-digits", "long-number", "rounded"}),
    ),
    Hostile(
        "identify-like strings: lang, auth-backend, client email-domain, a mailbox",
        "submit",
        _b(
            "login-with-password",
            props={
                "email": "Ana Lopez <ana@x.example>",
                "lang": "ana@corp.example",
                "auth-backend": "cn=Ana Lopez,ou=people,dc=corp",
                "email-domain": "evil-client.example",
                "fullname": "Ana Lopez",
            },
        ),
        ("ana@x.example", "Ana Lopez", "ana@corp.example", "dc=corp", "evil-client", "x.example>"),
        frozenset({"email", "shape-lang", "shape-auth-backend", "email-domain-client", "identify"}),
    ),
    Hostile(
        "an address with two @",
        "submit",
        _b("login-with-oidc", props={"email": "a@b@c.example"}),
        ("b@c.example",),
        frozenset({"email-no-domain"}),
    ),
    Hostile(
        "navigate route with a query, ids that are any text",
        "events",
        _b(
            "navigate",
            props={
                "route": "/auth/recovery?token=tok-SECRET-123&email=ana@corp.example",
                "file-id": "not-a-uuid-ana-lopez",
                "page-id": "../../etc/passwd",
                "team-id": TEAM,
            },
        ),
        ("tok-SECRET-123", "ana@corp.example", "not-a-uuid", "etc/passwd"),
        frozenset({"shape-route", "shape-uuid"}),
    ),
    Hostile(
        "backend context values: user agent, version, initiator",
        "submit",
        _b(
            "file-opened",
            context={
                "client-user-agent": f"{FIREFOX} ana@corp.example token={JWT}",
                "version": "Ana Lopez 555-0100",
                "client-version": "2.1.0",
                "initiator": "https://adminuser:pw@x.example/?k=v",
            },
        ),
        ("ana@corp.example", JWT[:20], "555-0100", "adminuser", "Gecko"),
        frozenset({"user-agent", "shape-version", "shape-plain"}),
    ),
    Hostile(
        "frontend context values",
        "events",
        _b(
            "clicked",
            context={
                "os": "Linux hostname=ana-laptop",
                "browser": "ａｎａ＠ｃｏｒｐ．ｅｘａｍｐｌｅ",
                "locale": "en_US@ana",
                "screen-width": "1920; ana",
                "event-origin": "ana.lopez@corp.example",
                "browser-version": "124.0.0.0",
                "os-version": "10.15.7",
                "device-type": "desktop",
            },
        ),
        ("ana-laptop", "ana@corp.example", "en_US@ana", "1920; ana", "ana.lopez"),
        frozenset({"shape-plain", "shape-lang", "shape-number"}),
    ),
    Hostile(
        "a client-submitted instance-start",
        "submit",
        _b(
            "instance-start",
            "trigger",
            props={
                "version": "1.0",
                "flags": ["ana@corp.example"],
                "public-uri": "https://adminuser:pw@evil.example/?k=qsecret",
                "nested": {"addr": "ana@corp.example", "key": "sk_live_4eC39HqLyjWDarjtT1zdp7dc"},
            },
        ),
        ("ana@corp.example", "evil.example", "qsecret", "sk_live"),
        frozenset({"generic", "nested"}),
    ),
]
# The daemon's own public-uri (its instance-start passes through, reduced).
DAEMON_PLANTED = ("adminuser", "pw-secret", "qsecret", "fragment", "/p?")


def _strings(value: Any) -> Iterator[str]:
    """Every string and number in a decoded value, keys included, as text."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, Keyword):
        yield f"{value.namespace or ''}/{value.name}"
    elif value is not None:
        yield str(value)


async def _until(predicate: Any) -> None:
    """Bound a wait on the daemon's own loops (a hang guard, not a timing check)."""
    async with asyncio.timeout(60):
        while not await predicate():  # noqa: ASYNC110 - polling the store
            await asyncio.sleep(0.05)


async def _ship_now(daemon: Any) -> None:
    cmd = await daemon.store.enqueue_command("ship-now")

    async def done() -> bool:
        c = await daemon.store.get_command(cmd)
        return c is not None and c.status in ("done", "failed")

    await _until(done)
    result = await daemon.store.get_command(cmd)
    assert result is not None and result.status == "done", result


async def test_hostile_corpus_leaves_nothing_personal_in_what_a_receiver_gets(
    store_url: str,
) -> None:
    receiver = ScriptedReceiver()
    async with receiver.serve():
        settings = Settings(
            store=store_url,
            listen="127.0.0.1:0",
            flags=("audit-log", "telemetry"),
            telemetry_uri=receiver.url,
            accept_policy=POLICY_VERSION,
            public_uri=PUBLIC_URI,
            jitter=0,
        )
        async with running_daemon(settings) as daemon, aiohttp.ClientSession() as client:
            base = f"http://127.0.0.1:{daemon.port}/api/audit"
            for h in CORPUS:
                body: dict[str, Any] = {"events": [h.event]}
                if h.path == "events":
                    body["profile-id"] = PROFILE
                    body["events"] = [{**h.event, "timestamp": "2099-01-01T00:00:00Z"}]
                async with client.post(f"{base}/{h.path}", json=body) as resp:
                    assert resp.status in (200, 202, 204), (h.hole, await resp.text())
            await _ship_now(daemon)
            async with client.get(f"http://127.0.0.1:{daemon.port}/metrics") as resp:
                metrics = await resp.text()
            full_rows = [
                r
                for r in await daemon.store.fetch_rows_after(None, limit=1000)
                if r.source in ("backend", "frontend")
            ]
            drops = await daemon.store.drop_counts()

    # --- what the receiver got: every body, decoded
    texts: list[str] = []
    events: list[dict[Keyword, Any]] = []
    reports = receiver.report_requests()
    assert reports, "the instance report was sent"
    for rec in receiver.requests:
        if rec.json.get("type") == "telemetry-events":
            decoded = decode_envelope(rec.body)
            events += decoded["events"]
            texts += _strings(decoded)
        else:
            texts.append(rec.body.decode())
    everything = "\n".join(texts)
    normalised = unicodedata.normalize("NFKC", everything)
    for h in CORPUS:
        for planted in h.planted:
            assert planted not in everything and planted not in normalised, (h.hole, planted)
    for planted in DAEMON_PLANTED:
        assert planted not in normalised, ("daemon public-uri", planted)

    # What §3 keeps still ships: the daemon's origin, the navigate UUID as a string,
    # the e-mail's domain, a realistic browser version, the reduced user agent.
    by_name = {str(e[Keyword("name")]): e for e in events}
    starts = [e for e in events if e[Keyword("name")] == "instance-start"]
    assert len(starts) == 2  # the daemon's own and the client's
    (own,) = [e for e in starts if e[Keyword("props")]]
    assert own[Keyword("props")][Keyword("public-uri")] == "https://host.example:8443"
    nav = by_name["navigate"][Keyword("props")]
    assert nav == {Keyword("team-id"): TEAM}
    login = by_name["login-with-password"][Keyword("props")]
    assert login == {Keyword("email-domain"): "x.example"}
    ctx = by_name["clicked"][Keyword("context")]
    assert ctx[Keyword("browser-version")] == "124.0.0.0"
    assert ctx[Keyword("os-version")] == "10.15.7"
    assert by_name["file-opened"][Keyword("context")] == {
        Keyword("client-user-agent"): "Firefox 133 / Linux",
        Keyword("client-version"): "2.1.0",
    }
    updated = by_name["profile-updated"][Keyword("props")]
    assert updated == {Keyword("lat"): 52.52, Keyword("lon"): 13.4, Keyword("pages"): 12}
    for withheld in ("odd-type", "login-alert-10.20.30.40"):
        assert withheld not in by_name
    assert drops["unsafe-name"] == 1 and drops["unsafe-type"] == 1 and drops["pii-scan"] == 1
    # Each removal is counted by rule, and the daemon says so (GET /metrics).
    for rule in ("unsafe-key", "long-number", "shape-route", "user-agent"):
        assert f'tuiaudit_policy_changes_total{{rule="{rule}"}}' in metrics, rule

    # --- explain shows every removal with its rule (on the full audit rows)
    for h in CORPUS:
        row = _row_of(full_rows, h)
        ex = explain(row)
        rules = {c.rule_id for c in ex.changes}
        assert h.rules <= rules, (h.hole, sorted(rules))
        for c in ex.changes:
            assert c.rule, c


def _row_of(rows: list[AuditRow], h: Hostile) -> AuditRow:
    matches = [r for r in rows if r.name == h.event["name"] and r.type == h.event["type"]]
    if h.event["name"] == "instance-start":  # the client's one, not the daemon's own
        matches = [r for r in matches if "nested" in r.props]
    assert len(matches) == 1, (h.hole, len(matches))
    return matches[0]


def test_corpus_covers_every_hole_of_issue_11() -> None:
    holes = " | ".join(h.hole for h in CORPUS)
    for word in (
        "name",
        "type",
        "keys",
        "numbers",
        "lang",
        "email-domain",
        "navigate",
        "user agent",
        "frontend context",
        "instance-start",
    ):
        assert word in holes, word
    assert uuid.UUID(TEAM)  # the one navigate id that ships is a real UUID
