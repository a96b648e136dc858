"""A small in-memory server speaking the Hugging Face Hub protocol, for offline tests.

Serves model repos to the real ``huggingface_hub`` client (see shared/notes/hub-offline.md):
resolve (HEAD/GET), model info, tree, refs, repo creation, YAML validation, preupload, NDJSON
commits, branches and tags. Repos hold real commits (40-hex sha, parent chain, ``.gitattributes``
in every commit, like the Hub's initial commit). Every request is logged as ``(method, path)`` so
tests can assert "zero downloads". Ordinary misses answer 404 with ``X-Error-Code``, never 5xx
(the client retries 5xx for ~23 s).

    with HubServer(port) as hub:      # or hub = HubServer(port).start(); ...; hub.shutdown()
        ...
"""
from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlparse

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
MAX_BODY = 256 * 2**20   # refuse bigger uploads (413) instead of buffering without bound
MAX_LOG = 100_000        # keep the request log bounded in long sessions


@dataclass
class Commit:
    sha: str
    parent: str | None
    files: dict[str, bytes]
    message: str


@dataclass
class Repo:
    repo_id: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit | None:
        """A branch, tag or full 40-hex sha (URL-quoted or not) → its commit, else ``None``."""
        rev = unquote(rev)
        for prefix, refs in (("refs/heads/", self.branches), ("refs/tags/", self.tags)):
            if rev.startswith(prefix) and rev[len(prefix):] in refs:
                return self.commits[refs[rev[len(prefix):]]]
        sha = self.branches.get(rev) or self.tags.get(rev) or (rev if SHA_RE.match(rev) else None)
        return self.commits.get(sha) if sha else None

    def commit(self, branch: str, files: dict[str, bytes], deleted: list[str], message: str) -> Commit:
        """Add a commit on ``branch`` (created if missing) on top of its current head."""
        parent = self.commits[self.branches[branch]] if branch in self.branches else None
        new_files = dict(parent.files) if parent else {".gitattributes": GITATTRIBUTES}
        new_files.update(files)
        for path in deleted:
            new_files.pop(path, None)
        h = hashlib.sha1(f"{parent.sha if parent else ''}\0{message}\0{time.time_ns()}".encode())
        for path in sorted(new_files):
            h.update(path.encode() + b"\0" + hashlib.sha256(new_files[path]).digest())
        c = Commit(h.hexdigest(), parent.sha if parent else None, new_files, message)
        self.commits[c.sha] = c
        self.branches[branch] = c.sha
        return c

    def history(self, rev: str = "main") -> list[Commit]:
        """Commits reachable from ``rev``, newest first."""
        out, c = [], self.resolve(rev)
        while c is not None:
            out.append(c)
            c = self.commits.get(c.parent) if c.parent else None
        return out


class HubServer:
    """In-memory Hub on 127.0.0.1; ``log`` lists ``(method, path)`` of every request."""

    def __init__(self, port: int = 0) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()          # guards ``log``
        self.state_lock = threading.RLock()   # guards ``repos`` (requests run on many threads)
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                       name=f"hub-server-{self.port}", daemon=True)

    def start(self) -> "HubServer":
        self.thread.start()
        return self

    def shutdown(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join(timeout=5)
        self.httpd.server_close()

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ---------------------------------------------------------------- for tests
    def clear(self) -> None:
        with self.lock:
            self.log.clear()

    def requests(self) -> list[tuple[str, str]]:
        with self.lock:
            return list(self.log)

    def downloads(self) -> list[tuple[str, str]]:
        """Requests that fetch repo content or metadata."""
        return [r for r in self.requests() if "/resolve/" in r[1] or r[1].startswith("/api/models/")]

    def create_repo(self, repo_id: str) -> Repo:
        """A repo with the Hub's initial commit (``.gitattributes`` on ``main``)."""
        with self.state_lock:
            if repo_id not in self.repos:
                repo = self.repos[repo_id] = Repo(repo_id)
                repo.commit("main", {}, [], "initial commit")
            return self.repos[repo_id]


def _card_data(readme: bytes | None) -> dict | None:
    """The README's YAML metadata, parsed as the Hub does (``cardData`` in model info)."""
    if readme is None:
        return None
    from huggingface_hub import ModelCard

    return ModelCard(readme.decode("utf-8", "replace"), ignore_metadata_errors=True).data.to_dict() or None


def _git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # a stalled client cannot pin a thread forever

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    # ---------------------------------------------------------------- plumbing
    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._json({"error": message}, 404, {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})})

    def _handle(self) -> None:
        url = urlparse(self.path)
        with self.hub.lock:
            self.hub.log.append((self.command, url.path))
            del self.hub.log[:-MAX_LOG]
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.close_connection = True
            return self._json({"error": f"body of {n} bytes is too large"}, 413)
        body = self.rfile.read(n) if n else b""  # always read it (keep-alive)
        try:
            with self.hub.state_lock:
                self._route(url.path, parse_qs(url.query), body)
        except Exception as e:  # a test-server bug must not look like a 5xx retry loop
            self._json({"error": f"{type(e).__name__}: {e}"}, 400)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    # ---------------------------------------------------------------- routes
    def _route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
        hub, post = self.hub, self.command == "POST"
        if path == "/api/repos/create" and post:
            data = json.loads(body)
            if data.get("type", "model") != "model":
                return self._json({"error": "this test Hub serves model repos only"}, 400)
            repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
            url = f"{hub.url}/{repo_id}"
            if repo_id in hub.repos:
                return self._json({"error": "You already created this model repo", "url": url}, 409)
            hub.create_repo(repo_id)
            return self._json({"url": url, "name": repo_id})
        if path == "/api/validate-yaml" and post:
            return self._json({"errors": [], "warnings": []})
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree|refs|preupload|commit|branch|tag)(?:/(.*))?)?$",
                     path)
        if m and self.command in ("GET", "POST"):
            return self._api(m.group(1), m.group(2), m.group(3) or "", query, body)
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m and self.command in ("GET", "HEAD"):
            return self._resolve(m.group(1), unquote(m.group(2)), unquote(m.group(3)))
        self._json({"error": f"no route for {self.command} {path}"}, 400)

    def _repo_or_404(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error("RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _commit_or_404(self, repo: Repo, rev: str) -> Commit | None:
        commit = repo.resolve(rev)
        if commit is None:
            self._error("RevisionNotFound", f"Invalid rev id: {rev}")
        return commit

    def _resolve(self, repo_id: str, rev: str, filename: str) -> None:
        repo = self._repo_or_404(repo_id)
        commit = repo and self._commit_or_404(repo, rev)
        if commit is None:
            return
        if filename not in commit.files:
            return self._error("EntryNotFound", f"{filename} does not exist on {rev}", {"X-Repo-Commit": commit.sha})
        data = commit.files[filename]
        self._send(200, data, {"X-Repo-Commit": commit.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'},
                   content_type="application/octet-stream")

    def _api(self, repo_id: str, kind: str | None, rest: str, query: dict, body: bytes) -> None:
        repo = self._repo_or_404(repo_id)
        if repo is None:
            return
        get, post = self.command == "GET", self.command == "POST"
        if kind in (None, "revision") and get:
            commit = self._commit_or_404(repo, unquote(rest) if rest else "main")
            if commit is None:
                return
            return self._json({
                "id": repo_id, "modelId": repo_id, "sha": commit.sha, "private": False, "tags": [],
                "siblings": [{"rfilename": p, "size": len(b), "blobId": _git_oid(b)} for p, b in sorted(commit.files.items())],
                "cardData": _card_data(commit.files.get("README.md")),
            })
        if kind == "tree" and get:
            rev, _, sub = rest.partition("/")
            commit = self._commit_or_404(repo, unquote(rev) if rev else "main")
            if commit is None:
                return
            return self._json(self._tree(commit, unquote(sub).strip("/"),
                                         query.get("recursive", ["false"])[0].lower() == "true"))
        if kind == "refs" and get:
            def refs(d: dict[str, str], prefix: str) -> list[dict]:
                return [{"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": s} for n, s in sorted(d.items())]
            return self._json({"branches": refs(repo.branches, "heads"), "tags": refs(repo.tags, "tags"),
                               "converts": [], "pullRequests": []})
        if kind == "preupload" and post:
            files = json.loads(body or b"{}").get("files", [])
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in files]})
        if kind == "commit" and post:
            return self._commit(repo, unquote(rest) or "main", body)
        if kind == "branch" and post:
            name = unquote(rest)
            if name in repo.branches:
                return self._json({"error": f"Reference {name} already exists"}, 409)
            commit = self._commit_or_404(repo, json.loads(body or b"{}").get("startingPoint") or "main")
            if commit is not None:
                repo.branches[name] = commit.sha
                self._json({})
            return
        if kind == "tag" and post:
            tag = json.loads(body or b"{}")["tag"]
            commit = self._commit_or_404(repo, unquote(rest) or "main")
            if commit is None:
                return
            if tag in repo.tags:
                return self._json({"error": f"Tag {tag} already exists"}, 409)
            repo.tags[tag] = commit.sha
            return self._json({})
        self._json({"error": f"unsupported {self.command} {kind}"}, 400)

    @staticmethod
    def _tree(commit: Commit, sub: str, recursive: bool) -> list[dict]:
        prefix = f"{sub}/" if sub else ""
        entries: dict[str, dict] = {}
        for path, data in sorted(commit.files.items()):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            for i in range(1, len(parts)):  # the folders on the way
                if recursive or i == 1:
                    folder = prefix + "/".join(parts[:i])
                    entries.setdefault(folder, {"type": "directory", "path": folder, "size": 0,
                                                "oid": hashlib.sha1(folder.encode()).hexdigest()})
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "path": path, "size": len(data), "oid": _git_oid(data)}
        return list(entries.values())

    def _commit(self, repo: Repo, branch: str, body: bytes) -> None:
        files: dict[str, bytes] = {}
        deleted: list[str] = []
        message = ""
        for line in body.decode().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary", "")
            elif key == "file":
                if value.get("encoding") != "base64":
                    return self._json({"error": f"unsupported encoding {value.get('encoding')}"}, 400)
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                deleted.append(value["path"])
            else:  # lfsFile, deletedFolder, copy: never produced when preupload answers "regular"
                return self._json({"error": f"unsupported commit operation {key} (LFS is not served)"}, 400)
        if branch not in repo.branches:
            return self._error("RevisionNotFound", f"Invalid rev id: {branch}")
        c = repo.commit(branch, files, deleted, message)
        self._json({"commitOid": c.sha, "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{c.sha}",
                    "success": True})
