"""The git kind against real repositories made in the test: a refresh reads only the files a
commit changed, a renamed or deleted file leaves, a branch switch reads only what differs, and
what goes wrong is said with the fix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.sources import SourceKinds, builtin_kinds
from knowledge.sources.git import GitReader, citation
from tests.knowledge.counting import counting_kinds
from tests.knowledge.git_repo import Repo

VPN = "# VPN\n\nThe VPN gateway is vpn.example.com on port 443.\n"
PRINTER = "# Printer\n\nThe third-floor printer is named Kestrel.\n"
LEAVE = "# Leave\n\nAnnual leave is 15 days a year; ask your manager first.\n"


@pytest.fixture
def reads() -> list[str]:
    return []


@pytest.fixture
def kinds(tmp_path: Path, reads: list[str]) -> SourceKinds:
    return counting_kinds("git", reads, tmp_path / "data")


@pytest.fixture
async def base(
    settings: KnowledgeSettings, embedder: Embedder, kinds: SourceKinds
) -> AsyncIterator[KnowledgeBase]:
    kb = await KnowledgeBase.open(settings, embedder=embedder, kinds=kinds)
    yield kb
    await kb.close()


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    repo = Repo(tmp_path / "handbook")
    repo.commit(
        "first docs",
        {
            "docs/vpn.md": VPN,
            "docs/office/printer.md": PRINTER,
            "docs/leave.txt": LEAVE,
            "docs/logo.png": "not text",
            "src/app.py": "print('not docs')\n",
            "README.md": "# Handbook repo\n",
        },
    )
    return repo


def source(repo: Repo, **keys: Any) -> SourceSettings:
    return SourceSettings(
        name="docs", kind="git", location=str(repo.root), **{"paths": ["docs/**"], **keys}
    )


async def test_a_commit_is_read_file_by_file_and_deletions_and_renames_leave(
    base: KnowledgeBase, repo: Repo, reads: list[str]
) -> None:
    first = await base.ingestor.refresh(source(repo, branch="main"))
    assert (first.added, first.result) == (3, "ok"), first.summary()
    assert sorted(reads) == ["docs/leave.txt", "docs/office/printer.md", "docs/vpn.md"]
    [top] = await base.retriever.retrieve("What is the third-floor printer called?", k=1)
    head = repo.git("rev-parse", "HEAD")
    assert top.location == f"docs/office/printer.md@{head[:12]}"

    reads.clear()
    repo.commit("printer renamed", {"docs/office/printer.md": PRINTER.replace("Kestrel", "Osprey")})
    second = await base.ingestor.refresh(source(repo, branch="main"))
    assert (second.changed, second.unchanged, reads) == (1, 2, ["docs/office/printer.md"])
    [top] = await base.retriever.retrieve("What is the third-floor printer called?", k=1)
    assert "Osprey" in top.text

    reads.clear()
    repo.git("rm", "--quiet", "docs/leave.txt")
    (repo.root / "docs" / "network").mkdir()
    repo.git("mv", "docs/vpn.md", "docs/network/vpn.md")
    repo.commit("leave policy moved to HR; vpn page moved")
    third = await base.ingestor.refresh(source(repo, branch="main"))
    assert (third.added, third.removed, reads) == (1, 2, ["docs/network/vpn.md"]), third.summary()
    uris = {p.location.split("@")[0] for p in await base.retriever.retrieve("annual leave", k=5)}
    assert "docs/leave.txt" not in uris and "docs/vpn.md" not in uris
    [top] = await base.retriever.retrieve("VPN gateway address", k=1)
    assert top.location.startswith("docs/network/vpn.md@")


async def test_switching_the_branch_reads_only_what_differs(
    base: KnowledgeBase, repo: Repo, reads: list[str]
) -> None:
    await base.ingestor.refresh(source(repo, branch="main"))
    repo.git("checkout", "--quiet", "-b", "winter")
    repo.commit("winter hours", {"docs/vpn.md": VPN.replace("443", "8443")})
    repo.git("checkout", "--quiet", "main")
    reads.clear()
    switched = await base.ingestor.refresh(source(repo, branch="winter"))
    assert (switched.changed, switched.unchanged, reads) == (1, 2, ["docs/vpn.md"])
    [top] = await base.retriever.retrieve("VPN gateway port", k=1)
    assert "8443" in top.text


async def test_rst_keeps_its_sections_and_citations_link_to_the_forge(
    base: KnowledgeBase, repo: Repo
) -> None:
    head = repo.commit(
        "rst",
        {
            "docs/oncall.rst": "On call\n=======\n\nPaging\n------\n\nPage the on-call engineer "
            "through PagerDuty service ops-primary.\n"
        },
    )
    web = "https://github.com/acme/handbook"
    await base.ingestor.refresh(source(repo, web_url=web))
    [top] = await base.retriever.retrieve("How do I page the on-call engineer?", k=1)
    assert top.section == "On call > Paging"
    assert top.location == f"{web}/blob/{head}/docs/oncall.rst"


def test_forge_patterns() -> None:
    commit = "a" * 40
    assert citation("https://gitlab.example.com/t/docs", commit, "a.md").endswith(
        f"/t/docs/-/blob/{commit}/a.md"
    )
    assert citation("https://gitea.example.com/t/docs", commit, "a.md").endswith(
        f"/src/commit/{commit}/a.md"
    )
    pattern = "https://git.example.com/{commit}/raw/{path}"
    assert citation(pattern, commit, "d/a.md") == f"https://git.example.com/{commit}/raw/d/a.md"


async def test_what_goes_wrong_is_said_and_removes_nothing(
    base: KnowledgeBase, repo: Repo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    await base.ingestor.refresh(source(repo))
    missing = await base.ingestor.refresh(source(repo, branch="nope"))
    assert missing.result == "failed" and missing.removed == 0
    assert "has no branch 'nope'" in missing.error and "--set branch=" in missing.error
    gone = await base.ingestor.refresh(
        SourceSettings(name="docs", kind="git", location=str(tmp_path / "nowhere"))
    )
    assert gone.result == "failed" and "not a Git repository" in gone.error
    monkeypatch.delenv("HANDBOOK_TOKEN", raising=False)
    unset = await base.ingestor.refresh(source(repo, token_env="HANDBOOK_TOKEN"))
    assert "HANDBOOK_TOKEN is not set" in unset.error
    [top] = await base.retriever.retrieve("VPN gateway address", k=1)
    assert top.title == "VPN"  # all of it still answers


async def test_a_file_too_large_is_reported_and_the_others_are_read(
    base: KnowledgeBase, repo: Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("knowledge.sources.git.MAX_BLOB_BYTES", 200)
    repo.commit("a big one", {"docs/a-big.md": "# Big\n\n" + "All of it. " * 40})
    report = await base.ingestor.refresh(source(repo))
    assert report.added == 3 and list(report.failed) == ["docs/a-big.md"], report.summary()
    assert "leave it out with `exclude` or `paths`" in report.failed["docs/a-big.md"]
    [top] = await base.retriever.retrieve("VPN gateway address", k=1)
    assert top.title == "VPN"


def test_a_token_in_the_config_is_refused_with_the_way_to_name_it() -> None:
    with pytest.raises(ValueError, match="token_env"):
        builtin_kinds().check(
            SourceSettings(name="d", kind="git", location="/r", token="ghp_secret")  # type: ignore[call-arg]
        )


async def test_the_token_travels_in_gits_environment_not_its_command_line(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HANDBOOK_TOKEN", "ghp_abc")
    kinds = builtin_kinds(tmp_path / "data")
    spec = source(repo, token_env="HANDBOOK_TOKEN")
    reader = kinds.build(spec)
    assert isinstance(reader, GitReader)
    env = await reader._env()
    assert env["GIT_CONFIG_KEY_0"] == "http.extraHeader"
    assert env["GIT_CONFIG_VALUE_0"].startswith("Authorization: Basic ")
    assert env["GIT_TERMINAL_PROMPT"] == "0"  # never waits for a password
    listed = [ref.uri async for ref in reader.documents()]
    assert "docs/vpn.md" in listed
    await reader.aclose()


async def test_an_ssh_key_in_the_secrets_is_a_private_file_for_the_refresh_only(
    repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
    monkeypatch.setenv("DEPLOY_KEY", key)
    reader = builtin_kinds(tmp_path / "data").build(source(repo, ssh_key_env="DEPLOY_KEY"))
    assert isinstance(reader, GitReader)
    env = await reader._env()
    command = env["GIT_SSH_COMMAND"].split()
    path = Path(command[command.index("-i") + 1])
    assert path.read_text() == key and oct(path.stat().st_mode & 0o777) == "0o600"
    assert "BatchMode=yes" in command and "StrictHostKeyChecking=accept-new" in command
    await reader.aclose()
    assert not path.exists()
