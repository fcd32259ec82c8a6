"""The `teambot` command line, run in-process on a tmp folder against the fake SGLang."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import cli
from tests.fakes.sglang import FakeSGLang


@pytest.fixture
def env(tmp_path: Path, sample_index: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A working folder whose knowledge base is a copy of the indexed sample handbook."""
    for name in list(os.environ):
        if name.startswith("TEAMBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(sample_index, tmp_path / "chroma")
    return {
        "TEAMBOT_KNOWLEDGE__PERSIST_DIR": str(tmp_path / "chroma"),
        "TEAMBOT_KNOWLEDGE__COLLECTION": "test-kb",
        "TEAMBOT_CONVERSATION__UPDATE_INTERVAL": "0.05",
    }


def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env=env)
    return result.exit_code, result.output


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_init_writes_a_sample_config_once(env: dict[str, str], tmp_path: Path) -> None:
    code, output = run(env, "init")
    assert code == 0 and (tmp_path / "teambot.toml").exists()
    assert "[llm]" in (tmp_path / "teambot.toml").read_text()
    code, output = run(env, "init")
    assert code == 1 and "--force" in output


def test_ask_without_a_model_server_answers_from_retrieval(env: dict[str, str]) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = f"http://127.0.0.1:{closed_port()}/v1"
    code, output = run(env, "ask", "How many days of annual leave do I get?")
    assert code == 0, output
    assert "Retrieval-only answer" in output
    assert "leave-policy.md" in output
    assert "retrieval_only" in output


def test_ask_streams_a_model_answer_with_sources(
    env: dict[str, str], fake_sglang: FakeSGLang
) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = fake_sglang.base_url
    fake_sglang.behave(reasoning_text="PRIVATE-THOUGHTS")
    code, output = run(env, "ask", "How do I reset my VPN connection?")
    assert code == 0, output
    assert "Sources" in output and "vpn.md" in output
    assert "answered" in output
    assert "PRIVATE-THOUGHTS" not in output


def test_doctor_reports_the_model_server(env: dict[str, str], fake_sglang: FakeSGLang) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = fake_sglang.base_url
    code, output = run(env, "doctor")
    assert code == 0, output
    assert "DeepSeek-R1-Distill" in output and "reasoning separated" in output
    fake_sglang.behave(reasoning="inline")
    code, output = run(env, "doctor")
    assert "<think> is stripped" in output


def test_doctor_reports_an_unreachable_model_server(env: dict[str, str]) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = f"http://127.0.0.1:{closed_port()}/v1"
    code, output = run(env, "doctor")
    assert code == 0, output
    assert "unreachable" in output and "retrieval-only" in output


def test_ingest_reports_progress_and_skipped_files(env: dict[str, str], tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "printers.md").write_text("# Printers\n\nThe third-floor printer is called Ada-3.\n")
    (docs / "broken.md").write_bytes(b"\xff\xfe\x00\x00" + bytes(range(256)) * 4)
    code, output = run(env, "ingest", str(docs))
    assert code == 0, output
    assert "registered source docs" in output  # a source now, refreshed on its schedule
    assert "1 added" in output and "1 failed" in output
    assert "broken.md" in output
    code, output = run(env, "ingest", str(docs))
    assert "1 unchanged" in output
    code, output = run(env, "refresh", "docs")  # `teambot refresh` knows it like any source
    assert code == 0 and "1 unchanged" in output, output
    code, output = run({**env, "COLUMNS": "240"}, "sources")
    assert code == 0 and "docs" in output and "added at run time" in output, output
    code, output = run(env, "sources", "remove", "docs")
    assert code == 0 and "removed source docs: 2 documents, 1 chunks" in output, output


def test_wrong_config_value_stops_with_the_key_and_fix(env: dict[str, str]) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = "gpu-box:30000"
    code, output = run(env, "ask", "hello")
    assert code == 2
    assert "[llm] base_url = 'gpu-box:30000'" in output
    assert "TEAMBOT_LLM__BASE_URL" in output


def test_db_upgrade_and_current(env: dict[str, str]) -> None:
    from bot.db import head

    code, output = run(env, "db", "upgrade")
    assert code == 0 and head() in output
    code, output = run(env, "db", "current")
    assert code == 0 and head() in output


def test_unreachable_database_is_one_clear_line(env: dict[str, str]) -> None:
    env["TEAMBOT_STORAGE__URL"] = f"postgresql+asyncpg://teambot@127.0.0.1:{closed_port()}/teambot"
    code, output = run(env, "doctor")
    assert code == 1
    assert "cannot start" in output and "127.0.0.1:" in output
    assert "Traceback" not in output
