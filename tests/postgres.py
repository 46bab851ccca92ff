"""A throwaway PostgreSQL server on 127.0.0.1 for tests and benchmarks: initdb in a temporary
folder, a free port, trust authentication, stopped by its pid (as the postgres user when run as
root, since PostgreSQL refuses to run as root). The server binaries come from Debian's
postgresql package (scripts/install_system_packages.sh)."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Server:
    """Where the throwaway server listens, as a libpq connection string's parts."""

    port: int
    user: str

    def dsn(self, dbname: str) -> str:
        """A libpq key=value connection string for ``dbname`` (no password: trust authentication)."""
        return f"dbname={dbname} host=127.0.0.1 port={self.port} user={self.user}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_binaries() -> Path:
    """The folder holding initdb and postgres; RuntimeError when PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found and not shutil.which("initdb"):
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql "
                           "(scripts/install_system_packages.sh, as .ci/run does)")
    return Path(found[-1]).parent if found else Path(shutil.which("initdb")).parent


@contextmanager
def throwaway_postgres(databases: tuple[str, ...] = (), user: str = "flywheel",
                       settings: dict[str, str] | None = None) -> Iterator[Server]:
    """Start a PostgreSQL server with ``databases`` created, yield where it listens, stop it by pid
    (fast shutdown) and delete its folder."""
    import psycopg2

    binaries, port = server_binaries(), free_port()
    folder = Path(tempfile.mkdtemp(prefix="flywheel-pg-"))
    owner = {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}
    if owner:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    subprocess.run([binaries / "initdb", "-D", data, "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync"],
                   check=True, capture_output=True, cwd=folder, **owner)
    options = {"listen_addresses": "127.0.0.1", "fsync": "off", **(settings or {})}
    server = subprocess.Popen([binaries / "postgres", "-D", data, "-p", str(port), "-k", folder,
                               *[arg for name, value in options.items() for arg in ("-c", f"{name}={value}")]],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder, **owner)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = psycopg2.connect(host="127.0.0.1", port=port, user=user, dbname="postgres")
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start") from None
                time.sleep(0.2)
                continue
            conn.autocommit = True
            for name in databases:
                conn.cursor().execute(f'CREATE DATABASE "{name}"')
            conn.close()
            break
        yield Server(port=port, user=user)
    finally:
        os.kill(server.pid, signal.SIGINT)  # fast shutdown: disconnects clients, then exits
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
