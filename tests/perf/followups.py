"""A small follow-up set on the bundled sample handbook: (first question, follow-up, the
document the follow-up is about). Shared by the follow-up benchmarks."""

from __future__ import annotations

FOLLOWUPS: list[tuple[str, str, str]] = [
    ("How do I reset my VPN connection?", "And if that does not work?", "vpn.md"),
    ("How do I connect to the VPN?", "What about on a Mac?", "vpn.md"),
    ("How do I reset my password?", "How long is the new one valid?", "password-reset.md"),
    ("How do I reset my password?", "And if I lost my phone?", "password-reset.md"),
    ("How many days of annual leave do I get?", "Can I carry them over?", "leave-policy.md"),
    (
        "Which printer is on the third floor?",
        "What if it is out of toner?",
        "laptop-and-printing.md",
    ),
    ("How do I get a new laptop?", "How long does that take?", "laptop-and-printing.md"),
    ("报销流程是怎样的？", "需要多久才能到账？", "报销流程.md"),
    ("新员工入职第一天要做什么？", "那第二天呢？", "入职指南.md"),
    ("年假有几天？", "可以顺延到明年吗？", "leave-policy.md"),
]
