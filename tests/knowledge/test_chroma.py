"""Importing chromadb lean (knowledge/chroma.py): no gRPC exporter until tracing is configured,
and the store still works. Checked in a fresh interpreter: the test process has imported
chromadb long before."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str, cwd: Path) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_an_embedded_store_opens_without_grpc_and_still_answers(tmp_path: Path) -> None:
    code = (
        "import asyncio, json, sys\n"
        "from knowledge.vectors import VectorStore\n"
        "async def main():\n"
        "    store = await VectorStore.open('chunks', persist_dir=__import__('pathlib').Path('db'))\n"
        "    await store.upsert(['a', 'b'], [[1.0, 0.0], [0.0, 1.0]], ['x', 'y'], [{'s': 1}, {'s': 2}])\n"
        "    return await store.count()\n"
        "count = asyncio.run(main())\n"
        "print(json.dumps({'count': count, 'grpc': 'grpc' in sys.modules}))\n"
    )
    assert _run(code, tmp_path) == {"count": 2, "grpc": False}


def test_the_real_exporter_is_built_when_tracing_asks_for_one(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "from knowledge.chroma import load, EXPORTER\n"
        "load()\n"
        "from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter\n"
        "exporter = OTLPSpanExporter(endpoint='http://127.0.0.1:9')\n"
        "kind = type(exporter)\n"
        "print(json.dumps({'class': kind.__module__ + '.' + kind.__name__,\n"
        "                  'grpc': 'grpc' in sys.modules}))\n"
    )
    built = _run(code, tmp_path)
    assert built == {
        "class": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter.OTLPSpanExporter",
        "grpc": True,
    }
