"""A real conversation core for the Slack contract tests, with retrieval held fixed.

The Conversation, its SQLite store (migrated with Alembic) and the LLM client pointed at the fake
SGLang are the real ones; only retrieval is a fixed stand-in, so these tests do not load the
embedding model and do not move when the knowledge package's ranking changes (it has its own
tests). "VPN" and "leave" questions find a passage; anything else finds none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.db import upgrade_async
from engine.config import ConversationSettings, LLMSettings, PolicySettings
from engine.conversation import Conversation
from engine.llm import LLMClient
from engine.policy import Policy
from engine.store.conversations import ConversationStore
from knowledge import Passage
from tests.fakes.sglang import FakeSGLang

PASSAGES = {
    "vpn": Passage(
        text="To reset the VPN, quit the client, delete the profile and sign in again.",
        title="VPN",
        source="sample",
        location="sample/vpn.md",
        section="Reset",
        score=0.9,
        chunk_id="vpn-1",
    ),
    "leave": Passage(
        text="Full-time staff get 25 days of annual leave.",
        title="Leave policy",
        source="sample",
        location="https://wiki.example.com/leave",
        section="",
        score=0.9,
        chunk_id="leave-1",
    ),
}


class FixedRetriever:
    """Stands in for knowledge.Retriever (same calls the core makes)."""

    min_score = 0.35
    top_k = 4

    def collections_for(self, platform: str, chat_id: str) -> tuple[str, ...]:
        return ("default",)

    async def retrieve(self, query: str, **_: object) -> list[Passage]:
        words = query.lower()
        return [p for key, p in PASSAGES.items() if key in words]

    async def search(self, texts: Sequence[str], reader: object = None) -> list[Passage]:
        """The passages any of the texts names, each once, as Retriever.search merges them."""
        found = {p.chunk_id: p for text in texts for p in await self.retrieve(text)}
        return list(found.values())[: self.top_k if len(texts) > 1 else None]


@dataclass
class SlackCore:
    conversation: Conversation
    store: ConversationStore
    llm: LLMClient
    fake: FakeSGLang

    async def close(self) -> None:
        await self.llm.close()
        await self.store.close()


async def make_slack_core(
    tmp_path: Path,
    fake: FakeSGLang,
    conversation: dict[str, object] | None = None,
    policy: PolicySettings | None = None,
) -> SlackCore:
    url = f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}"
    await upgrade_async(url)
    store = ConversationStore.from_url(url)
    llm = LLMClient(LLMSettings(base_url=fake.base_url, first_token_timeout=5, idle_timeout=2))
    core = Conversation(
        ConversationSettings(**(conversation or {})),
        store=store,
        retriever=FixedRetriever(),  # type: ignore[arg-type]
        llm=llm,
        policy=Policy(policy or PolicySettings()),
    )
    return SlackCore(core, store, llm, fake)
