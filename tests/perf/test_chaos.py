"""Chaos benchmark: two `teambot serve` replicas on PostgreSQL, a Chroma server and Redis, with
questions arriving over the web chat and the Slack and Feishu fakes while one fault strikes:

* `kill`     — replica A is SIGKILLed mid-answer (and stays dead; B takes over);
* `postgres` — PostgreSQL restarts (`pg_ctl restart -m fast`: every connection is cut);
* `redis`    — Redis stops (15 s), then comes back;
* `chroma`   — the Chroma server restarts.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_chaos.py -s -p no:cacheprovider`
(TEAMBOT_CHAOS_FAULTS="kill,postgres" picks faults, TEAMBOT_CHAOS_QUESTIONS the questions per
fault). The machine's shared PostgreSQL and Redis are never touched: the benchmark starts its
own PostgreSQL (initdb/pg_ctl from /usr/lib/postgresql/*/bin, as the `postgres` user when run
as root) and its own redis-server, each on a free port in a temporary folder
(tests/perf/chaos_stack.py).

Questions are dealt round-robin to the replicas (a load balancer); a delivery that finds its
replica gone is sent to the other (Slack and Feishu redeliver, a balancer fails over). Each
asker's thread is then read back from the fakes (Slack messages and edits, Feishu replies and
card updates, the web chat's answer stream and the thread's event stream on B): an answer is a
message showing the model's whole answer (it ends with a sentinel word), an apology a message
saying sorry. Prints, per fault: questions, lost (heard nothing within 90 s of the last
question), answered twice (two messages with the answer), answer + apology, apologies, and the
seconds until every asker heard something (after the fault struck, and the longest wait of one
asker). Asserts nothing: figures for docs/failure-modes.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_replicas import start_replica, wait_ready
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import encrypt, message_event
from tests.fakes.feishu_events import signed_headers as feishu_headers
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, event_body, user_message
from tests.fakes.slack import signed_headers as slack_headers
from tests.helpers import child_env
from tests.perf.chaos_stack import stack, wait_http

pytestmark = pytest.mark.perf
__all__ = ["stack"]  # the fixture: our own PostgreSQL, Redis and Chroma

FAULTS = os.environ.get("TEAMBOT_CHAOS_FAULTS", "kill,postgres,redis,chroma").split(",")
QUESTIONS = int(os.environ.get("TEAMBOT_CHAOS_QUESTIONS", "24"))
SPREAD = 12.0  # seconds over which the questions arrive
FAULT_AT = 4.0  # seconds after the first question
HEARD_WITHIN = 90.0  # after the last question; later counts as lost
SENTINEL = "ZZEND"
ANSWER = " ".join(["Annual leave is twenty days a year, see the handbook."] * 6) + " " + SENTINEL
TOKEN, KEY = "verify-token-1", "encrypt-key-1"
APOLOGIES = ("ask it again", "ask again in a moment", "Something went wrong", "请再问一次")
OTHERS = ("couldn't find anything", "Retrieval-only answer", "asking faster")


def classify(text: str) -> str | None:
    if SENTINEL in text:
        return "answer"
    if any(a in text for a in APOLOGIES):
        return "apology"
    if any(o in text for o in OTHERS):
        return "other"
    return None


@dataclass
class Asker:
    platform: str
    thread: str  # Slack: the question's ts; Feishu: its message id; web: chat/thread
    sent_at: float
    # (monotonic time, message key, class) of every classified write into the thread
    seen: list[tuple[float, str, str]] = field(default_factory=list)

    def messages(self) -> dict[str, str]:
        """message key → its last class (what the asker is left with)."""
        last: dict[str, str] = {}
        for _, key, kind in sorted(self.seen):
            last[key] = kind
        return last

    def heard_at(self) -> float | None:
        return min((at for at, _, _ in self.seen), default=None)


# -- the askers ----------------------------------------------------------------------------------


class Traffic:
    """Sends the questions (round-robin over the replicas, failing over to the other) and
    collects what every asker was told."""

    def __init__(self, urls: list[str], slack: FakeSlack, feishu: FakeFeishu) -> None:
        self.urls, self.slack, self.feishu = urls, slack, feishu
        self.askers: list[Asker] = []
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        self.tasks: list[asyncio.Task[None]] = []

    async def deliver(self, n: int, path: str, body: bytes, headers: dict[str, str]) -> None:
        """POST to replica n % 2, else to the other (a balancer's failover, a redelivery)."""
        for url in (self.urls[n % 2], self.urls[(n + 1) % 2]):
            with contextlib.suppress(httpx.TransportError):
                response = await self.client.post(f"{url}{path}", content=body, headers=headers)
                if response.status_code < 500:
                    return

    async def ask(self, n: int) -> None:
        platform = ("web", "slack", "feishu")[n % 3]
        question = f"How many days of annual leave do I get? (asker {n})"
        if platform == "slack":
            event = user_message(f"<@U0BOT> {question}", user=f"U{n:05d}")
            self.askers.append(Asker("slack", event["ts"], time.monotonic()))
            body = json.dumps(event_body(event))
            await self.deliver(n, "/slack/events", body.encode(), slack_headers(body))
        elif platform == "feishu":
            event = message_event(question, sender=f"ou_chaos_{n}", token=TOKEN)
            message_id = event["event"]["message"]["message_id"]
            self.askers.append(Asker("feishu", message_id, time.monotonic()))
            raw = json.dumps(encrypt(KEY, event)).encode()
            await self.deliver(n, "/feishu/events", raw, feishu_headers(KEY, raw))
        else:
            asker = Asker("web", f"c{n}-{uuid.uuid4().hex[:6]}/t{n}", time.monotonic())
            self.askers.append(asker)
            self.tasks.append(asyncio.create_task(self._web(n, asker, question)))

    async def _web(self, n: int, asker: Asker, question: str) -> None:
        """A page: asks on replica n % 2 (the other if that one is gone), listens to the
        thread's events on B, as a browser reconnecting through the balancer would."""
        chat, thread = asker.thread.split("/")
        body = {"chat_id": chat, "thread_id": thread, "message_id": f"m{n}", "text": question}
        async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as page:
            listening: asyncio.Task[None] | None = None
            for url in (self.urls[n % 2], self.urls[(n + 1) % 2]):
                try:
                    async with page.stream("POST", f"{url}/api/chat", json=body) as response:
                        if response.status_code != 200:  # the page shows the error's words
                            said = (await response.aread()).decode(errors="replace")
                            asker.seen.append((time.monotonic(), "refused", "apology"))
                            print(f"web asker {n}: {response.status_code} {said[:120]}")
                            return
                        listening = asyncio.create_task(self._listen(page, asker, chat, thread))
                        async for line in response.aiter_lines():
                            if not line.startswith("data: "):
                                continue
                            event = json.loads(line[6:])
                            if event["type"] == "final":
                                text = event["answer"]["text"]
                                asker.seen.append(
                                    (time.monotonic(), "post", classify(text) or "other")
                                )
                            elif event["type"] == "error":
                                asker.seen.append((time.monotonic(), "post", "apology"))
                    break
                except httpx.TransportError:
                    if listening is not None:
                        break  # it was taken, then the replica died: the events tell the rest
            if listening is None:
                return
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(HEARD_WITHIN + SPREAD + 30)
            listening.cancel()

    async def _listen(self, page: httpx.AsyncClient, asker: Asker, chat: str, thread: str) -> None:
        where = f"{self.urls[1]}/api/threads/{chat}/{thread}/events"
        count = 0
        while True:
            with contextlib.suppress(httpx.TransportError):
                async with page.stream("GET", where) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            event = json.loads(line[6:])
                            text = event.get("text") or (event.get("answer") or {}).get("text", "")
                            if kind := classify(str(text)):
                                count += 1
                                asker.seen.append((time.monotonic(), f"event{count}", kind))
            await asyncio.sleep(0.5)

    def read_platforms(self) -> None:
        """What Slack and Feishu were asked to show, per asker's thread."""
        by_thread = {a.thread: a for a in self.askers if a.platform in ("slack", "feishu")}
        messages: dict[str, str] = {}  # Slack message ts → the asker's thread
        for call in self.slack.calls:
            if call.status != 200 or call.method not in ("chat.postMessage", "chat.update"):
                continue
            if call.method == "chat.postMessage":
                thread = str(call.args.get("thread_ts", ""))
                ts = str((call.result or {}).get("ts", ""))
                messages[ts] = thread
            else:
                ts = str(call.args.get("ts", ""))
                thread = messages.get(ts, "")
            kind = classify(str(call.args.get("text", "")) + str(call.args.get("blocks", "")))
            if kind and thread in by_thread:
                by_thread[thread].seen.append((call.at, ts, kind))
        cards: dict[str, str] = {}  # Feishu card id → the asker's message id
        for index, fcall in enumerate(self.feishu.calls):
            path = fcall.path
            if path.endswith("/reply"):
                thread = path.split("/")[-2]
                content = fcall.content
                card = (
                    (content.get("data") or {}).get("card_id")
                    if isinstance(content, dict)
                    else None
                )
                key = str(card or f"reply{index}")
                cards[key] = thread
            elif "/cardkit/v1/cards/" in path:
                key = path.split("/cardkit/v1/cards/")[1].split("/")[0]
                thread = cards.get(key, "")
            else:
                continue
            kind = classify(json.dumps(fcall.body, ensure_ascii=False))
            if kind and thread in by_thread:
                by_thread[thread].seen.append((fcall.at, key, kind))

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.aclose()


# -- one fault -----------------------------------------------------------------------------------


def replica_env(
    stack: dict[str, Any], fault: str, model: str, slack: str, feishu: FakeFeishu
) -> dict[str, str]:
    database = f"chaos_{fault}_{uuid.uuid4().hex[:6]}"
    stack["postgres"].create(database)
    return child_env(
        TEAMBOT_STORAGE__URL=stack["postgres"].url(database),
        TEAMBOT_LLM__BASE_URL=model,
        TEAMBOT_KNOWLEDGE__CHROMA_URL=stack["chroma_url"],
        TEAMBOT_KNOWLEDGE__COLLECTION=f"chaos-{fault}",
        TEAMBOT_POLICY__REDIS_URL=stack["redis_url"],
        TEAMBOT_POLICY__USER_BURST="1000",
        TEAMBOT_POLICY__CHAT_BURST="1000",
        TEAMBOT_SLACK__ENABLED="true",
        TEAMBOT_SLACK__MODE="http",
        TEAMBOT_SLACK__BOT_TOKEN=BOT_TOKEN,
        TEAMBOT_SLACK__SIGNING_SECRET=SIGNING_SECRET,
        TEAMBOT_SLACK__API_URL=slack,
        TEAMBOT_SLACK__UPDATE_INTERVAL="0.5",
        TEAMBOT_FEISHU__ENABLED="true",
        TEAMBOT_FEISHU__MODE="webhook",
        TEAMBOT_FEISHU__APP_ID=feishu.app_id,
        TEAMBOT_FEISHU__APP_SECRET=feishu.app_secret,
        TEAMBOT_FEISHU__VERIFICATION_TOKEN=TOKEN,
        TEAMBOT_FEISHU__ENCRYPT_KEY=KEY,
        TEAMBOT_FEISHU__DOMAIN=feishu.url,
        TEAMBOT_FEISHU__UPDATE_INTERVAL="0.5",
    )


async def strike(fault: str, stack: dict[str, Any], a: subprocess.Popen[bytes]) -> None:
    """The fault itself; returns once it is over (or, for a kill, done)."""
    if fault == "kill":
        os.kill(a.pid, signal.SIGKILL)
    elif fault == "postgres":
        await asyncio.to_thread(stack["postgres"].ctl, "restart", "-m", "fast")
    elif fault == "redis":
        stack["redis"].stop()
        await asyncio.sleep(15)
        stack["redis"].start()
    elif fault == "chroma":
        stack["chroma"].stop()
        stack["chroma"].start()
        await asyncio.to_thread(wait_http, f"{stack['chroma_url']}/api/v2/heartbeat")
    else:
        raise ValueError(f"unknown fault {fault!r}")


@contextlib.asynccontextmanager
async def replicas(
    root: Path, env: dict[str, str], index: Path
) -> AsyncIterator[tuple[list[subprocess.Popen[bytes]], list[str]]]:
    processes: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    root.mkdir(parents=True, exist_ok=True)
    try:
        for name in ("a", "b"):  # A migrates and seeds the collection first
            process, url = await start_replica(root / name, index, env)
            processes.append(process)
            urls.append(url)
            await wait_ready(url, process, root / name / "serve.log")
        yield processes, urls
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def run_fault(fault: str, stack: dict[str, Any], root: Path, index: Path) -> dict[str, Any]:
    with FakeSGLang() as model, FakeFeishu() as feishu:
        model.behave(answer=ANSWER, token_delay=0.1)  # ~6 s an answer
        async with FakeSlack() as slack:
            env = replica_env(stack, fault, model.base_url, slack.api_url, feishu)
            async with replicas(root, env, index) as (processes, urls):
                traffic = Traffic(urls, slack, feishu)
                began = time.monotonic()
                faulted = asyncio.create_task(asyncio.sleep(0))
                struck = 0.0
                for n in range(QUESTIONS):
                    at = began + n * SPREAD / QUESTIONS
                    if not struck and at - began >= FAULT_AT:
                        struck = time.monotonic()
                        faulted = asyncio.create_task(strike(fault, stack, processes[0]))
                    await asyncio.sleep(max(0.0, at - time.monotonic()))
                    await traffic.ask(n)
                await faulted
                last = time.monotonic()
                while time.monotonic() - last < HEARD_WITHIN:
                    traffic.read_platforms()
                    if all(a.heard_at() is not None for a in traffic.askers):
                        break
                    for asker in traffic.askers:
                        if asker.platform != "web":
                            asker.seen.clear()
                    await asyncio.sleep(1)
                await asyncio.sleep(10)  # a second answer, if any, shows by now
                for asker in traffic.askers:
                    if asker.platform != "web":
                        asker.seen.clear()
                traffic.read_platforms()
                await traffic.close()
                return figures(fault, traffic.askers, struck)


def figures(fault: str, askers: list[Asker], struck: float) -> dict[str, Any]:
    lost = [a for a in askers if a.heard_at() is None]
    answers = [sum(k == "answer" for k in a.messages().values()) for a in askers]
    apologies = [sum(k == "apology" for k in a.messages().values()) for a in askers]
    heard = [a.heard_at() or 0.0 for a in askers if a not in lost]
    return {
        "fault": fault,
        "questions": len(askers),
        "lost": len(lost),
        "lost_where": sorted({a.platform for a in lost}),
        "twice": sum(n >= 2 for n in answers),
        "answer_and_apology": sum(
            n >= 1 and m >= 1 for n, m in zip(answers, apologies, strict=True)
        ),
        "apologies": sum(apologies),
        "answered": sum(n >= 1 for n in answers),
        "all_heard_after_fault": max(heard, default=struck) - struck,
        "longest_wait": max((a.heard_at() or 0.0) - a.sent_at for a in askers if a not in lost)
        if heard
        else 0.0,
    }


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


async def test_chaos(stack: dict[str, Any], sample_index: Path, tmp_path: Path) -> None:
    rows = []
    for fault in FAULTS:
        before = load()
        row = await run_fault(fault, stack, tmp_path / fault, sample_index)
        row["load"] = f"{before} → {load()}"
        rows.append(row)
        print(f"\n{fault}: {row}", flush=True)
    print(f"\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores")
    print(
        "| fault | questions | answered | lost | answered twice | answer + apology | apologies "
        "| all heard, s after the fault | longest wait, s | load average (1, 5, 15 min) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['fault']} | {r['questions']} | {r['answered']} | {r['lost']} "
            f"{r['lost_where'] or ''} | {r['twice']} | {r['answer_and_apology']} | "
            f"{r['apologies']} | {r['all_heard_after_fault']:.1f} | {r['longest_wait']:.1f} | "
            f"{r['load']} |"
        )
