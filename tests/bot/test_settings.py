from __future__ import annotations

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
    for example in examples:
        SourceSettings(**example)
    first = SourceSettings(**examples[0]).model_dump(mode="json")
    assert set(examples[0]) == set(SourceSettings.model_fields)
    defaults = {k: f.default for k, f in SourceSettings.model_fields.items() if not f.is_required()}
    for key, value in defaults.items():
        if key in ("name", "location"):
            continue
        if callable(getattr(SourceSettings.model_fields[key], "default_factory", None)):
            value = SourceSettings.model_fields[key].default_factory()  # type: ignore[misc,call-arg]
        assert first[key] == value, key
