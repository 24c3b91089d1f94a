"""A stand-in Hugging Face Hub on 127.0.0.1: what huggingface_hub asks of the Hub to download a model, answered
from local folders.

    with HubServer({"acme/minilm-copy": minilm_path()}) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        ...  # snapshot_download, hf_hub_download, finetuner_core.models.hub.download
        assert hub.gets("acme/minilm-copy", "model.safetensors") == 1

Each repo (``{repo_id: folder}``) has one commit (a hash of its files) as ``main``. Served: the model info
(``/api/models/{id}`` and ``/api/models/{id}/revision/{rev}``: ``sha``, ``siblings`` with sizes, blob ids and LFS
info), the file tree (``/api/models/{id}/tree/{rev}``), and ``HEAD`` / ``GET`` of ``/{id}/resolve/{rev}/{path}``
with the headers huggingface_hub reads (``X-Repo-Commit``, ``ETag``; for LFS files, those over 1 MiB,
``X-Linked-Etag`` = sha256 and ``X-Linked-Size``) and ``Range: bytes=N-`` answered 206. No Xet headers and no
redirects: files come over plain HTTP from this server. Plain files (``files``: ``{url path: file}``, as
download.pytorch.org serves torchvision's weights) are served at ``/{url path}`` with the same ``Range`` support;
the knobs and records below name them with the repo id ``""`` (:data:`PLAIN`).

Knobs: ``rate_bps`` throttles every GET body (None: full speed; change it at any time, a GET in flight follows);
:meth:`cut` makes the next GET of a file stop after some bytes and the Hub unreachable (503) until :meth:`restore`.
What was asked is kept in :attr:`served` (one :class:`Served` per request), read by :meth:`gets`, :meth:`ranges`,
:meth:`bytes_sent`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

LFS_ABOVE = 1 << 20  # files larger than this are LFS files (their ETag is their sha256), as on the Hub
CHUNK = 64 * 1024
PLAIN = ""  # the "repo" of the plain files


@dataclass(frozen=True)
class RepoFile:
    path: str  # relative to the repo, "/"-separated
    source: Path
    size: int
    blob_id: str  # git blob hash
    sha256: str | None  # LFS files only

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


@dataclass
class Served:
    """One request, kept as it arrives: ``method`` (GET, HEAD, API), the repo and file (None for API calls), the
    ``Range`` asked, the body bytes sent (so far), the status."""

    method: str
    repo_id: str
    path: str | None
    range: str | None
    sent: int
    status: int


def _repo_files(folder: Path) -> dict[str, RepoFile]:
    files = [(file.relative_to(folder).as_posix(), file) for file in sorted(Path(folder).rglob("*")) if file.is_file()]
    return {path: _repo_file(path, file) for path, file in files}


def _repo_file(path: str, file: Path) -> RepoFile:
    data = file.read_bytes()
    blob_id = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
    sha256 = hashlib.sha256(data).hexdigest() if len(data) > LFS_ABOVE else None
    return RepoFile(path, file, len(data), blob_id, sha256)


class HubServer:
    """The stand-in Hub serving ``repos`` (``{repo_id: folder}``) on 127.0.0.1 at :attr:`url` while in use as a
    context manager (or between :meth:`start` and :meth:`stop`)."""

    def __init__(self, repos: dict[str, Path], rate_bps: float | None = None, files: dict[str, Path] | None = None):
        self.repos = {repo_id: _repo_files(folder) for repo_id, folder in repos.items()}
        self.files = {path: _repo_file(path, source) for path, source in (files or {}).items()}
        self.commits = {
            repo_id: hashlib.sha1(
                (repo_id + "".join(f"{f.path}:{f.etag}" for f in files.values())).encode()
            ).hexdigest()
            for repo_id, files in self.repos.items()
        }
        self.rate_bps = rate_bps
        self.served: list[Served] = []
        self.down = False
        self._cuts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle
    def start(self) -> HubServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._server.block_on_close = False
        threading.Thread(target=self._server.serve_forever, name="hub-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "the stand-in Hub is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # --- knobs
    def cut(self, repo_id: str, path: str, after_bytes: int) -> None:
        """The next GET of ``path`` stops after ``after_bytes`` bytes of its body (the connection closes), and from
        then on every request is answered 503 until :meth:`restore`."""
        self._cuts[(repo_id, path)] = after_bytes

    def restore(self) -> None:
        self.down = False

    # --- what was asked
    def _record(self, served: Served) -> None:
        with self._lock:
            self.served.append(served)

    def gets(self, repo_id: str, path: str) -> int:
        """How many GETs of ``path`` were answered with its bytes (200 or 206)."""
        return sum(1 for s in self._files(repo_id, path) if s.method == "GET" and s.status in (200, 206))

    def ranges(self, repo_id: str, path: str) -> list[str | None]:
        """The ``Range`` header of each GET of ``path`` (None: the whole file)."""
        return [s.range for s in self._files(repo_id, path) if s.method == "GET"]

    def bytes_sent(self, repo_id: str, path: str | None = None) -> int:
        """The body bytes sent for ``path`` (None: every file of the repo)."""
        with self._lock:
            return sum(
                s.sent for s in self.served if s.repo_id == repo_id and s.method == "GET" and path in (None, s.path)
            )

    def _files(self, repo_id: str, path: str) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.repo_id == repo_id and s.path == path]

    def size(self, repo_id: str) -> int:
        """The bytes of all of ``repo_id``'s files."""
        return sum(f.size for f in self.repos[repo_id].values())


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            path = unquote(urlsplit(self.path).path)
            if hub.down:
                return self._error(503, "", None, "Unavailable")
            if path.startswith("/api/models/"):
                return self._api(path.removeprefix("/api/models/"))
            for repo_id in hub.repos:
                prefix = f"/{repo_id}/resolve/"
                if path.startswith(prefix):
                    revision, _, file = path.removeprefix(prefix).partition("/")
                    return self._file(repo_id, revision, file, body)
            if (plain := hub.files.get(path.removeprefix("/"))) is not None:
                return self._body(PLAIN, plain, {}, body)
            self._error(404, "", None, "RepoNotFound")

        def _api(self, rest: str) -> None:
            for repo_id, files in hub.repos.items():
                if rest != repo_id and not rest.startswith(repo_id + "/"):
                    continue
                commit = hub.commits[repo_id]
                what, _, revision = rest.removeprefix(repo_id).strip("/").partition("/")
                if what in ("revision", "tree") and revision.split("/")[0] not in ("main", commit):
                    return self._error(404, repo_id, None, "RevisionNotFound")
                if what == "tree":
                    answer: object = [
                        {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.path}
                        | ({"lfs": {"oid": f.sha256, "size": f.size, "pointerSize": 134}} if f.sha256 else {})
                        for f in files.values()
                    ]
                else:
                    answer = {
                        "id": repo_id,
                        "modelId": repo_id,
                        "sha": commit,
                        "private": False,
                        "siblings": [
                            {"rfilename": f.path, "size": f.size, "blobId": f.blob_id}
                            | ({"lfs": {"size": f.size, "sha256": f.sha256, "pointerSize": 134}} if f.sha256 else {})
                            for f in files.values()
                        ],
                    }
                data = json.dumps(answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                hub._record(Served("API", repo_id, None, None, len(data), 200))
                return
            self._error(404, "", None, "RepoNotFound")

        def _file(self, repo_id: str, revision: str, path: str, body: bool) -> None:
            commit = hub.commits[repo_id]
            if revision not in ("main", commit):
                return self._error(404, repo_id, path, "RevisionNotFound")
            file = hub.repos[repo_id].get(path)
            if file is None:
                return self._error(404, repo_id, path, "EntryNotFound")
            headers = {"X-Repo-Commit": commit, "ETag": f'"{file.blob_id}"'}
            if file.sha256:
                headers |= {"X-Linked-Etag": f'"{file.sha256}"', "X-Linked-Size": str(file.size)}
            self._body(repo_id, file, headers, body)

        def _body(self, repo_id: str, file: RepoFile, headers: dict[str, str], body: bool) -> None:
            """``file`` (the part its ``Range`` asks for) with ``headers``; only the headers for a HEAD."""
            path = file.path
            asked = self.headers.get("Range")
            start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
            if start >= file.size > 0:
                return self._error(416, repo_id, path, "RangeNotSatisfiable")
            status = 206 if asked else 200
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(file.size - start))
            if asked:
                self.send_header("Content-Range", f"bytes {start}-{file.size - 1}/{file.size}")
            self.end_headers()
            if not body:
                return hub._record(Served("HEAD", repo_id, path, asked, 0, status))
            served = Served("GET", repo_id, path, asked, 0, status)
            hub._record(served)
            self._send(file, start, hub._cuts.pop((repo_id, path), None), served)

        def _send(self, file: RepoFile, start: int, cut_after: int | None, served: Served) -> None:
            """Send ``file`` from ``start`` at ``hub.rate_bps`` (stopping after ``cut_after`` bytes), counted in
            ``served``."""
            sent, began = 0, time.monotonic()
            with file.source.open("rb") as handle:
                handle.seek(start)
                while chunk := handle.read(CHUNK):
                    if cut_after is not None and sent + len(chunk) > cut_after:
                        chunk = chunk[: cut_after - sent]
                    try:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                    except (BrokenPipeError, ConnectionResetError):  # the client went away (e.g. killed)
                        self.close_connection = True
                        return
                    sent += len(chunk)
                    served.sent = sent
                    if cut_after is not None and sent >= cut_after:
                        hub.down = True
                        self.close_connection = True
                        return
                    if hub.rate_bps:
                        time.sleep(max(0.0, began + sent / hub.rate_bps - time.monotonic()))

        def _error(self, status: int, repo_id: str, path: str | None, code: str) -> None:
            data = json.dumps({"error": code}).encode()
            self.send_response(status)
            self.send_header("X-Error-Code", code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            hub._record(Served(self.command, repo_id, path, self.headers.get("Range"), 0, status))

    return Handler
