"""The project's retrieval evaluation set: the sample handbook's questions plus a larger handbook.

- `tests/perf/knowledge_eval.py`: 64 questions over the bundled sample (32 English, 32 Chinese).
- `tests/perf/eval_handbook.txt`: 60 more documents (30 English, 30 Chinese) of a fictional
  company, four paraphrased questions each (240).
- follow-ups (a question that only makes sense after the one before it) and questions the
  knowledge base cannot answer, half of them near misses on its own topics (they calibrate the
  grounding floor per language).
- filler documents (team notes made of the handbook's vocabulary, generated deterministically)
  so that every question has plausible distractors.

`write_corpus(root)` writes every document under root/sample and root/handbook (and
root/notes); `cases()` returns `knowledge.eval.EvalCase`s whose expected sources are those
files' paths.
"""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path

from knowledge import KnowledgeBase
from knowledge.eval import EvalCase
from tests.perf.knowledge_eval import CHINESE, ENGLISH, OFF_TOPIC

HANDBOOK = Path(__file__).with_name("eval_handbook.txt")


@dataclass(frozen=True)
class HandbookDoc:
    file: str
    title: str
    body: str
    questions: tuple[str, ...]


def handbook() -> list[HandbookDoc]:
    docs: list[HandbookDoc] = []
    blocks = HANDBOOK.read_text("utf-8").split("\n## ")[1:]
    for block in blocks:
        head, *lines = block.strip().splitlines()
        file, title = (part.strip() for part in head.split("|", 1))
        body = " ".join(line.strip() for line in lines if not line.startswith("?"))
        questions = tuple(line[1:].strip() for line in lines if line.startswith("?"))
        docs.append(HandbookDoc(file, title, body, questions))
    return docs


FOLLOW_UPS = [  # (previous question, follow-up, expected file)
    ("How much does a quarterly parking permit cost?", "And for motorbikes?", "parking.md"),
    ("How long is parental leave for birth parents?", "What about partners?", "parental-leave.md"),
    ("When are performance reviews?", "And when do raises apply?", "performance-review.md"),
    ("How much is the on-call allowance?", "How fast must I acknowledge a page?", "on-call.md"),
    ("What is a SEV1 incident?", "Does it need a postmortem?", "incidents.md"),
    ("What is the learning budget per year?", "Does it roll over?", "learning-budget.md"),
    ("How do I register a visitor?", "Can they go into the lab?", "visitors.md"),
    ("When is salary paid?", "And if that is a Saturday?", "payroll.md"),
    ("How much is the referral bonus?", "When is it paid?", "referral.md"),
    (
        "Which laptops need disk encryption?",
        "Where is the recovery key kept?",
        "disk-encryption.md",
    ),
    ("婚假有几天", "需要交什么材料", "婚假.md"),
    ("年终奖什么时候发", "试用期的人有吗", "年终奖.md"),
    ("班车几点发车", "一个月多少钱", "班车.md"),
    ("门禁卡丢了怎么办", "补办要几天", "门禁卡.md"),
    ("公积金交多少", "租房怎么提取", "公积金.md"),
    ("宿舍怎么申请", "最长能住多久", "员工宿舍.md"),
    ("团建经费多少", "没用完能累积吗", "团建经费.md"),
    ("离职要提前多久申请", "离职证明什么时候开", "离职交接.md"),
    ("值班补贴多少", "告警多久内响应", "值班制度.md"),
    ("数据库多久备份一次", "备份保留几天", "数据备份.md"),
]

NO_ANSWER = [
    *OFF_TOPIC,
    # near misses: the handbook's own topics, but nothing in it answers these
    "What is the dress code at the office?",
    "How do I apply for a sabbatical?",
    "Is there a company car for the sales team?",
    "Can I bring my dog to the office?",
    "How do I order business cards?",
    "Is there a room for a nap during lunch?",
    "How do I ask for a salary advance?",
    "Is there a shuttle to the airport?",
    "Which charity does the company support?",
    "Where can I smoke during breaks?",
    "Can I work from another country for a month?",
    "Who organises the summer party?",
    "How do I get stock options?",
    "What is the company's tax number?",
    "How do I book a desk for a hot-desking day?",
    "公司有没有健身房",
    "可以带宠物来上班吗",
    "年会什么时候举办",
    "公司有没有股票期权",
    "怎么申请印名片",
    "办公室可以抽烟吗",
    "工作服在哪里领",
    "有没有午休的房间",
    "可以预支工资吗",
    "公司支持哪些慈善项目",
    "公司有没有托儿所",
    "上班着装有什么要求",
    "公司的税号是多少",
    "出国长期旅游可以停薪留职吗",
    "怎么申请公司的车",
]

_EN_WORDS = (
    "release review customer budget meeting office team project laptop access report ticket "
    "deadline approval schedule invoice contract training badge manager support roadmap "
    "dashboard migration backlog sprint vendor audit policy request quarter"
).split()
_ZH_WORDS = (
    "发布 评审 客户 预算 会议 办公室 团队 项目 电脑 权限 报告 工单 截止 审批 排期 发票 合同 "
    "培训 工卡 经理 支持 规划 看板 迁移 需求 迭代 供应商 审计 制度 申请 季度"
).split()


def _note(rng: random.Random, words: list[str], chinese: bool, n: int) -> str:
    sentences = []
    for _ in range(6):
        picked = rng.sample(words, 4)
        if chinese:
            sentences.append(
                f"第{n}组本周讨论了{picked[0]}和{picked[1]}，{picked[2]}的{picked[3]}下周再跟进。"
            )
        else:
            sentences.append(
                f"Team {n} discussed the {picked[0]} and the {picked[1]}; the {picked[2]} "
                f"{picked[3]} follows next week."
            )
    return " ".join(sentences)


def write_corpus(root: Path, notes: int = 120) -> None:
    """The sample, the handbook and `notes` filler notes (half Chinese) under `root`."""
    shutil.copytree(KnowledgeBase.sample_path(), root / "sample")
    (root / "handbook").mkdir(parents=True)
    for doc in handbook():
        (root / "handbook" / doc.file).write_text(f"# {doc.title}\n\n{doc.body}\n", "utf-8")
    (root / "notes").mkdir()
    rng = random.Random(18)
    for n in range(notes):
        chinese = n % 2 == 1
        text = _note(rng, _ZH_WORDS if chinese else _EN_WORDS, chinese, n)
        title = f"第{n}组周报" if chinese else f"Team {n} weekly notes"
        (root / "notes" / f"notes-{n:03d}.md").write_text(f"# {title}\n\n{text}\n", "utf-8")


def cases() -> list[EvalCase]:
    """Every question: answerable (sample, handbook), follow-ups, then unanswerable."""
    found = [EvalCase(q, (f"sample/{_tail(loc)}",)) for q, loc in ENGLISH + CHINESE]
    for doc in handbook():
        found += [EvalCase(q, (f"handbook/{doc.file}",)) for q in doc.questions]
    found += [EvalCase(q, (f"handbook/{f}",), previous=p) for p, q, f in FOLLOW_UPS]
    found += [EvalCase(q) for q in NO_ANSWER]
    return found


def _tail(location: str) -> str:
    return location.split("/", 1)[1]
