"""The `git` kind: the documents of one branch of a Git repository (https, ssh or a local path).

A refresh fetches the branch's tip into a bare mirror under the data folder (`<data>/git/`,
shallow: only the tip's tree is needed), lists that tree, and names each file's version by its
blob SHA, so the ingestor reads only the files whose content changed since the last indexed
commit (a rename is a new path with a known blob: its vectors are reused) and removes the
paths the tree no longer has. Citations link to the file at the indexed commit on the forge
(`web_url`), else read `path@commit`.

Git runs as the `git` program in subprocesses (never on the event loop), blobs read through one
`git cat-file --batch` per refresh. Measured against dulwich on 2,000 files
(tests/perf/test_git.py): the first shallow fetch and listing take about the same (2.1 s vs
2.3 s), reading every blob too (0.37 s vs 0.28 s), but a refresh after a commit fetches and
lists in 0.23 s against dulwich's 1.3 s; and git speaks every transport, proxy and SSH setup an
operator already has. Private repositories: a token (`token_env`, sent as HTTP basic auth through
git's environment, never on its command line) or an SSH key (`ssh_key_env`: the key's text or
a path to it), both named in the secrets, never written in teambot.toml.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shlex
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.loaders import KINDS, selected
from knowledge.parsing import parse_bytes
from knowledge.sources.base import DocumentRef, SourceKind
from knowledge.sources.markup import rst_to_markdown
from knowledge.sources.secrets import ENV_NAME, SecretOptions, required
from knowledge.types import Document

__all__ = ["GitOptions", "GitReader", "git_kind"]

SUFFIXES = {**KINDS, ".rst": "markdown", ".mdx": "markdown"}
FETCH_SECONDS = 600.0  # a first clone of a large repository
COMMAND_SECONDS = 120.0
MAX_BLOB_BYTES = 100 * 1024 * 1024  # a larger file is reported, not read into memory
_TIP = "refs/teambot/tip"
_FORGES = {  # host word -> file-at-commit pattern under the repository's web address
    "github": "{web}/blob/{commit}/{path}",
    "gitlab": "{web}/-/blob/{commit}/{path}",
    "gitea": "{web}/src/commit/{commit}/{path}",
    "codeberg": "{web}/src/commit/{commit}/{path}",
    "forgejo": "{web}/src/commit/{commit}/{path}",
}
_SCP = re.compile(r"^[\w.-]+@[\w.-]+:")  # git@github.com:acme/handbook.git


class GitOptions(SecretOptions):
    """`[[knowledge.sources]]` keys of kind git."""

    branch: str = Field(default="", description="the branch to index; '' = the remote's HEAD")
    paths: list[str] = Field(
        default_factory=list, description="globs of paths to take, e.g. ['docs/**']; [] = all"
    )
    web_url: str = Field(
        default="",
        description="the repository's web address (GitHub, GitLab, Gitea, Codeberg) or a "
        "pattern with {commit} and {path}; '' = cite path@commit",
    )
    token_env: str = Field(default="", pattern=ENV_NAME, description="secret holding a token")
    username: str = Field(default="x-access-token", description="user name sent with the token")
    ssh_key_env: str = Field(
        default="", pattern=ENV_NAME, description="secret holding an SSH private key or its path"
    )

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str) -> str:
        if value.startswith("-") or ".." in value or any(c in value for c in " ~^:?*[\\"):
            raise ValueError(f"{value!r} is not a branch name")
        return value

    @field_validator("web_url")
    @classmethod
    def _web_url(cls, value: str) -> str:
        if value and "{path}" not in value and _forge(value) is None:
            raise ValueError(
                f"{value!r}: cannot tell the forge from the host; give a pattern such as "
                "https://git.example.com/team/docs/src/commit/{commit}/{path}"
            )
        return value.rstrip("/")


def _forge(web: str) -> str | None:
    host = urlsplit(web).hostname or ""
    return next((p for word, p in _FORGES.items() if word in host), None)


def citation(web_url: str, commit: str, path: str) -> str:
    """Where a reader opens `path` at `commit`: the forge's page, else `path@commit`."""
    if not web_url:
        return f"{path}@{commit[:12]}"
    pattern = web_url if "{path}" in web_url else (_forge(web_url) or "")
    return pattern.format(web=web_url.removesuffix(".git"), commit=commit, path=path)


class GitReader:
    """One branch of one repository, through a bare mirror kept under `mirrors`."""

    def __init__(self, source: SourceSettings, options: GitOptions, mirrors: Path) -> None:
        self._source = source
        self._options = options
        digest = hashlib.sha1(source.location.encode()).hexdigest()[:10]
        self._mirrors = mirrors
        self._dir = mirrors / f"{source.name}-{digest}.git"
        self._key: Path | None = None
        self._batch: asyncio.subprocess.Process | None = None  # `git cat-file --batch`
        self._batch_lock = asyncio.Lock()

    async def documents(self) -> AsyncIterator[DocumentRef]:
        commit, when = await self._fetch()
        listing = await self._git("ls-tree", "-r", "-z", "--full-tree", commit)
        paths = self._options.paths
        for entry in listing.split(b"\0"):
            if not entry:
                continue
            head, _, raw = entry.partition(b"\t")
            mode, kind, blob = head.decode().split()
            path = raw.decode("utf-8", "replace")  # only a label: content is read by blob SHA
            suffix = PurePosixPath(path).suffix.lower()
            if kind != "blob" or mode == "120000" or suffix not in SUFFIXES or _hidden(path):
                continue
            if paths and not any(selected(path, [glob], []) for glob in paths):
                continue
            if not selected(path, self._source.include, self._source.exclude):
                continue
            yield DocumentRef(
                uri=path,
                title=PurePosixPath(path).stem,
                url=citation(self._options.web_url, commit, path),
                version=blob,
                modified_at=when,
                meta={"blob": blob, "commit": commit},
            )

    async def read(self, ref: DocumentRef) -> Document:
        data = await self.blob(ref.meta["blob"])
        suffix = PurePosixPath(ref.uri).suffix.lower()
        if suffix == ".rst":
            text = await asyncio.to_thread(_decoded, data)
            data = rst_to_markdown(text).encode()
        return await parse_bytes(
            data,
            SUFFIXES[suffix],
            uri=ref.uri,
            name=PurePosixPath(ref.uri).stem,
            suffix=suffix,
            modified_at=ref.modified_at,
            url=ref.url,
        )

    async def blob(self, sha: str) -> bytes:
        """One blob's bytes from a `git cat-file --batch` kept open for the refresh (a process
        per file costs ~6 ms; the batch, well under one)."""
        async with self._batch_lock:
            try:
                batch = self._batch
                if batch is None or batch.returncode is not None:
                    batch = self._batch = await asyncio.create_subprocess_exec(
                        *("git", "-C", str(self._dir), "cat-file", "--batch"),
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=asyncio.subprocess.DEVNULL,
                        env=_quiet_env(),
                        limit=1 << 20,
                    )
                assert batch.stdin is not None and batch.stdout is not None
                batch.stdin.write(sha.encode() + b"\n")
                await batch.stdin.drain()
                header = (await batch.stdout.readline()).decode().split()
                if len(header) != 3 or header[1] != "blob":
                    raise LoadError(f"blob {sha} is not in the mirror: {' '.join(header)}")
                size = int(header[2])
                if size > MAX_BLOB_BYTES:
                    for offset in range(0, size + 1, 1 << 20):  # keep the pipe in step
                        await batch.stdout.readexactly(min(1 << 20, size + 1 - offset))
                    raise LoadError(
                        f"the file is {size / 2**20:.0f} MB, more than the "
                        f"{MAX_BLOB_BYTES // 2**20} MB a git source reads: leave it out with "
                        "`exclude` or `paths` / 文件过大"
                    )
                data = await batch.stdout.readexactly(size + 1)
            except (OSError, asyncio.IncompleteReadError) as exc:
                self._drop_batch()
                raise LoadError(f"git cat-file failed for blob {sha}: {exc}") from exc
            except asyncio.CancelledError:  # half a reply may be left in the pipe: start anew
                self._drop_batch()
                raise
        return data[:-1]

    def _drop_batch(self) -> None:
        if self._batch is not None and self._batch.returncode is None:
            self._batch.kill()
        self._batch = None

    async def aclose(self) -> None:
        if self._batch is not None and self._batch.returncode is None:
            assert self._batch.stdin is not None
            self._batch.stdin.close()
            await self._batch.wait()
        self._batch = None
        if self._key is not None:
            await asyncio.to_thread(self._key.unlink, True)
            self._key = None

    async def _fetch(self) -> tuple[str, datetime]:
        """Fetch the branch's tip into the mirror: (commit, its commit time)."""
        if not await asyncio.to_thread((self._dir / "HEAD").exists):
            await asyncio.to_thread(self._dir.mkdir, 0o700, True, True)
            await self._git("init", "--bare", "--quiet", str(self._dir), cwd=False)
        branch = self._options.branch
        spec = f"+refs/heads/{branch}:{_TIP}" if branch else f"+HEAD:{_TIP}"
        remote = _remote(self._source.location)
        await self._git(
            "fetch", "--quiet", "--no-tags", "--depth=1", "--", remote, spec, fetch=True
        )
        out = await self._git("log", "-1", "--format=%H %ct", _TIP)
        commit, seconds = out.decode().split()
        return commit, datetime.fromtimestamp(int(seconds), UTC)

    async def _git(self, *args: str, cwd: bool = True, fetch: bool = False) -> bytes:
        command = ["git", *(("-C", str(self._dir)) if cwd else ()), *args]
        env = await self._env() if fetch else _quiet_env()
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
            )
        except FileNotFoundError:
            raise SourceError(
                "the git program is not installed on this machine: install it (apt-get install "
                "git) to read git sources / 未安装 git"
            ) from None
        try:
            out, err = await asyncio.wait_for(
                process.communicate(), FETCH_SECONDS if fetch else COMMAND_SECONDS
            )
        except TimeoutError:
            process.kill()
            await process.wait()
            raise SourceError(
                f"git {args[0]} of {self._source.location} took longer than "
                f"{FETCH_SECONDS if fetch else COMMAND_SECONDS:.0f} s"
            ) from None
        if process.returncode != 0:
            raise SourceError(self._explain(err.decode(errors="replace"), fetch))
        return out

    async def _env(self) -> dict[str, str]:
        """git's environment for a fetch: no prompts, and the named credentials."""
        env = _quiet_env()
        options, ssh = self._options, ["ssh", "-o", "BatchMode=yes"]
        if options.token_env:
            token = required(options.token_env, "token_env", "a token that may read the repo")
            basic = base64.b64encode(f"{options.username}:{token}".encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {basic}",
            )
        if options.ssh_key_env:
            key = required(options.ssh_key_env, "ssh_key_env", "a deploy key of the repository")
            path = await asyncio.to_thread(self._key_file, key)
            known = self._mirrors / "known_hosts"
            ssh += ["-i", str(path), "-o", "IdentitiesOnly=yes"]
            ssh += ["-o", "StrictHostKeyChecking=accept-new", "-o", f"UserKnownHostsFile={known}"]
        env["GIT_SSH_COMMAND"] = shlex.join(ssh)
        return env

    def _key_file(self, key: str) -> Path:
        if not key.lstrip().startswith("-----BEGIN"):
            return Path(key).expanduser()  # a path to the key
        path = self._dir.with_suffix(".key")
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(key.strip() + "\n")
        self._key = path
        return path

    def _explain(self, stderr: str, fetch: bool) -> str:
        where, last = self._source.location, stderr.strip().splitlines()[-1:] or ["(no output)"]
        said = stderr.lower()
        branch = self._options.branch or "HEAD"
        if not fetch:
            return f"git: {last[0]}"
        if "couldn't find remote ref" in said:
            return (
                f"{where} has no branch {branch!r}: name an existing one with "
                f"--set branch=NAME / 仓库中没有分支 {branch}"
            )
        if any(w in said for w in ("authentication failed", "could not read username", "403")):
            return (
                f"{where} refused the credentials: set token_env to the name of a secret "
                "holding a token that may read the repository (GitHub: a fine-grained token "
                "with Contents: read; GitLab: read_repository) / 仓库拒绝了凭据：请配置可读取的令牌"
            )
        if "host key verification" in said:
            return (
                f"the SSH host key of {where} is not known: add it to ~/.ssh/known_hosts of the "
                "user running teambot (ssh-keyscan HOST >> ~/.ssh/known_hosts), or name a key "
                "in ssh_key_env (teambot then trusts the host's key on first use) "
                "/ SSH 主机密钥未知"
            )
        if "permission denied (publickey)" in said:
            return (
                f"{where} refused the SSH key: add the public key as a read-only deploy key "
                "and name the private key's secret in ssh_key_env / 仓库拒绝了 SSH 密钥"
            )
        if any(w in said for w in ("not found", "does not appear to be a git", "not a git")):
            return (
                f"{where} is not a Git repository teambot can reach (check the address, "
                f"or that the token may see it): {last[0]} / 找不到该仓库"
            )
        return f"git fetch of {where} failed: {last[0]} / 拉取仓库失败"


def _quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="", SSH_ASKPASS="", LC_ALL="C")
    return env


def _remote(location: str) -> str:
    if "://" in location or _SCP.match(location):
        return location
    return str(Path(location).expanduser())


def _hidden(path: str) -> bool:
    return any(part.startswith(".") for part in path.split("/"))


def _decoded(data: bytes) -> str:
    from knowledge.loaders import decode

    return decode(data)


def parse_location(location: str) -> str:
    """A pasted repository link or a path -> what `git fetch` takes: a forge page's address
    loses its /tree/… or /blob/… tail; a local path becomes absolute."""
    location = location.strip()
    if "://" in location:
        for marker in ("/-/tree/", "/-/blob/", "/tree/", "/blob/", "/src/branch/"):
            location = location.split(marker, 1)[0]
        return location.rstrip("/")
    if _SCP.match(location):
        return location
    return os.path.abspath(os.path.expanduser(location))


def git_kind(mirrors: Path) -> SourceKind:
    """The git kind, keeping its mirrors under `mirrors`."""

    def build(source: SourceSettings, options: GitOptions) -> GitReader:
        return GitReader(source, options, mirrors)

    return SourceKind(
        name="git",
        label="Git 仓库 / Git repository",
        location_help="a repository: https://github.com/acme/handbook.git, "
        "git@gitlab.example.com:team/docs.git or /srv/repos/handbook",
        build=build,
        options=GitOptions,
        parse_location=parse_location,
    )
