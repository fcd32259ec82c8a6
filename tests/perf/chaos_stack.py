"""The chaos benchmark's own infrastructure (tests/perf/test_chaos.py): a PostgreSQL cluster,
a redis-server and a Chroma server started for it on free ports in temporary folders, each of
which a fault can stop and start again. The machine's shared PostgreSQL and Redis are never
touched."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import closed_port

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class Postgres:
    """A PostgreSQL cluster of our own: initdb in a temporary folder, trust auth, a free port."""

    def __init__(self) -> None:
        if not PG_BIN:
            pytest.skip("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
        self.bin = PG_BIN[-1]
        self.root = Path(tempfile.mkdtemp(prefix="teambot-chaos-pg-"))
        self.port = closed_port()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self.data = self.root / "data"
        subprocess.run(
            _as_postgres([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres",
                          "--auth=trust", "-E", "UTF8"]),
            check=True, capture_output=True,
        )  # fmt: skip

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        subprocess.run(
            _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l",
                          str(self.root / "log"), "-o", options, "-w", *args]),
            check=True, capture_output=True,
        )  # fmt: skip

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def create(self, database: str) -> None:
        subprocess.run(
            _as_postgres([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port),
                          "-U", "postgres", database]),
            check=True, capture_output=True,
        )  # fmt: skip

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.ctl("stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class Service:
    """A server process we can stop and start again on the same port."""

    def __init__(self, name: str, command: list[str], folder: Path) -> None:
        self.name, self.command, self.folder = name, command, folder
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.folder / f"{self.name}.log").open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_http(url: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up in {within} s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """PostgreSQL, Redis and Chroma of our own, for every fault."""
    folder = tmp_path_factory.mktemp("chaos")
    postgres = Postgres()
    postgres.ctl("start")
    redis_port, chroma_port = closed_port(), closed_port()
    redis = Service(
        "redis",
        ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no"],
        folder,
    )  # fmt: skip
    chroma = Service(
        "chroma",
        [str(Path(sys.executable).with_name("chroma")), "run", "--path", str(folder / "chroma"),
         "--host", "127.0.0.1", "--port", str(chroma_port)],
        folder,
    )  # fmt: skip
    redis.start()
    chroma.start()
    try:
        wait_http(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat")
        yield {
            "postgres": postgres,
            "redis": redis,
            "redis_url": f"redis://127.0.0.1:{redis_port}/0",
            "chroma": chroma,
            "chroma_url": f"http://127.0.0.1:{chroma_port}",
            "folder": folder,
        }
    finally:
        chroma.stop()
        redis.stop()
        postgres.destroy()
