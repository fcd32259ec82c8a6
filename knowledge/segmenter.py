"""jieba's search-mode cut, its dictionary read from a file on disk while texts are short.

jieba keeps its dictionary (every word and every prefix of one, ~500,000 entries with their
frequencies) as one marshalled dict that it loads whole before the first cut: ~0.5 s of CPU and
~60 MB, a third of a cold Chinese `ask`. Its `Tokenizer` reads that dict only through `FREQ`
(`in`, `[]`, `.get`) and `total`, so a `Tokenizer` whose `FREQ` is `DiskWords` — the same
entries in one indexed SQLite table — cuts exactly alike, a question in a few dozen lookups.

The file is written from jieba's own loaded dictionary whenever a process has loaded it and the
file is missing or fails its check: an ingestion (past SWITCH_AT), a serving process's warm-up,
or else the first cold question, which then pays for both once. It lives in teambot's cache (`cache_root()/jieba`),
named by a format version, jieba's version and a hash of jieba's dictionary file, and is
replaced atomically; a sidecar holds the SHA-256 of its bytes, checked at open (a few ms). A
file that is missing, fails the check or raises an SQLite error during a cut is never used: the
text is cut with jieba's own dictionary instead, and the file written again.

Once a process has cut SWITCH_AT characters it loads jieba's dictionary after all (a long text
cuts faster from memory); `load` does so at once (`lexical.warmup`, a serving process's start).
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Any

from knowledge.config import cache_root

log = logging.getLogger(__name__)

FORMAT = 1  # the file's layout; a change names new files
SWITCH_AT = 4_000  # characters cut with the file before jieba's own dictionary loads
_LOOKUP = "SELECT freq FROM words WHERE word = ?"


class DiskWords(Mapping[str, int]):
    """jieba's `FREQ` read from the file, each word looked up once (thread-safe)."""

    def __init__(self, connection: sqlite3.Connection, entries: int) -> None:
        self._connection = connection
        self._entries = entries
        self._lock = threading.Lock()  # one connection, shared by the threads that cut
        self._known: dict[str, int | None] = {}

    def find(self, word: str) -> int | None:
        """The word's frequency (0 for a prefix that is no word), None when absent."""
        try:
            return self._known[word]
        except KeyError:
            pass
        with self._lock:
            row = self._connection.execute(_LOOKUP, (word,)).fetchone()
        found = None if row is None else int(row[0])
        self._known[word] = found
        return found

    def __getitem__(self, word: str) -> int:
        found = self.find(word)
        if found is None:
            raise KeyError(word)
        return found

    def __contains__(self, word: object) -> bool:
        return isinstance(word, str) and self.find(word) is not None

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            words = [row[0] for row in self._connection.execute("SELECT word FROM words")]
        return iter(words)

    def __len__(self) -> int:
        return self._entries


def dictionary_key(jieba: Any) -> str:
    """The file's name without suffix: format, jieba's version, its dictionary file's hash."""
    with jieba.get_dict_file() as source:  # jieba's own way to open its dictionary
        digest = hashlib.file_digest(source, "sha256").hexdigest()
    return f"jieba-{jieba.__version__}-f{FORMAT}-{digest[:20]}"


def write(path: Path, freq: Mapping[str, int], total: int) -> None:
    """Write `freq` and `total` to `path` (and its digest beside it), replacing both atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    temporary.unlink(missing_ok=True)  # left by a process that died while writing
    try:
        with closing(sqlite3.connect(temporary)) as db:
            db.execute("PRAGMA journal_mode = OFF")  # a private file, published whole or not
            db.execute("PRAGMA synchronous = OFF")
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            db.execute(
                "CREATE TABLE words (word TEXT PRIMARY KEY, freq INTEGER NOT NULL) WITHOUT ROWID"
            )
            words = ((word, freq[word]) for word in sorted(freq))  # no second copy of the pairs
            db.executemany("INSERT INTO words VALUES (?, ?)", words)
            meta = {"format": FORMAT, "key": path.stem, "total": total, "entries": len(freq)}
            db.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
            db.commit()
        digest = _temporary(_digest_path(path))
        digest.write_text(_digest(temporary) + "\n", encoding="ascii")
        os.replace(digest, _digest_path(path))
        os.replace(temporary, path)
    finally:
        for left in (temporary, _temporary(_digest_path(path))):
            left.unlink(missing_ok=True)


def read(path: Path) -> tuple[DiskWords, int]:
    """Open a written file: (its words, jieba's total). Raises ValueError when it fails its
    check (digest, format, name), OSError or sqlite3.Error when it cannot be read."""
    expected = _digest_path(path).read_text(encoding="ascii").strip()
    if _digest(path) != expected:
        raise ValueError(f"{path} does not match its digest")
    uri = path.absolute().as_uri() + "?mode=ro&immutable=1"  # replaced, never changed in place
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
    if meta.get("format") != str(FORMAT) or meta.get("key") != path.stem:
        connection.close()
        raise ValueError(f"{path} is not a jieba dictionary of format {FORMAT}")
    return DiskWords(connection, int(meta["entries"])), int(meta["total"])


def _digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _digest_path(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _temporary(path: Path) -> Path:
    """A name beside `path` that only this thread writes."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.partial")


class Segmenter:
    """`cut_for_search` as jieba's own, from the file while a process has cut little."""

    def __init__(self, folder: Path | None = None, *, switch_at: int = SWITCH_AT) -> None:
        self._folder = folder
        self._switch_at = switch_at
        self._lock = threading.Lock()
        self._jieba: Any = None  # the module, imported at first use
        self._path: Path | None = None
        self._disk: Any = None  # a jieba.Tokenizer over DiskWords
        self._full: Any = None  # jieba's own tokenizer, its dictionary loaded
        self._checked = False  # the file was opened, or found wanting
        self._cut = 0  # characters cut with the file

    @property
    def loaded(self) -> bool:
        """Whether jieba's own dictionary is in memory."""
        return self._full is not None

    def cut_for_search(self, text: str) -> list[str]:
        """jieba's `lcut_for_search(text)`."""
        tokenizer = self._tokenizer(len(text))
        if tokenizer is self._full:
            return list(tokenizer.lcut_for_search(text))
        try:
            return list(tokenizer.lcut_for_search(text))
        except sqlite3.Error as error:  # the file broke while in use: never a wrong cut
            log.warning("jieba's dictionary file failed (%s): loading jieba's own", error)
            with self._lock:
                self._disk = None  # `load` writes the file again
            return list(self.load().lcut_for_search(text))

    def load(self) -> Any:
        """Load jieba's own dictionary now (about half a second); write the file if it is
        missing or fails its check. Returns jieba's tokenizer."""
        with self._lock:
            return self._load()

    def _tokenizer(self, length: int) -> Any:
        with self._lock:
            if self._full is not None:
                return self._full
            if self._cut + length > self._switch_at:
                return self._load()
            if not self._checked:
                self._disk = self._open()
            if self._disk is None:
                return self._load()
            self._cut += length
            return self._disk

    def _module(self) -> Any:
        if self._jieba is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            self._jieba = jieba
        return self._jieba

    def _file(self) -> Path:
        if self._path is None:
            folder = self._folder or cache_root() / "jieba"
            self._path = folder / f"{dictionary_key(self._module())}.sqlite"
        return self._path

    def _open(self) -> Any:
        """A Tokenizer over the file, or None when it is missing or fails its check."""
        self._checked = True
        jieba = self._module()
        try:
            words, total = read(self._file())
        except FileNotFoundError:
            return None
        except (OSError, ValueError, sqlite3.Error, KeyError) as error:
            log.warning("jieba's dictionary file is unusable (%s): writing it again", error)
            return None
        tokenizer = jieba.Tokenizer()
        tokenizer.FREQ, tokenizer.total = words, total
        tokenizer.initialized = True  # the file stands in for its dictionary: never load it
        return tokenizer

    def _load(self) -> Any:
        if self._full is not None:
            return self._full
        jieba = self._module()
        jieba.initialize()  # jieba's prefix dictionary, from its own cache (~0.5 s)
        if not self._checked:
            self._disk = self._open()
        if self._disk is None:
            self._write(jieba.dt)
        self._full, self._disk = jieba.dt, None
        return self._full

    def _write(self, tokenizer: Any) -> None:
        try:
            write(self._file(), tokenizer.FREQ, tokenizer.total)
        except (OSError, sqlite3.Error) as error:  # jieba's own keeps cutting, only slower
            log.warning(
                "could not write jieba's dictionary file (%s): a short Chinese text loads "
                "jieba's whole dictionary instead (~0.5 s); make the folder writable or point "
                "XDG_CACHE_HOME at one",
                error,
            )
