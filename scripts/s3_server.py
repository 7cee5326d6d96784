"""Loopback stand-ins for object storage in tests and benchmarks: moto's S3 server, a proxy in
front of it that fails a share of requests, and small synthetic token shards.

Here, not in tests/, because the benchmarks use them too, and a benchmark must not import the tests."""

from __future__ import annotations

import http.client
import http.server
import json
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tokenizer.manifest import Manifest, ShardEntry, TokenizerEntry
from tokenizer.shards import write_token_shard


def synthetic_tokens(folder: Path, vocab: int = 512, docs: int = 240, seed: int = 0) -> Path:
    """Two domains of documents drawn from a skewed Markov chain (learnable, unlike uniform noise),
    as token shards with their manifest.json; returns the folder."""
    rng = np.random.default_rng(seed)
    successor = rng.integers(2, vocab, size=(vocab, 4))
    entries = []
    for shard in range(3):
        rows = []
        for i in range(docs // 3):
            n = int(rng.integers(40, 400))
            tokens = np.empty(n, dtype=np.int64)
            tokens[0] = rng.integers(2, vocab)
            picks = rng.integers(0, 4, size=n)
            for t in range(1, n):
                tokens[t] = successor[tokens[t - 1], picks[t] % 2 if picks[t] < 3 else 3]
            tokens[-1] = 1  # EOS
            rows.append((tokens, "general" if i % 3 else "finance", f"doc-{shard}-{i}"))
        entries.append(write_token_shard(folder / f"shard-{shard:05d}.arrow", rows, np.dtype(np.uint16)))
    # no sentencepiece model behind these ids: the manifest names none that exists (nothing here encodes text)
    tokenizer = TokenizerEntry(sha256="0" * 64, vocab_size=vocab, eos_id=1, model="no-tokenizer.model")
    shards = [e if isinstance(e, ShardEntry) else ShardEntry(**e) for e in entries]
    manifest = Manifest.of_shards(shards, tokenizer, np.dtype(np.uint16), False, {"finance": {}, "general": {}})
    (folder / "manifest.json").write_text(json.dumps(manifest.to_dict()))
    return folder


def bundled_config_on_store(path: Path, sources_url: str, runs_url: str, run_name: str) -> Path:
    """The bundled run's config (``python -m pipelines.web_corpus`` with no arguments) with every
    source under ``sources_url`` (the sample corpus' layout) and the runs folder at ``runs_url``."""
    from pipelines.config import SAMPLE_CORPUS, WebCorpusConfig

    sources = WebCorpusConfig().model_dump(mode="json")["sources"]
    for source in sources:
        source["paths"] = [p.replace(str(SAMPLE_CORPUS), sources_url) for p in source["paths"]]
    path.write_text(json.dumps({"runs_dir": runs_url, "run_name": run_name, "sources": sources}))
    return path


def upload_corpus(fs, bucket_prefix: str) -> None:
    """The sample corpus' WARC files under ``bucket_prefix`` (``bucket/sources``), in its layout."""
    from pipelines.config import SAMPLE_CORPUS

    for path in sorted(SAMPLE_CORPUS.rglob("*.warc.gz")):
        fs.put_file(str(path), f"{bucket_prefix}/{path.relative_to(SAMPLE_CORPUS).as_posix()}")


def upload_folder(fs, local: Path, remote: str) -> None:
    for path in sorted(local.iterdir()):
        fs.put_file(str(path), f"{remote}/{path.name}")


class FlakyProxy(http.server.ThreadingHTTPServer):
    """Forwards HTTP to ``upstream`` (host, port), answering every ``every``-th request with a 503
    SlowDown itself (the request never reaches the store, as when a front end sheds load), and
    every request whose path holds ``deny`` with a 403 AccessDenied (a permanent error).

    ``hold_after``: once a PUT whose path holds it is answered, every later write (PUT, POST,
    DELETE) waits until ``release()``, reads go on: a run that writes is held at a known point
    (its next write) for as long as a test needs to act there."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], every: int, deny: str | None = None, hold_after: str | None = None):
        self.upstream, self.every, self.seen, self.failed, self.deny = upstream, every, 0, 0, deny
        self.hold_after, self.holding, self.released = hold_after, threading.Event(), threading.Event()
        self._lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    def release(self) -> None:
        self.released.set()

    def should_fail(self) -> bool:
        with self._lock:
            self.seen += 1
            fail = self.every > 0 and self.seen % self.every == 0
            self.failed += fail
            return fail

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts = []
            while (size := int(self.rfile.readline().strip().split(b";")[0], 16)) > 0:
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(parts)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _refuse(self, status: int, payload: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Content-Type", "application/xml")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _forward(self):
        body = self._body()
        if self.command in ("PUT", "POST", "DELETE") and self.server.holding.is_set():
            self.server.released.wait()
        if self.server.deny and self.server.deny in self.path:
            return self._refuse(403, b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>")
        if self.server.should_fail():
            return self._refuse(503, b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "content-length", "connection")}
        headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        self.send_response(response.status)
        for k, v in response.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection", "server", "date"):
                self.send_header(k, v)
        # a HEAD answer carries the object's length, without its bytes
        length = response.getheader("Content-Length", "0") if self.command == "HEAD" else str(len(data))
        self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        if self.command == "PUT" and self.server.hold_after and self.server.hold_after in self.path:
            self.server.holding.set()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward


def start_moto():
    """moto's S3 server on a free loopback port; returns (server, endpoint URL)."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


@contextmanager
def moto_in_environment():
    """moto's S3 server, reached by every client of this process through the environment (AWS_*,
    AWS_ENDPOINT_URL), as the product reads it; yields a test-side s3fs filesystem on it."""
    import os

    import s3fs

    server, endpoint = start_moto()
    env = {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}
    before = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    s3fs.S3FileSystem.clear_instance_cache()  # an instance made for another endpoint must not be reused
    try:
        yield s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()

