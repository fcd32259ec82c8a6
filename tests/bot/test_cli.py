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
    assert output.lstrip().startswith("loading…"), "a cold start says something at once"
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
    assert "0 uploaded files in the database" in output  # [files]: shared by every replica
    assert "page events" in output and "this process only" in output  # SQLite: one process
    fake_sglang.behave(reasoning="inline")
    code, output = run(env, "doctor")
    assert "<think> is stripped" in output


def test_doctor_reports_an_unreachable_model_server(env: dict[str, str]) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = f"http://127.0.0.1:{closed_port()}/v1"
    code, output = run(env, "doctor")
    assert code == 1, output  # configured but unreachable: a failed check
    assert "unreachable" in output and "retrieval-only" in output


def test_doctor_fails_when_the_configured_model_is_not_served(
    env: dict[str, str], fake_sglang: FakeSGLang
) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = fake_sglang.base_url
    env["TEAMBOT_LLM__MODEL"] = "Qwen/Qwen2.5-7B-Instruct"
    code, output = run(env, "doctor")
    assert code == 1, output
    assert "'Qwen/Qwen2.5-7B-Instruct' is not served" in output
    assert "DeepSeek-R1-Distill-Qwen-7B" in output  # what it does serve


def test_doctor_shows_the_servers_limits_and_how_thinking_is_decided(
    env: dict[str, str], fake_sglang: FakeSGLang
) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = fake_sglang.base_url
    fake_sglang.behave(flavour="llamacpp", context=4096, slots=2, reasoning="none")
    fake_sglang.behave(model="acme/reasoning-r1")  # a name that says nothing
    code, output = run(env, "doctor")
    assert code == 0, output
    assert "llama.cpp: context 4096 tokens · 2 at once" in " ".join(output.split())
    assert "thinking: plain (the server's chat template)" in " ".join(output.split())


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


def test_sources_lists_runs_from_the_catalog(env: dict[str, str], tmp_path: Path) -> None:
    env["COLUMNS"] = "200"
    code, output = run(env, "sources")  # a fresh folder: no database yet, nothing created
    assert code == 0, output
    assert "no knowledge sources yet" in output
    assert not (tmp_path / "data").exists()
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "printers.md").write_text("# Printers\n\nThe third-floor printer is called Ada-3.\n")
    assert run(env, "ingest", str(docs))[0] == 0
    code, output = run(env, "sources")
    assert code == 0, output
    row = next(line for line in output.splitlines() if "handbook" in line)
    # a folder added with `ingest` is a source the scheduler refreshes (#13): it has a next run
    assert "directory" in row and "ok" in row and "not configured" not in row


def test_sources_add_without_a_server_knows_the_platforms_kinds(env: dict[str, str]) -> None:
    """In the CLI's own process too, a Feishu wiki is a kind teambot reads: it is registered,
    and its first run says what the Feishu app lacks (not "unknown kind")."""
    env["COLUMNS"] = "300"
    link = "https://acme.feishu.cn/wiki/wikcnA1b2C3"
    code, output = run(env, "sources", "add", "wiki", "feishu_wiki", link)
    assert "unknown knowledge source kind" not in output, output
    assert "registered source wiki (feishu_wiki wikcnA1b2C3" in output
    assert code == 1 and "TEAMBOT_FEISHU__APP_SECRET" in output, output


@pytest.mark.parametrize(
    ("platform", "named"),
    [
        ("SLACK", "TEAMBOT_SLACK__BOT_TOKEN"),
        ("FEISHU", "TEAMBOT_FEISHU__APP_SECRET"),
        ("DINGTALK", "TEAMBOT_DINGTALK__CLIENT_SECRET"),
    ],
)
def test_platform_enabled_without_credentials_is_one_clear_row(
    env: dict[str, str], platform: str, named: str
) -> None:
    env[f"TEAMBOT_{platform}__ENABLED"] = "true"
    env["TEAMBOT_LLM__ENABLED"] = "false"
    env["COLUMNS"] = "400"
    code, output = run(env, "doctor")
    assert code == 1, output
    row = next(line for line in output.splitlines() if f"{platform.lower()}: settings" in line)
    assert row.startswith("error") and named in row
    assert f"[{platform.lower()}] enabled = false" in row
    assert "Traceback" not in output and "SLACK_BOT_TOKEN" not in output.replace(named, "")
    code, output = run(env, "serve", "--port", str(closed_port()))
    assert code == 2, output
    assert named in output and "Traceback" not in output


def test_doctor_names_the_config_file_it_read(env: dict[str, str], tmp_path: Path) -> None:
    env["TEAMBOT_LLM__ENABLED"] = "false"
    env["COLUMNS"] = "300"
    code, output = run(env, "doctor")
    assert "defaults + environment" in output and "teambot init" in output
    (tmp_path / "teambot.toml").write_text("[log]\nlevel = 'INFO'\n")
    code, output = run(env, "doctor")
    assert code == 0, output
    assert str((tmp_path / "teambot.toml").resolve()) in output
    assert "defaults + environment" not in output


def test_doctor_hints_at_a_missing_v1(env: dict[str, str], fake_sglang: FakeSGLang) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = fake_sglang.base_url.removesuffix("/v1")
    env["COLUMNS"] = "400"
    _, output = run(env, "doctor")
    assert "unreachable" in output and "404" in output
    assert f"try {fake_sglang.base_url}" in output


def test_ask_prints_warnings_as_one_tidy_line_after_the_answer(
    env: dict[str, str], fake_sglang: FakeSGLang
) -> None:
    env["TEAMBOT_LLM__BASE_URL"] = fake_sglang.base_url
    fake_sglang.behave(reasoning="none", answer="Open the VPN client [1] and press Reset now.")
    fake_sglang.behave(error_after_tokens=4, error_message="CUDA error:\n  out of memory")
    code, output = run(env, "ask", "How do I reset my VPN connection?")
    assert code == 0, output
    lines = output.splitlines()
    ended = next(i for i, line in enumerate(lines) if line.startswith("interrupted"))
    warnings = [i for i, line in enumerate(lines) if line.startswith("warning ")]
    assert warnings and min(warnings) > ended, output  # after the answer, not inside it
    assert "WARNING" not in output and "engine.conversation" not in output
    assert len(warnings) == 1 and "model stream ended early" in lines[warnings[0]]
    assert lines[warnings[0]].endswith("…") and warnings[0] == len(lines) - 1  # one line
