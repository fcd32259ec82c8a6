"""The git CLI against dulwich on a repository of 2,000 Markdown files made here: first fetch
(a shallow clone into a bare mirror), list the tip's tree, read every blob; then a commit that
changes 10 files: fetch again and read the changed ones. Prints seconds for each.

Run: `.venv/bin/python -m pytest tests/perf/test_git.py -q -s -p no:cacheprovider`
(dulwich is not a dependency: `pip install dulwich` to compare).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from knowledge.config import SourceSettings
from knowledge.sources.git import GitOptions, GitReader
from tests.knowledge.git_repo import Repo

pytestmark = pytest.mark.perf
FILES = 2_000


def _repo(root: Path) -> Repo:
    repo = Repo(root)
    repo.write(
        {
            f"docs/area{n % 40}/page{n}.md": f"# Page {n}\n\n" + f"Line {n} of the handbook.\n" * 40
            for n in range(FILES)
        }
    )
    repo.commit("2,000 pages")
    return repo


def _edit(repo: Repo) -> None:
    repo.commit(
        "ten edits",
        {f"docs/area{n % 40}/page{n}.md": f"# Page {n}\n\nEdited.\n" for n in range(10)},
    )


async def test_git_cli(tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    source = SourceSettings(name="bench", kind="git", location=str(repo.root))
    reader = GitReader(source, GitOptions(), tmp_path / "mirrors")
    clock = time.perf_counter()
    refs = [ref async for ref in reader.documents()]
    listed = time.perf_counter() - clock
    clock = time.perf_counter()
    for ref in refs:
        assert await reader.blob(ref.meta["blob"])
    read = time.perf_counter() - clock
    _edit(repo)
    clock = time.perf_counter()
    again = {ref.uri: ref.version async for ref in reader.documents()}
    relisted = time.perf_counter() - clock
    changed = [ref for ref in refs if again[ref.uri] != ref.version]
    await reader.aclose()
    assert len(refs) == FILES and len(changed) == 10
    print(
        f"\ngit CLI: fetch+list {FILES} files {listed:.2f} s; read all (cat-file --batch) "
        f"{read:.2f} s; after 10 edits fetch+list {relisted:.2f} s"
    )


def test_dulwich(tmp_path: Path) -> None:
    porcelain = pytest.importorskip("dulwich.porcelain")
    from dulwich.objects import Blob, Tree
    from dulwich.repo import Repo as DRepo

    repo = _repo(tmp_path / "repo")
    mirror = tmp_path / "mirror.git"

    def listing(bare: DRepo) -> dict[str, bytes]:
        tree = bare[bare[b"HEAD"].tree]  # type: ignore[attr-defined]
        assert isinstance(tree, Tree)
        return {
            e.path.decode(): e.sha
            for e in bare.object_store.iter_tree_contents(tree.id)
            if e.path is not None and e.sha is not None
        }

    clock = time.perf_counter()
    porcelain.clone(str(repo.root), str(mirror), bare=True, depth=1, errstream=_Null())
    bare = DRepo(str(mirror))
    files = listing(bare)
    listed = time.perf_counter() - clock
    clock = time.perf_counter()
    for sha in files.values():
        blob = bare[sha]
        assert isinstance(blob, Blob) and blob.data
    read = time.perf_counter() - clock
    _edit(repo)
    clock = time.perf_counter()
    porcelain.fetch(bare, str(repo.root), depth=1, errstream=_Null())
    head = subprocess.run(
        ["git", "-C", str(repo.root), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    bare.refs[b"HEAD"] = head.encode()
    again = listing(bare)
    relisted = time.perf_counter() - clock
    assert len(files) == FILES and sum(again[p] != s for p, s in files.items()) == 10
    print(
        f"\ndulwich: clone+list {FILES} files {listed:.2f} s; read all (in process) "
        f"{read:.2f} s; after 10 edits fetch+list {relisted:.2f} s"
    )


class _Null:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        return None
