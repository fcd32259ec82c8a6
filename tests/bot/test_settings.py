from __future__ import annotations

import re
import tomllib
from importlib.resources import files
from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, _secret_paths, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("TEAMBOT_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_defaults_without_a_file() -> None:
    settings = load_settings()
    assert settings.llm.base_url == "http://127.0.0.1:30000/v1"
    assert settings.storage.url == "sqlite+aiosqlite:///./data/teambot.db"


def test_file_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "custom.toml"
    config.write_text('[llm]\nbase_url = "http://gpu:30000/v1"\nmodel = "r1"\n')
    settings = load_settings(config)
    assert (settings.llm.base_url, settings.llm.model) == ("http://gpu:30000/v1", "r1")
    monkeypatch.setenv("TEAMBOT_LLM__BASE_URL", "http://other:1/v1")
    settings = load_settings(config)
    assert settings.llm.base_url == "http://other:1/v1"
    assert settings.llm.model == "r1"  # the rest of the section still comes from the file


def test_a_retired_key_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "old.toml"
    config.write_text("[conversation]\nupdate_interval = 1.0\nhistory_turns = 3\n")
    settings = load_settings(config)
    assert settings.conversation.history_turns == 3
    assert "[conversation] update_interval is no longer used" in caplog.text
    config.write_text("[conversation]\nupdate_intervall = 1.0\n")
    with pytest.raises(ConfigError, match="unknown key"):  # a misspelt key still fails
        load_settings(config)


def test_config_path_from_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "teambot.toml").write_text("[server]\nport = 9001\n")
    assert load_settings().server.port == 9001
    other = tmp_path / "other.toml"
    other.write_text("[server]\nport = 9002\n")
    monkeypatch.setenv("TEAMBOT_CONFIG", str(other))
    assert load_settings().server.port == 9002


def test_wrong_value_names_key_value_and_allowed(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[llm]\nbase_url = "gpu-box:30000"\ninstructions_as = "assistant"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(config)
    message = str(raised.value)
    assert "[llm] base_url = 'gpu-box:30000'" in message
    assert "https?://" in message
    assert "TEAMBOT_LLM__BASE_URL" in message
    assert "'system' or 'user'" in message


def test_wrong_env_value_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEAMBOT_SERVER__PORT", "99999")
    with pytest.raises(
        ConfigError, match=r"\[server\] port = '99999'.*less than or equal to 65535"
    ):
        load_settings()


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[llm]\nbase_ulr = 'http://x/v1'\n")
    with pytest.raises(ConfigError, match="base_ulr: unknown key"):
        load_settings(config)


def test_secret_in_file_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "secret.toml"
    config.write_text('[llm]\napi_key = "sk-123"\n')
    with pytest.raises(ConfigError, match="TEAMBOT_LLM__API_KEY") as raised:
        load_settings(config)
    assert "sk-123" not in str(raised.value)


def test_secret_from_env_or_secrets_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = tmp_path / "secrets.env"
    secrets.write_text("TEAMBOT_LLM__API_KEY=from-file\n")
    monkeypatch.setenv("TEAMBOT_SECRETS_FILE", str(secrets))
    settings = load_settings()
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "from-file"
    assert "from-file" not in repr(settings)


def test_missing_config_file_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="teambot init"):
        load_settings(tmp_path / "nope.toml")


def test_bad_toml_is_explained(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text("[llm\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config)


def test_sample_config_lists_every_key_with_its_default(tmp_path: Path) -> None:
    """The `teambot init` file is the docs: it must match the code."""
    text = files("bot").joinpath("sample_config.toml").read_text(encoding="utf-8")
    sample = tomllib.loads(text)
    defaults = Settings().model_dump(mode="json")
    secrets = {path for path in _secret_paths(Settings)}
    for section, values in defaults.items():
        for key, value in values.items():
            if (section, key) in secrets:
                assert f"# {key}" in text, f"[{section}] {key}: say how to set the secret"
                continue
            if key not in sample[section] and value in ({}, []):
                # Tables and lists of tables are shown as commented examples only: an active
                # `key = {}` above them would make the uncommented example a duplicate key.
                assert f"# {key}:" in text, f"[{section}] {key}: say what it is"
                assert re.search(rf"^# (\[+{section}\.{key}\b|{key} =)", text, re.M), (
                    f"[{section}] {key}: give an example"
                )
                continue
            assert key in sample[section], f"[{section}] {key} missing from sample_config.toml"
            written = sample[section][key]
            if key.endswith("_dir"):
                written, value = str(Path(written)), str(Path(value))
            assert written == value, (section, key)


def test_sample_config_source_examples_are_valid_and_complete() -> None:
    """The commented [[knowledge.sources]] examples parse, and the first lists every key."""
    from knowledge.config import SourceSettings

    text = files("bot").joinpath("sample_config.toml").read_text(encoding="utf-8")
    blocks = text.split("# [[knowledge.sources]]\n")[1:]
    assert len(blocks) >= 2
    examples = []
    for block in blocks:
        lines = []
        for line in block.splitlines():
            if not line.startswith("# ") or line.startswith("# [["):
                break
            lines.append(line[2:])
        examples.append(tomllib.loads("\n".join(lines)))
    from bot.app import source_kinds

    kinds = source_kinds(Settings())  # the built-in kinds and the platforms' document kinds
    for example in examples:
        kinds.check(SourceSettings(**example))  # the kind's own keys too
    first = SourceSettings(**examples[0]).model_dump(mode="json")
    assert set(examples[0]) == set(SourceSettings.model_fields)
    defaults = {k: f.default for k, f in SourceSettings.model_fields.items() if not f.is_required()}
    for key, value in defaults.items():
        if key in ("name", "location"):
            continue
        if callable(getattr(SourceSettings.model_fields[key], "default_factory", None)):
            value = SourceSettings.model_fields[key].default_factory()  # type: ignore[misc,call-arg]
        assert first[key] == value, key


def sample_text() -> str:
    return files("bot").joinpath("sample_config.toml").read_text(encoding="utf-8")


def _parses(line: str) -> bool:
    try:
        tomllib.loads(line)
    except tomllib.TOMLDecodeError:
        return False
    return True


def sample_examples(text: str) -> list[list[int]]:
    """Commented-out TOML in the sample: groups of line numbers, each starting at a `# [table]`
    header or at the first of a run of commented `# key = value` lines."""
    groups: list[list[int]] = []
    previous = -2
    for number, line in enumerate(text.splitlines()):
        if not line.startswith("# "):
            continue
        body = line[2:]
        header = body.lstrip().startswith("[")
        if not (header or "=" in body) or not _parses(body):
            continue
        if header or number != previous + 1:
            groups.append([])
        groups[-1].append(number)
        previous = number
    return groups


def test_every_example_in_the_sample_loads_when_uncommented(tmp_path: Path) -> None:
    """What an admin does first: uncomment one example in the file `teambot init` wrote."""
    text = sample_text()
    groups = sample_examples(text)
    lines = text.splitlines()
    shown = {"\n".join(lines[n] for n in group) for group in groups}
    assert len(groups) >= 6, shown  # escalation and web channels, chat collections, sources
    (tmp_path / "as-written.toml").write_text(text, encoding="utf-8")
    load_settings(tmp_path / "as-written.toml")
    for group in groups:
        edited = list(lines)
        for number in group:
            edited[number] = edited[number][2:]
        config = tmp_path / "teambot.toml"
        config.write_text("\n".join(edited) + "\n", encoding="utf-8")
        example = "\n".join(edited[n] for n in group)
        try:
            load_settings(config)
        except ConfigError as error:
            pytest.fail(f"uncommenting this example breaks the file:\n{example}\n{error}")


def test_every_key_in_the_sample_has_a_comment() -> None:
    lines = sample_text().splitlines()
    bare = []
    for number, line in enumerate(lines):
        if not line or line.startswith(("#", "[", " ")):
            continue
        above = lines[number - 1] if number else ""
        if " #" not in line.partition("=")[2] and not above.startswith("# "):
            bare.append(line)
    assert not bare, "keys without a comment:\n" + "\n".join(bare)


def test_slack_follow_up_keys_of_older_files_become_policy(tmp_path: Path) -> None:
    """`[slack] follow_ups` / `followup_channels_off` (written by older `teambot init`) still
    work: the core decides from `[policy]`, into which they fold."""
    from bot.app import policy_settings
    from engine.messages import ChatType, Inbound, Sender
    from engine.policy import Policy

    config = tmp_path / "teambot.toml"
    config.write_text(
        '[slack]\nfollowup_channels_off = ["C0QUIET"]\n\n'
        '[policy]\nfollowups_off = ["feishu:oc_1"]\n',
        "utf-8",
    )
    policy = Policy(policy_settings(load_settings(config)))

    def where(platform: str, chat: str) -> Inbound:
        return Inbound(platform, "t", chat, ChatType.GROUP, "th", "m", Sender("u"), "hi")

    assert not policy.follows_up(where("slack", "C0QUIET"))
    assert not policy.follows_up(where("feishu", "oc_1"))
    assert policy.follows_up(where("slack", "C0GENERAL"))
    config.write_text("[slack]\nfollow_ups = false\n", "utf-8")
    policy = Policy(policy_settings(load_settings(config)))
    assert not policy.follows_up(where("slack", "C0GENERAL"))
    assert policy.follows_up(where("feishu", "oc_1"))
