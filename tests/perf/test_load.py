"""Load benchmark: signed Slack events (HTTP mode) for many threads at once to `teambot serve` on
PostgreSQL, with the fake SGLang streaming at a fixed rate.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_load.py -s -p no:cacheprovider`
(TEAMBOT_LOAD_RATE and TEAMBOT_LOAD_SECONDS change the offered load, TEAMBOT_LOAD_REPLICAS the
number of serve processes sharing it round-robin, TEAMBOT_LOAD_WARMUP the uncounted warm-up
events sent first). Prints: sustained messages per second, the service's own overhead (event
sent → model request received; last token sent → final Slack update) per answer at p50/p99,
lost and duplicated answers, CPU per message (service, and this process's load generator and
fakes, which share the machine), and the servers' peak memory. Asserts only that nothing was
lost or answered twice. Overhead figures mean something only below capacity: above it they
measure the queue.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import httpx

from tests.e2e.test_replicas import database, serve_env, start_replica, wait_ready  # noqa: F401
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import (
    FakeSlack,
    event_body,
    signed_headers,
    user_message,
)

RATE = float(os.environ.get("TEAMBOT_LOAD_RATE", "50"))  # events offered per second
SECONDS = float(os.environ.get("TEAMBOT_LOAD_SECONDS", "10"))
# `teambot serve` processes on the one database, events dealt round-robin (a load balancer)
REPLICAS = int(os.environ.get("TEAMBOT_LOAD_REPLICAS", "1"))
WARMUP = int(os.environ.get("TEAMBOT_LOAD_WARMUP", "40"))  # events first, not counted


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return (
        ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):  # peak resident set size
            return int(line.split()[1]) / 1024
    return float("nan")


async def test_sustained_slack_load(
    tmp_path: Path,
    sample_index: Path,
    fake_sglang: FakeSGLang,
    database: str,  # noqa: F811
) -> None:
    fake_sglang.behave(token_delay=0.02, answer="Full-time staff get 25 days a year [1].")
    env = serve_env(
        database,
        fake_sglang.base_url,
        TEAMBOT_LLM__MAX_CONCURRENCY="512",
        TEAMBOT_POLICY__USER_BURST="1000",
        TEAMBOT_POLICY__USER_PER_MINUTE="10000",
        TEAMBOT_POLICY__CHAT_BURST="10000",
        TEAMBOT_POLICY__CHAT_PER_MINUTE="100000",
        TEAMBOT_LOG__LEVEL=os.environ.get("TEAMBOT_LOAD_LOG_LEVEL", "WARNING"),
    )
    async with FakeSlack() as slack:
        env["TEAMBOT_SLACK__API_URL"] = slack.api_url
        replicas = [
            await start_replica(tmp_path / f"serve{n}", sample_index, env) for n in range(REPLICAS)
        ]
        urls = [u for _, u in replicas]
        try:
            for n, (proc, address) in enumerate(replicas):
                await wait_ready(address, proc, tmp_path / f"serve{n}" / "serve.log")
            total = int(RATE * SECONDS)
            second = int(time.time())  # distinct ts per event: a shared one is one message
            events = [
                user_message(
                    f"<@U0BOT> How many days of annual leave do I get? #{i}",
                    user=f"U{i:05d}",
                    ts=f"{second}.{i:06d}",
                )
                for i in range(total)
            ]

            def finals() -> list[dict[str, object]]:
                return [c for c in slack.calls_to("chat.update") if c.get("blocks")]

            sent_at: dict[str, float] = {}
            limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:

                async def deliver(number: int, event: dict[str, object]) -> None:
                    body = json.dumps(event_body(event))
                    sent_at[str(event["ts"])] = time.monotonic()
                    response = await client.post(
                        f"{urls[number % len(urls)]}/slack/events",
                        content=body,
                        headers=signed_headers(body),
                    )
                    assert response.status_code == 200

                # Warm-up at the measured rate, not counted: the first burst after start opens the
                # connection pools and fills statement caches (its first events took ~400 ms).
                warmups = [
                    user_message(
                        f"<@U0BOT> warm-up question {i}",
                        channel="C0WARMUP",
                        ts=f"{second - 1}.{i:06d}",
                    )
                    for i in range(WARMUP)
                ]
                for i, event in enumerate(warmups):
                    body = json.dumps(event_body(event))
                    url = f"{urls[i % len(urls)]}/slack/events"
                    await client.post(url, content=body, headers=signed_headers(body))
                    await asyncio.sleep(1 / RATE)
                await slack.wait_for(lambda: len({c["ts"] for c in finals()}) >= WARMUP, within=60)

                started = time.monotonic()
                cpu_before = sum(cpu_seconds(proc.pid) for proc, _ in replicas)
                own_before = time.process_time()
                tasks = []
                for i, event in enumerate(events):
                    await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
                    tasks.append(asyncio.create_task(deliver(i, event)))
                await asyncio.gather(*tasks)

            deadline = time.monotonic() + 120
            while len({c["ts"] for c in finals()}) < total + WARMUP and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            finished = time.monotonic()
            cpu_used = sum(cpu_seconds(proc.pid) for proc, _ in replicas) - cpu_before
            own_used = time.process_time() - own_before
            await asyncio.sleep(2)
            peak = sum(rss_mb(proc.pid) for proc, _ in replicas)
        finally:
            for proc, _ in replicas:
                proc.terminate()
            for proc, _ in replicas:
                proc.wait(timeout=30)

    placeholders = slack.calls_to("chat.postMessage")
    by_thread: dict[str, int] = {}
    for call in placeholders:
        by_thread[str(call.get("thread_ts"))] = by_thread.get(str(call.get("thread_ts")), 0) + 1
    answered = {t for t in by_thread if t in sent_at}
    lost = total - len(answered)
    duplicated = sum(n - 1 for n in by_thread.values() if n > 1)

    if lost:
        asked = {
            str(body["messages"][-1]["content"]).split("#", 1)[-1].split("\n", 1)[0].strip()
            for body in fake_sglang.requests
        }
        missing = [i for i, e in enumerate(events) if str(e["ts"]) not in answered]
        print(
            f"\nlost events {missing[:20]}; model asked for them: {[str(i) in asked for i in missing[:20]]}"
        )
    # event sent → model request received (matched by the question's number)
    to_model: list[float] = []
    by_number: dict[int, float] = {}
    for body, (received, _) in zip(fake_sglang.requests, fake_sglang.timings, strict=False):
        text = body["messages"][-1]["content"]
        number = text.split("#", 1)[1].split("\n", 1)[0].strip() if "#" in text else None
        if number is not None and number.isdigit():
            to_model.append(received - sent_at[str(events[int(number)]["ts"])])
            by_number[int(number)] = to_model[-1]
    # last token → final Slack update, per answer: the model request's question number gives
    # the event, the event's placeholder (its thread_ts) the chat.update that finished it
    last_token: dict[str, float] = {}
    for body, (_, last) in zip(fake_sglang.requests, fake_sglang.timings, strict=False):
        text = str(body["messages"][-1]["content"])
        number = text.split("#", 1)[1].split("\n", 1)[0].strip() if "#" in text else ""
        if number.isdigit() and last is not None:
            last_token[str(events[int(number)]["ts"])] = last
    thread_of = {
        str((c.result or {}).get("ts")): str(c.args.get("thread_ts"))
        for c in slack.calls
        if c.method == "chat.postMessage"
    }
    final_at: dict[str, float] = {}
    for call in slack.calls:
        if call.method == "chat.update" and call.args.get("blocks"):
            final_at.setdefault(thread_of.get(str(call.args.get("ts")), ""), call.at)
    tail = [final_at[t] - last_token[t] for t in last_token if t in final_at]
    if os.environ.get("TEAMBOT_LOAD_SLOWEST"):
        slow = sorted(by_number.items(), key=lambda kv: -kv[1])[:15]
        print("\nslowest to the model (event number, ms):", [(n, round(v * 1000)) for n, v in slow])
    span = finished - started
    print(
        f"\noffered {RATE:.0f}/s for {SECONDS:.0f} s ({total} events) → answered {len(answered)} "
        f"in {span:.1f} s = {len(answered) / span:.1f} msg/s sustained"
        f"\nlost {lost}, duplicated {duplicated}, server peak RSS {peak:.0f} MB"
        f"\nCPU per message: service {cpu_used / max(len(answered), 1) * 1000:.1f} ms, "
        f"load generator and fakes {own_used / max(len(answered), 1) * 1000:.1f} ms"
        f"\noverhead event → model request: p50 {statistics.median(to_model) * 1000:.1f} ms, "
        f"p99 {pct(to_model, 0.99) * 1000:.1f} ms"
        f"\noverhead last token → final update: p50 {statistics.median(tail) * 1000:.1f} ms, "
        f"p99 {pct(tail, 0.99) * 1000:.1f} ms"
    )
    assert lost == 0 and duplicated == 0  # speed is printed; the machine decides it
