from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from knowledge.loaders import LoadError, decode, document_uri, list_files, load_file, load_folder


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    (root / "it").mkdir(parents=True)
    (root / "it" / "vpn.md").write_text("Intro\n\n# Connecting to the VPN\n\nSteps.\n", "utf-8")
    (root / "notes.txt").write_text("plain notes\n", "utf-8")
    (root / "no-heading.markdown").write_text("## Only a subheading\n\ntext\n", "utf-8")
    (root / "报销流程.md").write_bytes("# 费用报销\n\n30 天内提交。\n".encode("gb18030"))
    (root / "bom.md").write_bytes("\ufeff# With BOM\r\n\r\nwindows lines\r\n".encode())
    (root / "image.png").write_bytes(b"\x89PNG\r\n")
    (root / ".hidden.md").write_text("# secret\n", "utf-8")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.md").write_text("# no\n", "utf-8")
    return root


def test_lists_supported_files_skipping_hidden(docs: Path) -> None:
    names = [p.relative_to(docs).as_posix() for p in list_files(docs)]
    assert names == ["bom.md", "it/vpn.md", "no-heading.markdown", "notes.txt", "报销流程.md"]


def test_loads_markdown_with_title_uri_and_mtime(docs: Path) -> None:
    path = docs / "it" / "vpn.md"
    os.utime(path, (1_700_000_000, 1_700_000_000))

    doc = load_file(path, docs)

    assert doc.uri == "docs/it/vpn.md"
    assert doc.title == "Connecting to the VPN"
    assert doc.kind == "markdown"
    assert doc.modified_at == datetime.fromtimestamp(1_700_000_000, tz=UTC)


def test_title_falls_back_to_file_stem(docs: Path) -> None:
    assert load_file(docs / "no-heading.markdown", docs).title == "no-heading"
    text = load_file(docs / "notes.txt", docs)
    assert (text.title, text.kind, text.text) == ("notes", "text", "plain notes\n")


def test_gb18030_and_bom_files_decode(docs: Path) -> None:
    chinese = load_file(docs / "报销流程.md", docs)
    assert chinese.title == "费用报销"
    assert "30 天内提交。" in chinese.text
    assert chinese.uri == "docs/报销流程.md"

    bom = load_file(docs / "bom.md", docs)
    assert bom.title == "With BOM"
    assert "\r" not in bom.text and not bom.text.startswith("\ufeff")


def test_broken_files_are_reported_not_raised(docs: Path) -> None:
    (docs / "binary.txt").write_bytes(b"\x00\x01\x02garbage")
    (docs / "latin.md").write_bytes(b"\xff\xfe\xff caf\xe9")

    documents, failed = load_folder(docs)

    assert len(documents) == 5
    assert set(failed) == {"docs/binary.txt", "docs/latin.md"}
    assert "binary" in failed["docs/binary.txt"]
    assert "cannot decode" in failed["docs/latin.md"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_reported(docs: Path) -> None:
    locked = docs / "locked.md"
    locked.write_text("# locked\n", "utf-8")
    locked.chmod(0)
    try:
        _, failed = load_folder(docs)
    finally:
        locked.chmod(0o644)
    assert "docs/locked.md" in failed


def test_decode_rejects_nul_bytes() -> None:
    with pytest.raises(LoadError):
        decode(b"abc\x00def")


def test_single_file_root(docs: Path) -> None:
    path = docs / "notes.txt"
    assert list_files(path) == [path]
    assert document_uri(path, path) == "docs/notes.txt"
    assert list_files(docs / "image.png") == []
