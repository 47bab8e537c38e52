"""A throwaway PostgreSQL server for the tests, on a free loopback port.

Started from the installed binaries (``initdb`` and ``pg_ctl`` on PATH or under
``/usr/lib/postgresql/*/bin``). ``initdb`` refuses to run as root, so as root the server runs
as the ``postgres`` user, in a directory of its own. Without the binaries the tests that need
it are skipped, saying so.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Any

__all__ = ["PostgresServer", "find_binaries"]


def find_binaries() -> str | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or ``None``."""
    initdb = shutil.which("initdb")
    if initdb is not None:
        directory = os.path.dirname(os.path.realpath(initdb))
        if os.path.exists(os.path.join(directory, "pg_ctl")):
            return directory
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(os.path.join(directory, "initdb")):
            return directory
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    """One PostgreSQL cluster: ``start()``, ``dsn(db)``, ``restart()``, ``stop()``."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = _free_port()
        self.root = tempfile.mkdtemp(prefix="aiorunlist-pg-")
        self.data = os.path.join(self.root, "data")
        self.log = os.path.join(self.root, "server.log")
        self._user: str | None = None
        self._databases = 0
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam("postgres")
            os.chmod(self.root, 0o700)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)

    def _run(self, *args: str) -> None:
        kwargs: dict[str, Any] = {"user": self._user} if self._user is not None else {}
        result = subprocess.run(  # noqa: S603 - the installed PostgreSQL tools, fixed arguments
            [os.path.join(self.bindir, args[0]), *args[1:]],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=self.root,
            **kwargs,
        )
        if result.returncode != 0:
            log = ""
            if os.path.exists(self.log):
                with open(self.log, encoding="utf-8", errors="replace") as file:
                    log = file.read()[-2000:]
            raise RuntimeError(f"{' '.join(args)} failed: {result.stderr}{result.stdout}\n{log}")

    def _options(self) -> str:
        # fsync off: a killed server loses nothing the OS holds, only a machine crash would.
        # synchronous_commit stays on: a restart must not forget commits it acknowledged.
        return (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off"
        )

    def start(self) -> None:
        self._run(
            "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-instructions",
        )
        self._run("pg_ctl", "-D", self.data, "-l", self.log, "-o", self._options(), "-w", "start")

    def restart(self) -> None:
        """``pg_ctl restart -m immediate``: every connection is cut at once."""
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            self.log,
            "-o",
            self._options(),
            "-m",
            "immediate",
            "-w",
            "restart",
        )

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        self._databases += 1
        name = f"test_{self._databases}"
        self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-q",
            "-c",
            f"CREATE DATABASE {name}",
        )
        return self.dsn(name)
