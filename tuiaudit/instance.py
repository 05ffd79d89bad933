"""Instance identity (DESIGN §4): a random id created once per store, and the start event."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from tuiaudit.policy_shapes import uri_origin
from tuiaudit.storage.base import Store

INSTANCE_ID_KEY = "instance-id"
INSTANCE_START = "instance-start"


async def get_instance_id(store: Store) -> uuid.UUID:
    """The store's ``instance-id``, created on first use; every later call reuses it.

    ``ensure_property`` is race-safe, so daemons starting together agree.
    """
    value = await store.ensure_property(INSTANCE_ID_KEY, str(uuid.uuid4()))
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ValueError(
            f"the store's {INSTANCE_ID_KEY} property is not a UUID ({len(str(value))} chars); "
            f"delete it (server properties table) so a new one is created"
        ) from None


def instance_start_event(
    *, version: str, flags: Sequence[str], public_uri: str | None
) -> dict[str, Any]:
    """The backend ``trigger`` event submitted at every daemon start (``submit_own``).

    ``public-uri`` is reduced to ``scheme://host[:port]`` (DESIGN §3.1): user
    info, path, query and fragment of the configured URI never enter the event.
    """
    props: dict[str, Any] = {"version": version, "flags": list(flags)}
    origin = uri_origin(public_uri) if public_uri else None
    if origin is not None:
        props["public-uri"] = origin
    return {"name": INSTANCE_START, "type": "trigger", "props": props}
