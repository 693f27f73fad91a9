"""A stand-in for the Hub's upload API on 127.0.0.1, enough for `HfApi.create_repo` and `upload_folder`:
create a repository, answer preupload with "regular" for every file (so files travel inline in the commit,
base64 in NDJSON), and take the commit. It keeps what it received, and the Authorization header it was sent,
for the tests to check. Nothing else is served: an unexpected call gets 404 and is logged in `unexpected`."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeHub:
    def __init__(self):
        self.repos: dict[
            str, dict
        ] = {}  # repo id -> {"private": bool, "files": {path: bytes}, "commits": [...]}
        self.authorizations: list[str | None] = []
        self.unexpected: list[str] = []
        self.validated: list[str] = []  # model cards sent to /api/validate-yaml
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code: int, body: dict | list):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                hub.authorizations.append(self.headers.get("Authorization"))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/api/repos/create":
                    req = json.loads(body)
                    repo = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
                    hub.repos.setdefault(
                        repo,
                        {
                            "private": req.get("visibility") == "private" or bool(req.get("private")),
                            "files": {},
                            "commits": [],
                        },
                    )
                    return self._reply(200, {"url": f"{hub.url}/{repo}", "name": repo})
                if (
                    self.path == "/api/validate-yaml"
                ):  # a model card's front matter is checked before the commit
                    hub.validated.append(json.loads(body)["content"])
                    return self._reply(200, {"errors": [], "warnings": []})
                m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/?]+)(\?.*)?", self.path)
                if not m or m.group(1) not in hub.repos:
                    hub.unexpected.append(f"POST {self.path}")
                    return self._reply(404, {"error": "not found"})
                repo = hub.repos[m.group(1)]
                if m.group(2) == "preupload":
                    files = json.loads(body)["files"]
                    modes = [
                        {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
                    ]
                    return self._reply(200, {"files": modes, "commitOid": "0" * 40})
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                for line in lines:
                    if line["key"] == "file":
                        repo["files"][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
                    elif line["key"] == "header":
                        repo["commits"].append(line["value"].get("summary"))
                oid = hashlib.sha1(json.dumps(sorted(repo["files"])).encode()).hexdigest()
                return self._reply(
                    200, {"commitUrl": f"{hub.url}/{m.group(1)}/commit/{oid}", "commitOid": oid}
                )

            def do_GET(self):
                hub.unexpected.append(f"GET {self.path}")
                self._reply(404, {"error": "not found"})

            do_HEAD = do_GET

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
