"""The hold `teambot serve` takes on an embedded data folder, which the CLI uses to find it."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.knowledge_ops.admin import Holder, find_server


def test_one_server_holds_a_folder_and_the_cli_finds_it(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    assert find_server(folder) is None  # no server ever ran: the CLI works in-process
    holder = Holder.take(folder, 8123)
    try:
        found = find_server(folder)
        assert found is not None and found.url == "http://127.0.0.1:8123"
        assert found.token == holder.token and len(found.token) >= 40
        assert (folder / "server.json").stat().st_mode & 0o077 == 0  # owner only
        with pytest.raises(RuntimeError, match="another teambot server"):
            Holder.take(folder, 8124)  # a second server on the same folder refuses to start
    finally:
        holder.release()
    assert find_server(folder) is None  # released (a killed server releases it too)
    assert not (folder / "server.json").exists()
