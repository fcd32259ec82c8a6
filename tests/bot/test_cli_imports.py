"""The CLI stays fast: what `teambot --help` and `teambot sources` import, checked in a fresh
interpreter (the test process itself has long imported everything)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# Each costs 0.7-6 s on a small machine; none is needed to print help or list sources.
HEAVY = ("torch", "sentence_transformers", "transformers", "chromadb", "openai", "fastapi")


def imported_after(code: str, cwd: Path) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMBOT_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    return {m.split(".")[0] for m in modules}


def test_importing_the_cli_loads_no_heavy_library(tmp_path: Path) -> None:
    loaded = imported_after("import bot.cli", tmp_path)
    assert not loaded & set(HEAVY), f"`import bot.cli` imports {sorted(loaded & set(HEAVY))}"
    # Nor the settings, SQLAlchemy or pydantic: --help needs typer and rich only.
    assert not loaded & {"sqlalchemy", "pydantic", "knowledge", "engine"}


def test_listing_sources_reads_the_catalog_only(tmp_path: Path) -> None:
    code = (
        "from bot.cli import cli\n"
        "try:\n"
        "    cli(['sources'], standalone_mode=False)\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
    )
    loaded = imported_after(code, tmp_path)
    assert "sqlalchemy" in loaded  # it did read the catalog
    heavy = loaded & {*HEAVY, "numpy", "alembic"}
    assert not heavy, f"`teambot sources` imports {sorted(heavy)}"


def test_a_retrieval_only_answer_imports_neither_torch_nor_sentence_transformers(
    tmp_path: Path,
) -> None:
    """`teambot ask` embeds the question with the default onnx backend: the whole command,
    sample indexing included, runs without torch (the default install has none)."""
    code = (
        "import os\n"
        "os.environ['TEAMBOT_LLM__BASE_URL'] = 'http://127.0.0.1:9/v1'\n"
        "from bot.cli import cli\n"
        "try:\n"
        "    cli(['ask', 'How do I reset my VPN password?'], standalone_mode=False)\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
    )
    loaded = imported_after(code, tmp_path)
    assert "onnxruntime" in loaded and "chromadb" in loaded  # it did embed and search
    torch = loaded & {"torch", "sentence_transformers", "transformers"}
    assert not torch, f"`teambot ask` imports {sorted(torch)}"
    # Once the sample is indexed, nor what an English question without a reachable model never
    # uses: openai (one-shot model calls only), scipy (through bm25s, for two stopword lists),
    # jieba (Chinese text only).
    again = imported_after(code, tmp_path)
    unused = again & {"openai", "scipy", "bm25s", "jieba"}
    assert not unused, f"a retrieval-only `teambot ask` imports {sorted(unused)}"
