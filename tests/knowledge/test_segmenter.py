"""jieba's dictionary read from a file on disk cuts exactly as jieba's own (knowledge/segmenter.py)."""

from __future__ import annotations

import hashlib
import logging
import shutil
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from knowledge.lexical import _CJK_RUN
from knowledge.segmenter import Segmenter, dictionary_key, read
from tests.perf.followups import FOLLOWUPS
from tests.perf.knowledge_eval import QUESTIONS

ROOT = Path(__file__).resolve().parents[2]
NEVER = 10**9  # a switch_at no test text reaches

MIXED = [
    "如何重置VPN密码？",
    "VPN报错GC-412怎么办？证书过期了，访问 expense.example.com 也打不开",
    "年假有15天，未休完的可以顺延到次年3月31日；病假需要医生证明。",
    "王连字负责报销审核，王连负责入职。",  # an unknown name: jieba's HMM path
    "中华人民共和国北京大学生命科学学院的研究生命名规则",  # search mode's sub-words
    "版本v2.3.1已发布，下载地址：https://intranet.example.com/tools?id=42&lang=zh",
    "C++和C#的区别是什么？Python 3.11 的 f-string 呢？100% 确定吗",
    "全角符号：（括号）【方括号】《书名号》「引号」……——～！＠＃",
    "繁體中文也能切分嗎？臺灣的資訊部門怎麼重設密碼",
    "表情😀和罕见字㐀㐁䶵以及兼容字﨑﨔，空格  制表\t换行\n回车\r\n结束",
    "１２３全角数字和ＡＢＣ全角字母，以及2026年12月7日18:45的会议",
    "a",
    "",
    "。",
    "打印机卡纸了怎么办 printer jammed 会议室投影仪连不上",
]


def _corpus() -> list[str]:
    texts = list(MIXED)
    texts += [question for question, _ in QUESTIONS]
    texts += [text for follow in FOLLOWUPS for text in follow[:2]]
    texts += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "knowledge/sample").iterdir())]
    texts += [(ROOT / "tests/perf/eval_handbook.txt").read_text(encoding="utf-8")]
    # what teambot cuts: the Chinese runs of lower-cased text
    runs = [m.group() for text in texts for m in _CJK_RUN.finditer(text.lower())]
    return texts + runs


def _jieba() -> Any:
    import jieba

    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    return jieba


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the file, written from jieba's own dictionary."""
    folder = tmp_path_factory.mktemp("jieba")
    Segmenter(folder).load()
    return folder


def _file(folder: Path) -> Path:
    (path,) = folder.glob("*.sqlite")
    return path


def test_the_file_holds_jiebas_dictionary(written: Path) -> None:
    jieba = _jieba()
    path = _file(written)
    assert path.stem == dictionary_key(jieba)
    words, total = read(path)
    assert total == jieba.dt.total
    assert len(words) == len(jieba.dt.FREQ)
    assert dict(words.items()) == jieba.dt.FREQ


def test_the_file_cuts_a_varied_corpus_as_jieba_does(written: Path) -> None:
    jieba = _jieba()
    segmenter = Segmenter(written, switch_at=NEVER)
    corpus = _corpus()
    assert sum(len(text) for text in corpus) > 20_000
    for text in corpus:
        assert segmenter.cut_for_search(text) == jieba.lcut_for_search(text), text[:80]
    assert not segmenter.loaded, "the corpus was cut from jieba's own dictionary, not the file"


def test_threads_cut_alike_from_one_file(written: Path) -> None:
    jieba = _jieba()
    segmenter = Segmenter(written, switch_at=NEVER)
    texts = [question for question, _ in QUESTIONS] * 5
    results: dict[int, list[list[str]]] = {}

    def cut(n: int) -> None:
        results[n] = [segmenter.cut_for_search(text) for text in texts[n::4]]

    threads = [threading.Thread(target=cut, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for n in range(4):
        assert results[n] == [jieba.lcut_for_search(text) for text in texts[n::4]]
    assert not segmenter.loaded


def test_a_missing_file_is_written_and_then_used(tmp_path: Path) -> None:
    jieba = _jieba()
    first = Segmenter(tmp_path)
    assert first.cut_for_search("如何重置VPN密码") == jieba.lcut_for_search("如何重置VPN密码")
    assert first.loaded  # no file yet: jieba's own, which then wrote it
    second = Segmenter(tmp_path)
    assert second.cut_for_search("如何重置VPN密码") == jieba.lcut_for_search("如何重置VPN密码")
    assert not second.loaded


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    digest = path.with_suffix(".sha256")
    if how == "flipped":
        path.write_bytes(data[:5000] + bytes([data[5000] ^ 0xFF]) + data[5001:])
    elif how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"not a database" * 100)
    elif how == "no digest":
        digest.unlink()
    else:  # a file that matches its digest but is not what this code reads
        with closing(sqlite3.connect(path)) as db:
            db.execute("UPDATE meta SET value = ? WHERE key = ?", how.split("="))
            db.commit()
        digest.write_text(hashlib.sha256(path.read_bytes()).hexdigest())


DAMAGES = ["flipped", "truncated", "garbage", "no digest", "0=format", "other=key"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_file_is_never_used_and_is_written_again(
    written: Path, tmp_path: Path, damage: str
) -> None:
    jieba = _jieba()
    path = tmp_path / _file(written).name
    shutil.copy(_file(written), path)
    shutil.copy(_file(written).with_suffix(".sha256"), path.with_suffix(".sha256"))
    _damage(path, damage)
    segmenter = Segmenter(tmp_path, switch_at=NEVER)
    text = "王连字负责报销审核，如何重置VPN密码"
    assert segmenter.cut_for_search(text) == jieba.lcut_for_search(text)
    assert segmenter.loaded, "a damaged file was used"
    words, total = read(path)  # written again, and it checks
    assert total == jieba.dt.total and len(words) == len(jieba.dt.FREQ)


def test_a_file_that_breaks_while_in_use_is_left_for_jiebas_own(tmp_path: Path) -> None:
    jieba = _jieba()
    Segmenter(tmp_path).load()
    segmenter = Segmenter(tmp_path, switch_at=NEVER)
    assert segmenter.cut_for_search("重置") == jieba.lcut_for_search("重置")
    path = _file(tmp_path)
    with path.open("r+b") as file:  # the same file, overwritten in place after its check
        file.seek(4096)
        file.write(b"\0" * (path.stat().st_size - 4096))
    text = "北京大学生命科学学院的报销流程和入职指南"
    assert segmenter.cut_for_search(text) == jieba.lcut_for_search(text)
    assert segmenter.loaded


def test_a_file_that_cannot_be_written_leaves_jiebas_own(tmp_path: Path) -> None:
    jieba = _jieba()
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the folder should be")
    segmenter = Segmenter(blocked / "jieba")
    text = "如何重置VPN密码？报销流程"
    assert segmenter.cut_for_search(text) == jieba.lcut_for_search(text)
    assert segmenter.loaded
    assert segmenter.cut_for_search("入职指南") == jieba.lcut_for_search("入职指南")


def test_long_texts_switch_to_jiebas_own_dictionary(written: Path) -> None:
    jieba = _jieba()
    segmenter = Segmenter(written, switch_at=30)
    short, long = "如何重置VPN密码", "年假有15天，未休完的可以顺延到次年3月31日；病假需要医生证明。"
    assert segmenter.cut_for_search(short) == jieba.lcut_for_search(short)
    assert not segmenter.loaded
    assert segmenter.cut_for_search(long) == jieba.lcut_for_search(long)
    assert segmenter.loaded


def test_lexical_tokenize_keeps_jiebas_words() -> None:
    from knowledge.lexical import stopwords, tokenize

    jieba = _jieba()
    text = "北京大学生命科学学院的报销流程和入职指南在哪里"
    expected = [w for w in jieba.lcut_for_search(text) if w not in stopwords() and w.strip()]
    assert tokenize(text) == expected
