"""The vector store: one chromadb collection of chunks with our own embeddings.

chromadb's client is blocking, so every call goes through `asyncio.to_thread`. We always pass
embeddings in, and the collection is created without an embedding function, so chromadb never
loads (or downloads) its default ONNX model. Telemetry is off: there is no network to send it to.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from knowledge.types import Passage

log = logging.getLogger(__name__)
T = TypeVar("T")
# Pauses between tries of a read while the Chroma server cannot be reached (a restart takes a
# few seconds): a question asked meanwhile is answered a little late, not apologised for.
SERVER_RETRIES = (0.5, 1.0, 2.0, 3.0, 4.0)

MetadataValue = str | int | float | bool
Metadata = Mapping[str, MetadataValue]

_PAGE = 5000  # rows per `get` when scanning metadata


class VectorStore:
    """Chunks in a chromadb collection (cosine space): embedded folder or a Chroma server.

    Every method is async and runs the blocking chromadb call in a worker thread.
    """

    def __init__(self, client: Any, collection: Any, *, remote: bool = False) -> None:
        self._client = client
        self._collection = collection
        self._max_batch = int(client.get_max_batch_size())
        self._retries = SERVER_RETRIES if remote else ()

    @classmethod
    async def open(
        cls, collection: str, *, persist_dir: Path | None = None, chroma_url: str = ""
    ) -> VectorStore:
        """Open (creating when missing) a collection: on a Chroma server when `chroma_url` is
        set, else embedded under `persist_dir`."""
        return await asyncio.to_thread(cls._open_sync, collection, persist_dir, chroma_url)

    @classmethod
    def _open_sync(cls, name: str, persist_dir: Path | None, chroma_url: str) -> VectorStore:
        from knowledge.chroma import load

        chromadb = load()
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False)
        client: Any
        if chroma_url:
            url = urlsplit(chroma_url)
            if not url.hostname or url.scheme not in ("http", "https"):
                raise ValueError(
                    f"knowledge.chroma_url {chroma_url!r} is not an http(s) URL: use e.g. "
                    "http://chroma:8000, or leave it empty for the embedded store"
                )
            ssl = url.scheme == "https"
            client = chromadb.HttpClient(
                host=url.hostname,
                port=url.port or (443 if ssl else 8000),
                ssl=ssl,
                settings=settings,
            )
        else:
            if persist_dir is None:
                raise ValueError("persist_dir is required for the embedded store")
            persist_dir.mkdir(parents=True, exist_ok=True)
            client = chromadb.PersistentClient(path=str(persist_dir), settings=settings)
        collection = client.get_or_create_collection(
            name,
            configuration={"hnsw": {"space": "cosine"}},
            embedding_function=None,
        )
        return cls(client, collection, remote=bool(chroma_url))

    async def upsert(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        """Insert or replace chunks (all four sequences aligned)."""
        if not (len(ids) == len(embeddings) == len(documents) == len(metadatas)):
            raise ValueError("ids, embeddings, documents and metadatas differ in length")
        await asyncio.to_thread(self._upsert_sync, ids, embeddings, documents, metadatas)

    def _upsert_sync(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        documents: Sequence[str],
        metadatas: Sequence[Metadata],
    ) -> None:
        for start in range(0, len(ids), self._max_batch):
            end = start + self._max_batch
            self._collection.upsert(
                ids=list(ids[start:end]),
                embeddings=[list(e) for e in embeddings[start:end]],
                documents=list(documents[start:end]),
                metadatas=[dict(m) for m in metadatas[start:end]],
            )

    async def delete_document(self, source: str, uri: str) -> None:
        """Remove every chunk of one document."""
        where = {"$and": [{"source": source}, {"uri": uri}]}
        await asyncio.to_thread(self._collection.delete, where=where)

    async def delete_source(self, source: str) -> None:
        """Remove every chunk of one knowledge source."""
        await asyncio.to_thread(self._collection.delete, where={"source": source})

    async def query(
        self,
        embedding: Sequence[float],
        k: int,
        *,
        collections: Sequence[str] | None = None,
        admitted: Sequence[str] | None = None,
    ) -> list[Passage]:
        """The `k` nearest chunks, best first; score = 1 - cosine distance.

        With `collections`, only chunks of those knowledge collections are searched; with
        `admitted`, only chunks whose audience key is one of those (`knowledge.audience`).
        """
        return await self._read(self._query_sync, list(embedding), k, collections, admitted)

    def _query_sync(
        self,
        embedding: list[float],
        k: int,
        collections: Sequence[str] | None,
        admitted: Sequence[str] | None,
    ) -> list[Passage]:
        if k < 1 or (admitted is not None and not admitted):
            return []
        clauses: list[dict[str, Any]] = []
        if collections is not None:
            clauses.append({"collection": {"$in": list(collections)}})
        if admitted is not None:
            clauses.append(_audience_clause(admitted))
        where = clauses[0] if len(clauses) == 1 else {"$and": clauses} if clauses else None
        result = self._collection.query(
            query_embeddings=[embedding],
            n_results=k,
            where=where,
            include=["documents", "metadatas", "distances"],
        )
        ids = result["ids"][0]
        documents = (result.get("documents") or [[]])[0]
        metadatas = (result.get("metadatas") or [[]])[0]
        distances = (result.get("distances") or [[]])[0]
        passages = [
            _passage(chunk_id, text or "", meta or {}, distance)
            for chunk_id, text, meta, distance in zip(
                ids, documents, metadatas, distances, strict=True
            )
        ]
        passages.sort(key=attrgetter("score"), reverse=True)
        return passages

    async def get(self, ids: Sequence[str]) -> dict[str, Passage]:
        """Chunks by id (score 0.0); ids not in the store are left out."""
        if not ids:
            return {}
        return await self._read(self._get_sync, list(ids))

    async def _read(self, call: Callable[..., T], *args: Any) -> T:
        """`call(*args)` in a worker thread; on a Chroma server, tried again for ~10 s while the
        server cannot be reached."""
        for pause in (*self._retries, None):
            try:
                return await asyncio.to_thread(call, *args)
            except httpx.TransportError as error:
                if pause is None:
                    raise
                log.warning("chroma server unreachable (%s); trying again in %.1f s", error, pause)
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover - the last try raises or returns

    def _get_sync(self, ids: list[str]) -> dict[str, Passage]:
        page = self._collection.get(ids=ids, include=["documents", "metadatas"])
        rows = zip(
            page["ids"], page.get("documents") or [], page.get("metadatas") or [], strict=True
        )
        return {i: _passage(i, text or "", meta or {}, 1.0) for i, text, meta in rows}

    async def vectors(self, chunk_hashes: Sequence[str]) -> dict[str, list[float]]:
        """chunk hash -> a stored embedding of a chunk with that hash (to reuse, not re-embed)."""
        if not chunk_hashes:
            return {}
        return await asyncio.to_thread(self._vectors_sync, sorted(set(chunk_hashes)))

    def _vectors_sync(self, hashes: list[str]) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for start in range(0, len(hashes), 500):
            page = self._collection.get(
                where={"chunk_hash": {"$in": hashes[start : start + 500]}},
                include=["embeddings", "metadatas"],
            )
            embeddings = page.get("embeddings")
            if embeddings is None:
                continue
            for meta, vector in zip(page.get("metadatas") or [], embeddings, strict=True):
                digest = str((meta or {}).get("chunk_hash", ""))
                if digest:
                    found[digest] = [float(x) for x in vector]
        return found

    async def relabel(self, ids: Sequence[str], audience: str) -> None:
        """Give chunks another audience key (a document's permissions changed, not its text)."""
        if ids:
            await asyncio.to_thread(self._relabel_sync, list(ids), audience)

    def _relabel_sync(self, ids: list[str], audience: str) -> None:
        for start in range(0, len(ids), self._max_batch):
            batch = ids[start : start + self._max_batch]
            self._collection.update(ids=batch, metadatas=[{"audience": audience}] * len(batch))

    async def delete(self, ids: Sequence[str]) -> None:
        """Remove chunks by id."""
        if ids:
            await asyncio.to_thread(self._delete_sync, list(ids))

    def _delete_sync(self, ids: list[str]) -> None:
        for start in range(0, len(ids), self._max_batch):
            self._collection.delete(ids=ids[start : start + self._max_batch])

    async def ids(self, source: str) -> set[str]:
        """Every chunk id of a source in the store (live or not)."""
        return await asyncio.to_thread(self._ids_sync, source)

    def _ids_sync(self, source: str) -> set[str]:
        found: set[str] = set()
        offset = 0
        while True:
            page = self._collection.get(
                where={"source": source}, include=[], limit=_PAGE, offset=offset
            )
            found.update(page["ids"])
            if len(page["ids"]) < _PAGE:
                return found
            offset += _PAGE

    async def document_chunks(self, source: str, uri: str) -> list[Passage]:
        """One document's chunks in order (not a search: every score is 1.0)."""
        return await asyncio.to_thread(self._document_chunks_sync, source, uri)

    def _document_chunks_sync(self, source: str, uri: str) -> list[Passage]:
        page = self._collection.get(
            where={"$and": [{"source": source}, {"uri": uri}]},
            include=["documents", "metadatas"],
        )
        rows = zip(
            page["ids"], page.get("documents") or [], page.get("metadatas") or [], strict=True
        )
        passages = [
            (int((meta or {}).get("chunk", 0)), _passage(i, text or "", meta or {}, 0.0))
            for i, text, meta in rows
        ]
        return [p for _, p in sorted(passages, key=lambda item: item[0])]

    async def count(self) -> int:
        """Chunks in the collection."""
        return int(await asyncio.to_thread(self._collection.count))

    async def fingerprints(self, source: str) -> dict[str, str]:
        """uri -> content hash of every document of `source` in the store."""
        return await asyncio.to_thread(self._fingerprints_sync, source)

    def _fingerprints_sync(self, source: str) -> dict[str, str]:
        found: dict[str, str] = {}
        offset = 0
        while True:
            page = self._collection.get(
                where={"source": source}, include=["metadatas"], limit=_PAGE, offset=offset
            )
            metadatas = page.get("metadatas") or []
            for meta in metadatas:
                if meta and isinstance(meta.get("uri"), str):
                    uri, digest = str(meta["uri"]), str(meta.get("content_hash", ""))
                    # Two hashes for one document = an interrupted re-index: force another.
                    found[uri] = digest if found.get(uri, digest) == digest else ""
            if len(metadatas) < _PAGE:
                return found
            offset += _PAGE

    async def close(self) -> None:
        """Release the client (for the embedded store: its SQLite files)."""
        close = getattr(self._client, "close", None)
        if close is not None:
            await asyncio.to_thread(close)


def _audience_clause(admitted: Sequence[str]) -> dict[str, Any]:
    """Chunks of a source whose audience the reader has ("src:NAME": matched by the source, so
    chunks written before audiences existed match too), or with an admitted own audience."""
    sources = sorted({k.removeprefix("src:") for k in admitted if k.startswith("src:")})
    own = sorted({k for k in admitted if not k.startswith("src:")})
    clauses: list[dict[str, Any]] = []
    if sources:
        clauses.append({"source": {"$in": sources}})
    if own:
        clauses.append({"audience": {"$in": own}})
    return clauses[0] if len(clauses) == 1 else {"$or": clauses}


def _passage(chunk_id: str, text: str, meta: Mapping[str, Any], distance: float) -> Passage:
    return Passage(
        text=text,
        title=str(meta.get("title", "")),
        source=str(meta.get("source", "")),
        location=str(meta.get("url") or meta.get("uri", "")),
        section=str(meta.get("section", "")),
        score=min(1.0, max(0.0, 1.0 - float(distance))),
        chunk_id=chunk_id,
        collection=str(meta.get("collection", "")),
    )
