"""``python -m tuiaudit`` with a shorter shipper lease: ``_daemon.py TTL daemon --store …``.

Only the lease TTL differs from the real command. After a kill -9, SQLite's
lease row keeps other shippers out for one TTL (30 s by design); a kill loop
with dozens of kills would spend most of its time waiting for it.
"""

from __future__ import annotations

import sys
from typing import Any

from tuiaudit.daemon import shipper

TTL = float(sys.argv[1])
_init = shipper.Shipper.__init__


def _short_lease_init(self: shipper.Shipper, *args: Any, **kw: Any) -> None:
    kw.setdefault("lease_ttl_s", TTL)
    _init(self, *args, **kw)


shipper.Shipper.__init__ = _short_lease_init  # type: ignore[method-assign]

if __name__ == "__main__":
    from tuiaudit.cli import main

    sys.exit(main(sys.argv[2:]))
