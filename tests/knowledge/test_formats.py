"""HTML, PDF, Word and FAQ sheets: parsed into sections, chunked as the issue describes."""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge.chunking import chunk_document
from knowledge.loaders import LoadError, faq_pairs, list_files, load_file
from tests.knowledge.conftest import count_words
from tests.knowledge.files import docx, pdf, xlsx

HTML = """<html><head><title>VPN guide | Intranet</title></head><body>
<nav><a href="/">Home</a> <a href="/it">IT</a></nav>
<main><h1>Connecting to the VPN</h1><p>Use the GlobalConnect client from home on any laptop.</p>
<h2>Resetting the VPN</h2><p>Quit the client. Delete the profile. Start it again.</p>
<h2>报销</h2><p>费用发生后30天内提交报销申请。超过90天不再受理。</p></main>
<footer>Copyright 2025 Example Corp, all rights reserved.</footer></body></html>"""


def _chunks(path: Path) -> list[tuple[str, str]]:
    doc = load_file(path, path.parent)
    chunks = chunk_document(
        doc.kind, doc.text, count_tokens=count_words, chunk_tokens=200, chunk_overlap=20
    )
    return [(c.section, c.text) for c in chunks]


def test_html_main_text_and_heading_sections(tmp_path: Path) -> None:
    path = tmp_path / "vpn.html"
    path.write_text(HTML, "utf-8")

    doc = load_file(path, tmp_path)
    chunks = _chunks(path)

    assert doc.title == "Connecting to the VPN" and doc.kind == "markdown"
    assert [s for s, _ in chunks] == [
        "Connecting to the VPN",
        "Connecting to the VPN > Resetting the VPN",
        "Connecting to the VPN > 报销",
    ]
    assert chunks[2][1] == "费用发生后30天内提交报销申请。超过90天不再受理。"
    assert "Copyright" not in doc.text and "Home" not in doc.text  # boilerplate dropped


def test_pdf_pages_become_sections(tmp_path: Path) -> None:
    path = tmp_path / "policy.pdf"
    path.write_bytes(
        pdf(["Travel is booked by the travel desk.", "Hotels cost at most 600."], "Travel")
    )

    doc = load_file(path, tmp_path)

    assert (doc.title, doc.kind) == ("Travel", "pdf")
    assert _chunks(path) == [
        ("Page 1", "Travel is booked by the travel desk."),
        ("Page 2", "Hotels cost at most 600."),
    ]


def test_docx_headings_become_sections(tmp_path: Path) -> None:
    path = tmp_path / "onboarding.docx"
    path.write_bytes(
        docx("Onboarding", [("First day", "Collect your badge."), ("入职", "上午报到。")])
    )

    assert load_file(path, tmp_path).title == "Onboarding"
    assert _chunks(path) == [
        ("Onboarding > First day", "Collect your badge."),
        ("Onboarding > 入职", "上午报到。"),
    ]


def test_faq_csv_each_pair_is_one_chunk(tmp_path: Path) -> None:
    path = tmp_path / "faq.csv"
    path.write_text(
        "问题,答案\n怎么预订会议室？,在日历里添加会议室。\nHow do I print?,Use PrintHub.\n", "utf-8"
    )

    assert _chunks(path) == [
        ("怎么预订会议室？", "怎么预订会议室？\n在日历里添加会议室。"),
        ("How do I print?", "How do I print?\nUse PrintHub."),
    ]


def test_faq_xlsx_without_header_uses_first_two_columns(tmp_path: Path) -> None:
    path = tmp_path / "faq.xlsx"
    path.write_bytes(xlsx([["Where is the printer?", "Third floor.", "ignored"], ["", ""]]))

    assert _chunks(path) == [("Where is the printer?", "Where is the printer?\nThird floor.")]


def test_long_faq_answer_is_split_but_keeps_its_question() -> None:
    text = "## Q?\n\n" + " ".join(f"w{i}" for i in range(100)) + "\n"
    chunks = chunk_document("faq", text, count_tokens=count_words, chunk_tokens=40, chunk_overlap=0)
    assert len(chunks) > 2 and all(c.text.startswith("Q?\n") and c.tokens <= 40 for c in chunks)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("broken.pdf", b"%PDF-1.4 nothing else", "pdf"),
        ("broken.docx", b"PK not a zip", "docx"),
        ("empty.csv", b"just one column\n", "question"),
        ("blank.html", b"<html><body>  </body></html>", "no text"),
    ],
)
def test_unparsable_files_raise_load_error(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(LoadError, match=message):
        load_file(path, tmp_path)


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    for name in ("a.md", "drafts/b.md", "policies/c.pdf", "policies/old/d.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    names = [
        p.relative_to(tmp_path).as_posix()
        for p in list_files(tmp_path, ["policies/*"], ["*/old/*"])
    ]
    assert names == ["policies/c.pdf"]
    assert [p.name for p in list_files(tmp_path, [], ["drafts/*"])] == ["a.md", "c.pdf", "d.md"]


def test_faq_pairs_need_two_columns() -> None:
    assert faq_pairs([["Q", "A"], ["q1", "a1"]]) == [("q1", "a1")]
    with pytest.raises(LoadError):
        faq_pairs([["only"]])
