"""A late mention's thread context: the adapter reads the thread's earlier messages as data
(Inbound.history); the core decides whether they lead the question."""

from __future__ import annotations

from dataclasses import replace

from engine.messages import Inbound
from engine.text import clip
from engine.threads.escalation import asks_for_human, resolves

HEADER = "Earlier in this thread:"


def with_thread_context(inbound: Inbound, *, answered_before: bool) -> Inbound:
    """`inbound` with the thread's earlier messages ahead of the question, when the bot is new
    to the thread (it has answered nothing there yet) and the message asks something; as it
    came otherwise (the bot's own history of the thread is context enough)."""
    question = inbound.text.strip()
    if answered_before or not inbound.history or not question:
        return inbound
    if asks_for_human(question) or resolves(question):
        return inbound
    return replace(inbound, text=f"{context_block(inbound)}\n\nQuestion: {question}")


def context_block(inbound: Inbound) -> str:
    lines = [f"- {m.author}: {clip(' '.join(m.text.split()), 300)}" for m in inbound.history]
    return "\n".join([HEADER, *lines])
