"""A throwaway redis-server for the tests, on a free loopback port, that a test can kill.

Started from the installed ``redis-server`` (``apt-get install redis-server``) in a directory
of its own: without persistence by default, or with an append-only file written on every
command (``aof=True``, ``appendfsync always``) so that a server killed with SIGKILL and
restarted on the same port and directory comes back with every acknowledged write. Without
the binary the tests that need it are skipped, saying so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

__all__ = ["RedisServer"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process: :meth:`start`, :meth:`kill` (SIGKILL), :meth:`restart`,
    :attr:`url`.

    ``aof=True`` persists every write (``appendonly yes``, ``appendfsync always``) in
    :attr:`directory`; :meth:`restart` then brings the data back, or starts empty with
    ``empty=True``.
    """

    def __init__(self, *, aof: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (apt-get install redis-server)")
        self.binary = binary
        self.aof = aof
        self.port = _free_port()
        self.directory = tempfile.TemporaryDirectory(prefix="aiorunlist-redis-")
        self.process: subprocess.Popen[bytes] | None = None
        self._extra: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, *extra: str) -> None:
        """Start the server (``extra``: more command-line settings) and wait for its PONG."""
        if self.running:
            raise RuntimeError("redis-server is already running")
        self._extra = extra
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else []
        command = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            *persistence,
            "--dir",
            self.directory.name,
            *extra,
        ]
        self.process = subprocess.Popen(  # noqa: S603 - the installed server, fixed arguments
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")

    def kill(self) -> None:
        """SIGKILL the server and wait for it to be gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self, *, empty: bool = False) -> None:
        """Kill the server if it runs (SIGKILL) and start it again on the same port and
        directory, with the same settings: its data is back when it had ``aof=True``, unless
        ``empty`` (the directory is emptied first: a server that lost everything)."""
        self.kill()
        if empty:
            for name in os.listdir(self.directory.name):
                path = os.path.join(self.directory.name, name)
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
        self.start(*self._extra)

    def close(self) -> None:
        self.kill()
        self.directory.cleanup()
