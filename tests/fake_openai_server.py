"""A small OpenAI-compatible server for tests, on 127.0.0.1, built on the standard library.

It speaks Chat Completions, Files and Batches well enough for the real `openai` SDK, and answers
deterministically from a hash of the user message, so a test can tell which labels belong to which file.
Faults are triggered by markers in a file's content, so they stay attached to a file in any order:

    FAULT_MALFORMED_ONCE   first answer is not JSON           FAULT_429_ONCE   first request gets HTTP 429
    FAULT_UNKNOWN_ONCE     first answer has an unknown class  FAULT_500_ONCE   first request gets HTTP 500
    FAULT_REFUSAL_ONCE     first answer is a refusal          FAULT_RANGE_ALWAYS  quality is always 9
    FAULT_ECHO_KEY_ONCE    first request gets a 500 whose message echoes the API key back

Batch behaviour is set on the server object: `polls_to_finish`, `expire_next` (the next N batches expire
with a third of their requests answered, a third in the error file as `batch_expired`, the rest absent).
Server-wide faults: `delay` (seconds before each chat answer, a slow server), `fail_all` (every chat request
gets HTTP 500, a server in trouble), `echo_key` (a 401 repeats the key it was given, as some servers do).
"""

from __future__ import annotations

import email.parser
import email.policy
import hashlib
import itertools
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from curator import labels


def fake_labels(user_message: str) -> dict:
    h = hashlib.sha256(user_message.encode("utf-8")).digest()
    return {
        "quality": labels.QUALITY.lo + h[0] % (labels.QUALITY.hi - labels.QUALITY.lo + 1),
        "structured_data": labels.STRUCTURED_DATA.lo
        + h[1] % (labels.STRUCTURED_DATA.hi - labels.STRUCTURED_DATA.lo + 1),
        "content_type": list(labels.CONTENT_TYPES)[h[2] % len(labels.CONTENT_TYPES)],
    }


class HTTPFault(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class FakeOpenAI:
    def __init__(self, api_key: str = "sk-test-key"):
        self.api_key = api_key
        self.lock = threading.Lock()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.calls = Counter()  # user-message hash -> requests seen (online and in batches)
        self.chat_requests = 0
        self.batched_ids = Counter()  # custom_id -> times it was put in a batch
        self.polls_to_finish = 2
        self.expire_next = 0
        self.delay = 0.0
        self.fail_all = False
        self.echo_key = False
        self._ids = itertools.count(1)
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):06d}"

    # -- the judge ------------------------------------------------------------------------------------------
    def answer(self, body: dict) -> dict:
        """A chat completion for a request body, or HTTPFault."""
        fmt = body.get("response_format") or {}
        if fmt.get("type") != "json_schema" or not fmt.get("json_schema", {}).get("strict"):
            raise HTTPFault(400, "this judge requires a strict json_schema response_format")
        user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        if self.delay:
            time.sleep(self.delay)
        key = hashlib.sha256(user.encode()).hexdigest()
        with self.lock:
            self.calls[key] += 1
            self.chat_requests += 1
            first = self.calls[key] == 1
        if self.fail_all:
            raise HTTPFault(500, "the server is in trouble")
        if first and "FAULT_429_ONCE" in user:
            raise HTTPFault(429, "rate limited", {"retry-after": "0"})
        if first and "FAULT_500_ONCE" in user:
            raise HTTPFault(500, "internal error")
        if first and "FAULT_ECHO_KEY_ONCE" in user:
            raise HTTPFault(500, f"upstream rejected credentials {self.api_key}")
        message = {"role": "assistant", "content": json.dumps(fake_labels(user)), "refusal": None}
        if first and "FAULT_MALFORMED_ONCE" in user:
            message["content"] = '{"quality": 3, "structured_data": '
        if first and "FAULT_UNKNOWN_ONCE" in user:
            message["content"] = json.dumps({**fake_labels(user), "content_type": "poem"})
        if first and "FAULT_REFUSAL_ONCE" in user:
            message = {"role": "assistant", "content": None, "refusal": "I cannot help with that."}
        if "FAULT_RANGE_ALWAYS" in user:
            message["content"] = json.dumps({**fake_labels(user), "quality": 9})
        return {
            "id": self._new_id("chatcmpl"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": {
                "prompt_tokens": len(user) // 4,
                "completion_tokens": 20,
                "total_tokens": len(user) // 4 + 20,
            },
        }

    # -- batches --------------------------------------------------------------------------------------------
    def create_batch(self, req: dict) -> dict:
        if req.get("endpoint") != "/v1/chat/completions" or req.get("completion_window") != "24h":
            raise HTTPFault(400, "bad endpoint or completion_window")
        data = self.files.get(req["input_file_id"])
        if data is None:
            raise HTTPFault(404, "no such file")
        lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
        if len(lines) > 50_000 or len(data) > 200 * 1024 * 1024:
            raise HTTPFault(400, "batch input over the API limits")
        with self.lock:
            for line in lines:
                self.batched_ids[line["custom_id"]] += 1
            b = {
                "id": self._new_id("batch"),
                "object": "batch",
                "endpoint": req["endpoint"],
                "input_file_id": req["input_file_id"],
                "completion_window": "24h",
                "status": "validating",
                "created_at": int(time.time()),
                "output_file_id": None,
                "error_file_id": None,
                "errors": None,
                "metadata": req.get("metadata"),
                "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                "_polls": 0,
                "_expire": self.expire_next > 0,
            }
            self.expire_next = max(0, self.expire_next - 1)
            self.batches[b["id"]] = b
        return b

    def poll_batch(self, batch_id: str) -> dict:
        b = self.batches.get(batch_id)
        if b is None:
            raise HTTPFault(404, "no such batch")
        with self.lock:
            b["_polls"] += 1
            if b["status"] in ("validating", "in_progress") and b["_polls"] >= self.polls_to_finish:
                self._finish(b)
            elif b["status"] == "validating":
                b["status"] = "in_progress"
        return b

    def _finish(self, b: dict) -> None:
        lines = [json.loads(x) for x in self.files[b["input_file_id"]].decode().splitlines() if x.strip()]
        out, err = [], []
        n = len(lines)
        for i, line in enumerate(lines):
            if b["_expire"] and i >= n // 3:
                if i < 2 * n // 3:
                    err.append(
                        {
                            "id": self._new_id("batch_req"),
                            "custom_id": line["custom_id"],
                            "response": None,
                            "error": {"code": "batch_expired", "message": "not executed before the window"},
                        }
                    )
                continue
            self.lock.release()  # answer() takes the lock itself
            try:
                resp = {"status_code": 200, "request_id": "req", "body": self.answer(line["body"])}
            except HTTPFault as e:
                resp = {
                    "status_code": e.status,
                    "request_id": "req",
                    "body": {"error": {"message": e.message, "type": "server_error"}},
                }
            finally:
                self.lock.acquire()
            rec = {
                "id": self._new_id("batch_req"),
                "custom_id": line["custom_id"],
                "response": resp,
                "error": None,
            }
            (out if resp["status_code"] == 200 else err).append(rec)
        for kind, recs in (("output_file_id", out), ("error_file_id", err)):
            if recs:
                fid = self._new_id("file")
                self.files[fid] = "".join(json.dumps(r) + "\n" for r in recs).encode()
                b[kind] = fid
        b["status"] = "expired" if b["_expire"] else "completed"
        b["request_counts"] = {"total": n, "completed": len(out), "failed": len(err)}

    # -- HTTP -----------------------------------------------------------------------------------------------
    def _handler_class(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _send(self, status: int, payload, headers: dict | None = None, raw: bytes | None = None):
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header(
                    "Content-Type", "application/octet-stream" if raw is not None else "application/json"
                )
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _dispatch(self, method: str):
                body = self._body() if method == "POST" else b""
                try:
                    given = self.headers.get("Authorization") or ""
                    if given != f"Bearer {server.api_key}":
                        raise HTTPFault(401, "invalid api key" + (f": {given}" if server.echo_key else ""))
                    path = self.path.split("?")[0].rstrip("/")
                    parts = path.split("/")
                    if method == "POST" and path == "/v1/chat/completions":
                        return self._send(200, server.answer(json.loads(body)))
                    if method == "POST" and path == "/v1/files":
                        return self._send(200, self._upload(body))
                    if method == "GET" and len(parts) == 5 and parts[2] == "files" and parts[4] == "content":
                        if parts[3] not in server.files:
                            raise HTTPFault(404, "no such file")
                        return self._send(200, None, raw=server.files[parts[3]])
                    if method == "POST" and path == "/v1/batches":
                        return self._send(200, _public(server.create_batch(json.loads(body))))
                    if method == "GET" and path == "/v1/batches":
                        data = [
                            _public(b)
                            for b in sorted(server.batches.values(), key=lambda b: b["id"], reverse=True)
                        ]
                        return self._send(200, {"object": "list", "data": data, "has_more": False})
                    if method == "GET" and len(parts) == 4 and parts[2] == "batches":
                        return self._send(200, _public(server.poll_batch(parts[3])))
                    raise HTTPFault(404, f"no route {method} {path}")
                except HTTPFault as e:
                    self._send(
                        e.status, {"error": {"message": e.message, "type": "error", "code": None}}, e.headers
                    )

            def _upload(self, body: bytes) -> dict:
                head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
                msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
                fields, filename, data = {}, "upload", b""
                for part in msg.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    if name == "file":
                        filename = part.get_filename() or filename
                        data = part.get_payload(decode=True)
                    else:
                        fields[name] = part.get_payload(decode=True).decode()
                if fields.get("purpose") != "batch":
                    raise HTTPFault(400, "purpose must be batch")
                fid = server._new_id("file")
                server.files[fid] = data
                return {
                    "id": fid,
                    "object": "file",
                    "bytes": len(data),
                    "created_at": int(time.time()),
                    "filename": filename,
                    "purpose": "batch",
                    "status": "processed",
                }

            def do_GET(self):
                self._dispatch("GET")

            def do_POST(self):
                self._dispatch("POST")

        return Handler


def _public(b: dict) -> dict:
    return {k: v for k, v in b.items() if not k.startswith("_")}
