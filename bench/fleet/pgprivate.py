"""The fleet's own PostgreSQL: initdb into a temporary directory, run on a free port.

Why not the machine's server: other people run tests against it, and the fleet
restarts its server on purpose (DESIGN §7's several daemons on one store, through
a PostgreSQL restart). A private instance is restarted with ``pg_ctl restart``
and disturbs nobody. It listens on loopback (the proxies in the root namespace
connect there) and on the db bridge's address, trust auth for loopback and the
bridge subnet only.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

PG_BIN = Path(os.environ.get("TUIAUDIT_FLEET_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"  # initdb refuses to run as root


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    if not (PG_BIN / "initdb").exists():
        return f"no PostgreSQL server binaries in {PG_BIN}"
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        return f"no {PG_USER} system user to run a private PostgreSQL as"
    return None


class PrivatePostgres:
    def __init__(self, root: Path, *, listen: str, subnet: str) -> None:
        self.dir = root / "pgdata"
        self.sock = root / "pgsock"
        self.log = root / "postgres.log"
        self.listen = listen
        self.subnet = subnet
        self.port = free_port()

    def _as_pg(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["runuser", "-u", PG_USER, "--", *argv], check=check, capture_output=True, text=True
        )

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._as_pg(
            str(PG_BIN / "pg_ctl"), "-D", str(self.dir), "-l", str(self.log), "-w", "-t", "60",
            *args, check=check,
        )  # fmt: skip

    def start(self) -> None:
        ent = pwd.getpwnam(PG_USER)
        os.chown(self.dir.parent, ent.pw_uid, ent.pw_gid)  # initdb makes pgdata in it
        self.sock.mkdir()
        os.chown(self.sock, ent.pw_uid, ent.pw_gid)
        self.log.touch()
        os.chown(self.log, ent.pw_uid, ent.pw_gid)
        self._as_pg(
            str(PG_BIN / "initdb"), "-D", str(self.dir), "-U", "postgres", "--auth=trust",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        with open(self.dir / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1,{self.listen}'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.sock}'\n"
                "max_connections = 200\n"
                "shared_buffers = 32MB\n"
                "fsync = on\n"  # a restart must not lose committed rows: keep durability on
                # A peer that vanished (a partitioned host's proxied session) is
                # noticed and its advisory locks freed, as on a real network.
                "tcp_keepalives_idle = 5\ntcp_keepalives_interval = 2\n"
                "tcp_keepalives_count = 3\ntcp_user_timeout = 10000\n"
            )
        with open(self.dir / "pg_hba.conf", "w") as hba:
            hba.write(
                "local all all trust\n"
                "host all all 127.0.0.1/32 trust\n"
                f"host all all {self.subnet} trust\n"
            )
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        if (self.dir / "postmaster.pid").exists():
            self._ctl("stop", "-m", "immediate", check=False)

    def dsn(self, db: str = "postgres", host: str = "127.0.0.1", port: int | None = None) -> str:
        return f"postgresql://postgres@{host}:{port or self.port}/{db}"

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def cleanup_leftovers(parent: Path, prefix: str) -> None:
    """Stop and remove the private instances of crashed runs (``parent/prefix*/pgdata``)."""
    for data in parent.glob(f"{prefix}*/pgdata"):
        if (data / "postmaster.pid").exists():
            subprocess.run(
                ["runuser", "-u", PG_USER, "--", str(PG_BIN / "pg_ctl"), "-D", str(data),
                 "stop", "-m", "immediate"],
                check=False, capture_output=True,
            )  # fmt: skip
        shutil.rmtree(data.parent, ignore_errors=True)
