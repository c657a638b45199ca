"""A local stand-in for the Hugging Face Hub, just large enough for ``huggingface_hub``'s real client code.

Two stdlib HTTP servers on 127.0.0.1 share one in-memory store:

* the *hub* (``HF_ENDPOINT``) answers the routes that ``HfApi.create_repo``/``create_commit`` and
  ``hf_hub_download`` use in huggingface_hub 2.4:
  ``POST /api/repos/create``, ``POST /api/validate-yaml`` (README metadata check),
  ``POST /api/models/{repo}/preupload/{rev}`` (regular vs LFS), ``POST /{repo}.git/info/lfs/objects/batch``
  and ``.../verify`` (Git LFS batch API, "basic" transfer), ``POST /api/models/{repo}/commit/{rev}`` (NDJSON:
  header, file, lfsFile, deletedFile), ``GET /api/models/{repo}[/revision/{rev}]`` and
  ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (``X-Repo-Commit``, ``ETag``; LFS files answer 302 with
  ``Location``, ``X-Linked-Etag`` = sha256 and ``X-Linked-Size``, like the Hub's CDN redirect), with the Hub's
  ``X-Error-Code`` values (RepoNotFound, RevisionNotFound, EntryNotFound) on errors;
* the *cdn* (a different origin, so the client strips ``Authorization`` as it does for the real CDN and S3)
  takes LFS uploads (``PUT /upload/{oid}``, checking sha256 and size) and serves LFS blobs.

Dataset repos (``FakeHub.add_dataset``) answer ``GET /api/datasets/{repo}[/revision/{rev}]`` (with ``?blobs=true``,
what ``files_metadata=True`` asks: each sibling's ``size``, ``blobId`` and ``lfs.sha256``),
``GET /api/datasets/{repo}/tree/{rev}`` (what ``snapshot_download`` lists, one page) and
``HEAD``/``GET /datasets/{repo}/resolve/{rev}/{path}``; a gated one answers 401 (``X-Error-Code: GatedRepo``)
without the token, as the Hub does for ImageNet.

Xet is not spoken: no ``X-Xet-Hash`` header is ever sent, so downloads use plain HTTP. Uploads in
huggingface_hub 2.4 choose Xet purely on the client side (``hf_xet`` installed and ``HF_HUB_DISABLE_XET``
unset), so tests set ``HF_HUB_DISABLE_XET=1`` to take the Git LFS path this server implements.

Every request is recorded (``FakeHub.requests``: server, method, path, lower-cased headers, small bodies).
"""
from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

GITATTRIBUTES = b"""*.bin filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
"""
LFS_SUFFIXES = (".bin", ".npz", ".onnx", ".pt", ".pth", ".safetensors")
LFS_SIZE = 10 * 1024 * 1024


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Entry:
    data: bytes | None = None      # regular file
    lfs_oid: str | None = None     # LFS file (sha256 of content)
    size: int = 0

    @property
    def pointer(self) -> bytes:
        return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.lfs_oid}\nsize {self.size}\n").encode()

    @property
    def etag(self) -> str:
        return git_blob_sha1(self.pointer if self.lfs_oid else self.data)


@dataclass
class Repo:
    repo_id: str
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, Entry]] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    gated: bool = False            # dataset repos: every read needs the token

    def resolve(self, rev: str) -> str | None:
        if rev in self.branches:
            return self.branches[rev]
        return rev if rev in self.commits else None


class FakeHub:
    def __init__(self, token: str | None = None):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.datasets: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> "FakeHub":
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.fakehub = self
            server.role = role
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for s in self._servers:
            s.shutdown()
            s.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._servers[0].server_address[1]}"

    @property
    def cdn_url(self) -> str:
        # another origin (port), so the client treats it as the CDN/S3 and never sends it the token
        return f"http://127.0.0.1:{self._servers[1].server_address[1]}"

    # -- state helpers ---------------------------------------------------------------------------------
    def commit(self, repo: Repo, parent: str | None, tree: dict[str, Entry], message: str) -> str:
        digest = hashlib.sha1(json.dumps([parent, message, time.time_ns(),
                                          sorted((k, v.etag) for k, v in tree.items())]).encode())
        sha = digest.hexdigest()
        repo.commits[sha] = tree
        repo.messages[sha] = message
        return sha

    def file_bytes(self, repo_id: str, path: str, rev: str = "main") -> bytes:
        repo = self.repos[repo_id]
        entry = repo.commits[repo.resolve(rev)][path]
        return self.lfs[entry.lfs_oid] if entry.lfs_oid else entry.data

    def add_dataset(self, repo_id: str, files: dict[str, bytes], gated: bool = True) -> str:
        """A dataset repo with one commit of ``files`` (parquet, tar and large files stored as LFS); its sha."""
        tree = {".gitattributes": Entry(data=GITATTRIBUTES, size=len(GITATTRIBUTES))}
        for path, data in files.items():
            if path.endswith((".parquet", ".tar")) or len(data) > LFS_SIZE:
                oid = hashlib.sha256(data).hexdigest()
                self.lfs[oid] = data
                tree[path] = Entry(lfs_oid=oid, size=len(data))
            else:
                tree[path] = Entry(data=data, size=len(data))
        with self.lock:
            repo = Repo(repo_id, private=False, gated=gated)
            sha = self.commit(repo, None, tree, "dataset")
            repo.branches["main"] = sha
            self.datasets[repo_id] = repo
        return sha

    def replace_lfs_object(self, oid: str, data: bytes) -> None:
        """Serve other bytes under an existing LFS oid (a compromised or broken storage)."""
        self.lfs[oid] = data


def _blob_info(entry: Entry) -> dict:
    """A file's metadata as the Hub's API gives it: the git blob id (of the pointer, for an LFS file), its size,
    and for an LFS file the sha256 of its content."""
    info = {"blobId": entry.etag, "size": entry.size}
    if entry.lfs_oid:
        info["lfs"] = {"sha256": entry.lfs_oid, "size": entry.size, "pointerSize": len(entry.pointer)}
    return info


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeHub/1"

    def log_message(self, *args):  # quiet
        pass

    # -- plumbing --------------------------------------------------------------------------------------
    @property
    def hub(self) -> FakeHub:
        return self.server.fakehub

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body: bytes = b"", headers: dict | None = None, ctype: str = "application/json"):
        self.send_response(status)
        headers = dict(headers or {})
        headers.setdefault("Content-Type", ctype)
        headers.setdefault("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, str(v))
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _json(self, status: int, obj, headers: dict | None = None, ctype: str = "application/json"):
        self._send(status, json.dumps(obj).encode(), headers, ctype)

    def _error(self, status: int, code: str | None, message: str, extra: dict | None = None):
        headers = {"X-Error-Message": message, **(extra or {})}
        if code:
            headers["X-Error-Code"] = code
        self._json(status, {"error": message}, headers)

    def _authorized(self) -> bool:
        if self.hub.token is None:
            return True
        return self.headers.get("Authorization") == f"Bearer {self.hub.token}"

    def _record(self, body: bytes) -> None:
        with self.hub.lock:
            self.hub.requests.append({
                "server": self.server.role, "method": self.command, "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body if len(body) < 1 << 20 else b"<large>",
            })

    def _dispatch(self):
        body = self._body() if self.command in ("POST", "PUT") else b""
        self._record(body)
        path = unquote(urlsplit(self.path).path)
        try:
            if self.server.role == "cdn":
                return self._cdn(path, body)
            return self._route(path, body)
        except Exception as e:  # a bug here should show up as a 500 the client reports
            self._error(500, None, f"fake hub error: {type(e).__name__}: {e}")

    do_GET = do_HEAD = do_POST = do_PUT = _dispatch

    # -- the CDN / storage origin ----------------------------------------------------------------------
    def _cdn(self, path: str, body: bytes):
        parts = path.strip("/").split("/")
        if self.command == "PUT" and parts[0] == "upload" and len(parts) == 2:
            oid = parts[1]
            if hashlib.sha256(body).hexdigest() != oid:
                return self._error(400, None, "content does not match oid")
            with self.hub.lock:
                self.hub.lfs[oid] = body
            return self._send(200, b"", {"ETag": f'"{oid[:32]}"'})
        if self.command in ("GET", "HEAD") and parts[0] == "blob" and len(parts) == 2:
            data = self.hub.lfs.get(parts[1])
            if data is None:
                return self._error(404, None, "no such object")
            return self._send(200, data, {"ETag": f'"{parts[1]}"'}, "application/octet-stream")
        return self._error(404, None, f"cdn: no route {self.command} {path}")

    # -- the hub origin --------------------------------------------------------------------------------
    def _repo(self, repo_id: str, write: bool = False, store: dict | None = None) -> Repo | None:
        repo = (self.hub.repos if store is None else store).get(repo_id)
        if repo is not None and repo.gated and not self._authorized():
            self._error(401, "GatedRepo", f"Access to dataset {repo_id} is restricted. You must have access to "
                        "it and be authenticated to access it. Please log in.")
            return None
        if repo is None or ((repo.private or write) and not self._authorized()):
            self._error(404 if self._authorized() else 401, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _revision(self, repo_id: str, rev: str, write: bool = False, store: dict | None = None
                  ) -> tuple[Repo, str] | None:
        """The repo and the commit ``rev`` names, or None after answering 401/404 as the Hub does."""
        repo = self._repo(repo_id, write, store)
        if repo is None:
            return None
        sha = repo.resolve(rev)
        if sha is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            return None
        return repo, sha

    def _route(self, path: str, body: bytes):
        parts = path.strip("/").split("/")
        if path == "/api/repos/create" and self.command == "POST":
            return self._create_repo(json.loads(body))
        if path == "/api/validate-yaml" and self.command == "POST":
            return self._validate_yaml(json.loads(body))
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            if self.command == "POST" and rest[:1] == ["preupload"]:
                return self._preupload(repo_id, "/".join(rest[1:]), json.loads(body))
            if self.command == "POST" and rest[:1] == ["commit"]:
                return self._commit(repo_id, "/".join(rest[1:]), body)
            if self.command == "GET" and (not rest or rest[0] == "revision"):
                return self._repo_info(repo_id, "/".join(rest[1:]) or "main")
        if parts[:2] == ["api", "datasets"] and len(parts) >= 4 and self.command == "GET":
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                return self._repo_info("/".join(parts[2:4]), "/".join(rest[1:]) or "main", self.hub.datasets)
            if rest[0] == "tree" and len(rest) >= 2:
                return self._tree("/".join(parts[2:4]), rest[1], "/".join(rest[2:]), self.hub.datasets)
        if parts[0] == "datasets" and len(parts) >= 6 and parts[3] == "resolve" and self.command in ("GET", "HEAD"):
            return self._resolve(f"{parts[1]}/{parts[2]}", parts[4], "/".join(parts[5:]), self.hub.datasets)
        if len(parts) >= 5 and parts[1].endswith(".git") and parts[2:5] == ["info", "lfs", "objects"]:
            repo_id = f"{parts[0]}/{parts[1][:-4]}"
            if parts[5:] == ["batch"]:
                return self._lfs_batch(repo_id, json.loads(body))
            if parts[5:] == ["verify"]:
                return self._lfs_verify(repo_id, json.loads(body))
        if len(parts) >= 5 and parts[2] == "resolve" and self.command in ("GET", "HEAD"):
            return self._resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        return self._error(404, None, f"hub: no route {self.command} {path}")

    def _create_repo(self, payload: dict):
        if not self._authorized():
            return self._error(401, None, "Invalid credentials in Authorization header")
        repo_id = f"{payload.get('organization')}/{payload['name']}"
        url = f"{self.hub.url}/{repo_id}"
        with self.hub.lock:
            if repo_id in self.hub.repos:
                return self._json(409, {"error": "You already created this model repo", "url": url})
            repo = Repo(repo_id, private=payload.get("visibility") == "private" or bool(payload.get("private")))
            sha = self.hub.commit(repo, None, {".gitattributes": Entry(data=GITATTRIBUTES,
                                                                         size=len(GITATTRIBUTES))},
                                  "initial commit")
            repo.branches["main"] = sha
            self.hub.repos[repo_id] = repo
        return self._json(200, {"url": url, "name": repo_id, "id": "fake" + sha[:20]})

    def _validate_yaml(self, payload: dict):
        import yaml

        content = payload.get("content", "")
        if content.startswith("---"):
            try:
                meta = yaml.safe_load(content.split("---", 2)[1])
            except yaml.YAMLError as e:
                return self._json(400, {"errors": [{"message": str(e)}], "warnings": []})
            if not isinstance(meta, dict):
                return self._json(400, {"errors": [{"message": "metadata is not a mapping"}], "warnings": []})
        return self._json(200, {"errors": [], "warnings": []})

    def _preupload(self, repo_id: str, rev: str, payload: dict):
        found = self._revision(repo_id, rev, write=True)
        if found is None:
            return
        repo, sha = found
        tree = repo.commits[sha]
        files = []
        for f in payload["files"]:
            sample = base64.b64decode(f["sample"])
            lfs = f["path"].endswith(LFS_SUFFIXES) or f["size"] > LFS_SIZE or b"\0" in sample
            old = tree.get(f["path"])
            oid = None if old is None else (old.lfs_oid if old.lfs_oid else git_blob_sha1(old.data))
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                          "oid": oid})
        return self._json(200, {"files": files, "commitOid": sha})

    def _lfs_batch(self, repo_id: str, payload: dict):
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if "application/vnd.git-lfs+json" not in self.headers.get("Accept", ""):
            return self._error(406, None, "Accept application/vnd.git-lfs+json")
        objects = []
        for obj in payload.get("objects", []):
            oid, size = obj["oid"], obj["size"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if oid not in self.hub.lfs:
                entry["actions"] = {
                    "upload": {"href": f"{self.hub.cdn_url}/upload/{oid}"},
                    "verify": {"href": f"{self.hub.url}/{repo_id}.git/info/lfs/objects/verify"},
                }
            objects.append(entry)
        return self._json(200, {"transfer": "basic", "objects": objects}, ctype="application/vnd.git-lfs+json")

    def _lfs_verify(self, repo_id: str, payload: dict):
        if self._repo(repo_id, write=True) is None:
            return
        data = self.hub.lfs.get(payload.get("oid"))
        if data is None or len(data) != payload.get("size"):
            return self._error(422, None, "object not uploaded")
        return self._json(200, {"success": True})

    def _commit(self, repo_id: str, rev: str, body: bytes):
        repo = self._repo(repo_id, write=True)
        if repo is None:
            return
        if self.headers.get("Content-Type") != "application/x-ndjson":
            return self._error(400, None, "expected application/x-ndjson")
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            return self._error(400, None, "first line must be the header")
        header = lines[0]["value"]
        with self.hub.lock:
            parent = repo.resolve(rev)
            if parent is None or rev not in repo.branches:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            if header.get("parentCommit") and header["parentCommit"] != parent:
                return self._error(412, None, "parent commit is not the head of the branch")
            tree = dict(repo.commits[parent])
            for item in lines[1:]:
                key, value = item["key"], item["value"]
                if key == "file":
                    data = base64.b64decode(value["content"])
                    tree[value["path"]] = Entry(data=data, size=len(data))
                elif key == "lfsFile":
                    oid = value["oid"]
                    if oid not in self.hub.lfs or value.get("size", len(self.hub.lfs[oid])) != len(self.hub.lfs[oid]):
                        return self._error(422, None, f"LFS object {oid} of {value['path']} was not uploaded")
                    tree[value["path"]] = Entry(lfs_oid=oid, size=len(self.hub.lfs[oid]))
                elif key == "deletedFile":
                    tree.pop(value["path"], None)
                elif key == "deletedFolder":
                    for p in [p for p in tree if p.startswith(value["path"].rstrip("/") + "/")]:
                        tree.pop(p)
                else:
                    return self._error(400, None, f"unsupported operation {key}")
            sha = self.hub.commit(repo, parent, tree, header.get("summary", ""))
            repo.branches[rev] = sha
        return self._json(200, {"success": True, "commitOid": sha, "commitUrl": f"{self.hub.url}/{repo_id}/commit/{sha}",
                                "hookOutput": "", "pullRequestUrl": None})

    def _repo_info(self, repo_id: str, rev: str, store: dict | None = None):
        found = self._revision(repo_id, rev, store=store)
        if found is None:
            return
        repo, sha = found
        tree = repo.commits[sha]
        if "blobs=true" in urlsplit(self.path).query.lower():   # files_metadata=True
            siblings = [{"rfilename": p, **_blob_info(tree[p])} for p in sorted(tree)]
        else:
            siblings = [{"rfilename": p} for p in sorted(tree)]
        return self._json(200, {"id": repo_id, "modelId": repo_id, "sha": sha, "private": repo.private,
                                "siblings": siblings})

    def _tree(self, repo_id: str, rev: str, folder: str, store: dict | None = None):
        found = self._revision(repo_id, rev, store=store)
        if found is None:
            return
        repo, sha = found
        tree = repo.commits[sha]
        prefix = folder.rstrip("/") + "/" if folder else ""
        entries = []
        for p in sorted(tree):
            if p.startswith(prefix):
                info = _blob_info(tree[p])
                entry = {"type": "file", "path": p, "oid": info["blobId"], "size": info["size"]}
                if "lfs" in info:
                    entry["lfs"] = {"oid": info["lfs"]["sha256"], "size": info["lfs"]["size"],
                                    "pointerSize": info["lfs"]["pointerSize"]}
                entries.append(entry)
        return self._json(200, entries)

    def _resolve(self, repo_id: str, rev: str, path: str, store: dict | None = None):
        found = self._revision(repo_id, rev, store=store)
        if found is None:
            return
        repo, sha = found
        entry = repo.commits[sha].get(path)
        if entry is None:
            return self._error(404, "EntryNotFound", f"{path} does not exist on \"{rev}\"", {"X-Repo-Commit": sha})
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs_oid:
            headers.update({"Location": f"{self.hub.cdn_url}/blob/{entry.lfs_oid}",
                            "X-Linked-Etag": f'"{entry.lfs_oid}"', "X-Linked-Size": str(entry.size)})
            return self._send(302, b"", headers, "text/plain")
        return self._send(200, entry.data, headers, "application/octet-stream")
