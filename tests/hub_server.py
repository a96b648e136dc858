"""A small in-memory server speaking the Hugging Face Hub protocol, for offline tests.

Serves model repos to the real ``huggingface_hub`` client (see shared/notes/hub-offline.md):
resolve (HEAD/GET), model info, tree, refs, repo creation, preupload, NDJSON commits, branches
and tags. Every request is logged so tests can assert "zero downloads".
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
from urllib.parse import unquote, urlparse

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


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
        rev = unquote(rev)
        sha = self.branches.get(rev) or self.tags.get(rev) or (rev if SHA_RE.match(rev) else None)
        return self.commits.get(sha) if sha else None

    def commit(self, branch: str, files: dict[str, bytes], deleted: list[str], message: str) -> Commit:
        parent = self.commits[self.branches[branch]] if branch in self.branches else None
        new_files = dict(parent.files) if parent else {".gitattributes": GITATTRIBUTES}
        new_files.update(files)
        for path in deleted:
            new_files.pop(path, None)
        h = hashlib.sha1(f"{parent.sha if parent else ''}{message}{time.time_ns()}".encode())
        for path in sorted(new_files):
            h.update(path.encode() + hashlib.sha256(new_files[path]).digest())
        c = Commit(h.hexdigest(), parent.sha if parent else None, new_files, message)
        self.commits[c.sha] = c
        self.branches[branch] = c.sha
        return c


class HubServer:
    """``with HubServer(port) as hub: ...``; ``hub.log`` lists ``(method, path)`` of requests."""

    def __init__(self, port: int = 0) -> None:
        self.repos: dict[str, Repo] = {}
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"hub": self})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "HubServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def clear(self) -> None:
        with self.lock:
            self.log.clear()

    def downloads(self) -> list[tuple[str, str]]:
        return [r for r in self.log if "/resolve/" in r[1] or "/api/models/" in r[1]]

    def create_repo(self, repo_id: str) -> Repo:
        return self.repos.setdefault(repo_id, Repo(repo_id))


def _card_data(readme: bytes | None) -> dict | None:
    if readme is None:
        return None
    from huggingface_hub import ModelCard

    return ModelCard(readme.decode()).data.to_dict()


class _Handler(BaseHTTPRequestHandler):
    hub: HubServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    # ---------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

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
        path = urlparse(self.path).path
        with self.hub.lock:
            self.hub.log.append((self.command, path))
        body = self._body()  # always read it (keep-alive)
        try:
            self._route(path, body)
        except Exception as e:  # a test server bug must not look like a 5xx retry loop
            self._json({"error": f"{type(e).__name__}: {e}"}, 400)

    do_GET = do_HEAD = do_POST = _handle

    # ---------------------------------------------------------------- routes
    def _route(self, path: str, body: bytes) -> None:
        hub = self.hub
        if path == "/api/repos/create" and self.command == "POST":
            data = json.loads(body)
            repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
            url = f"{hub.url}/{repo_id}"
            if repo_id in hub.repos:
                return self._json({"error": "exists", "url": url}, 409)
            hub.create_repo(repo_id)
            return self._json({"url": url, "name": repo_id})
        if path == "/api/validate-yaml":
            return self._json({"errors": [], "warnings": []})
        m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/(revision|tree|refs|preupload|commit|branch|tag)(?:/(.*))?)?$", path)
        if m:
            return self._api(m.group(1), m.group(2), m.group(3) or "", body)
        m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if m:
            return self._resolve(m.group(1), m.group(2), unquote(m.group(3)))
        self._json({"error": f"no route for {self.command} {path}"}, 400)

    def _repo_or_404(self, repo_id: str) -> Repo | None:
        repo = self.hub.repos.get(repo_id)
        if repo is None:
            self._error("RepoNotFound", f"Repository {repo_id} not found")
        return repo

    def _resolve(self, repo_id: str, rev: str, filename: str) -> None:
        repo = self._repo_or_404(repo_id)
        if repo is None:
            return
        commit = repo.resolve(rev)
        if commit is None:
            return self._error("RevisionNotFound", f"Revision {unquote(rev)} not found")
        if filename not in commit.files:
            return self._error("EntryNotFound", f"{filename} not found", {"X-Repo-Commit": commit.sha})
        data = commit.files[filename]
        self._send(200, data, {"X-Repo-Commit": commit.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'},
                   content_type="application/octet-stream")

    def _api(self, repo_id: str, kind: str | None, rest: str, body: bytes) -> None:
        repo = self._repo_or_404(repo_id)
        if repo is None:
            return
        if kind in (None, "revision") and self.command == "GET":
            commit = repo.resolve(unquote(rest) if rest else "main")
            if commit is None:
                return self._error("RevisionNotFound", f"Revision {rest} not found")
            return self._json({"id": repo_id, "modelId": repo_id, "sha": commit.sha, "private": False,
                               "siblings": [{"rfilename": p} for p in sorted(commit.files)],
                               "cardData": _card_data(commit.files.get("README.md")), "tags": []})
        if kind == "tree":
            rev = unquote(rest.split("/")[0]) if rest else "main"
            commit = repo.resolve(rev)
            if commit is None:
                return self._error("RevisionNotFound", f"Revision {rev} not found")
            return self._json([{"type": "file", "path": p, "size": len(b),
                                "oid": hashlib.sha1(b"blob %d\0" % len(b) + b).hexdigest()}
                               for p, b in sorted(commit.files.items())])
        if kind == "refs":
            def refs(d: dict[str, str], prefix: str) -> list[dict]:
                return [{"name": n, "ref": f"refs/{prefix}/{n}", "targetCommit": s} for n, s in d.items()]
            return self._json({"branches": refs(repo.branches, "heads"), "tags": refs(repo.tags, "tags"),
                               "converts": [], "pullRequests": []})
        if kind == "preupload":
            files = json.loads(body).get("files", [])
            return self._json({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                         for f in files]})
        if kind == "commit":
            return self._commit(repo, unquote(rest) or "main", body)
        if kind == "branch":
            name = unquote(rest)
            if name in repo.branches:
                return self._json({"error": "branch exists"}, 409)
            start = json.loads(body or b"{}").get("startingPoint") or "main"
            commit = repo.resolve(start)
            if commit is None:
                return self._error("RevisionNotFound", f"Revision {start} not found")
            repo.branches[name] = commit.sha
            return self._json({})
        if kind == "tag":
            data = json.loads(body or b"{}")
            commit = repo.resolve(unquote(rest) or "main")
            if commit is None:
                return self._error("RevisionNotFound", f"Revision {rest} not found")
            if data["tag"] in repo.tags:
                return self._json({"error": "tag exists"}, 409)
            repo.tags[data["tag"]] = commit.sha
            return self._json({})
        self._json({"error": f"unsupported {self.command} {kind}"}, 400)

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
            else:
                return self._json({"error": f"unsupported commit operation {key} (LFS is not served)"}, 400)
        if branch not in repo.branches and repo.branches:
            return self._error("RevisionNotFound", f"Branch {branch} not found")
        c = repo.commit(branch, files, deleted, message)
        self._json({"commitOid": c.sha, "commitUrl": f"{self.hub.url}/{repo.repo_id}/commit/{c.sha}",
                    "success": True})
