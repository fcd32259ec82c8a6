"""`teambot serve` in a child process for the benchmarks that measure it from outside."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.e2e.test_serve import free_port


@contextmanager
def teambot_serve(
    workdir: Path, env: dict[str, str], *, within: float
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start `teambot serve` in `workdir` (its output in serve.log), wait until /readyz says
    ready (at most `within` seconds; the log's tail when it exits first), yield its URL and
    process, and stop it after."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with (workdir / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + within
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, (workdir / "serve.log").read_text()[-2000:]
                time.sleep(0.5)
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=60)
