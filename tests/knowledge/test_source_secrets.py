"""Credentials of source kinds: read from the environment, else from TEAMBOT_SECRETS_FILE;
an unset one is named with where to put it."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.errors import SourceError
from knowledge.sources.secrets import required, secret


def test_the_environment_wins_over_the_secrets_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    file = tmp_path / "secrets.env"
    file.write_text('WIKI_TOKEN="from-file"\nOTHER=x\n', encoding="utf-8")
    monkeypatch.setenv("TEAMBOT_SECRETS_FILE", str(file))
    monkeypatch.delenv("WIKI_TOKEN", raising=False)
    assert secret("WIKI_TOKEN") == "from-file"
    monkeypatch.setenv("WIKI_TOKEN", "from-env")
    assert secret("WIKI_TOKEN") == "from-env"


def test_an_unset_secret_says_where_it_goes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEAMBOT_SECRETS_FILE", raising=False)
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(SourceError, match=r"NOPE_TOKEN is not set .*TEAMBOT_SECRETS_FILE"):
        required("NOPE_TOKEN", "token_env", "a token")
