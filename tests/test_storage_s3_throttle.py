"""A throttled object store: the S3 server answers a share of the requests with
`503 SlowDown` (injected by a proxy on 127.0.0.1 in front of moto's server, as a busy bucket
does). `lift3d run` into the bucket retries them (botocore's retry policy, which s3fs uses)
and ends with the bytes of an unthrottled local run: nothing lost, nothing written twice."""
from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest

import s3_server
from test_storage_s3 import BUCKET, _local_files, _run_argv, _same_part, dataset, s3  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not s3_server.available(), reason=s3_server.MISSING)

SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message></Error>")


class ThrottlingProxy:
    """Forwards every request to `upstream`, except every `every`-th PUT / GET, which gets
    503 SlowDown without reaching it."""

    def __init__(self, upstream: str, every: int = 3):
        up = urlsplit(upstream)
        self.counts = {"forwarded": 0, "throttled": 0}
        lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    n = proxy.counts["forwarded"] + proxy.counts["throttled"]
                    throttle = self.command in ("PUT", "GET") and n % every == every - 1
                    proxy.counts["throttled" if throttle else "forwarded"] += 1
                if throttle:
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOWDOWN)))
                    self.end_headers()
                    self.wfile.write(SLOWDOWN)
                    return
                conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "expect")}
                conn.request(self.command, self.path, body=body if body else None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    # a HEAD answer's Content-Length is the object's size: pass it on
                    if k.lower() not in ("transfer-encoding", "connection") and \
                            (k.lower() != "content-length" or self.command == "HEAD"):
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_a_throttled_bucket_gets_the_bytes_of_a_local_run(s3, dataset, tmp_path, monkeypatch):  # noqa: F811
    from pipelines import cli

    monkeypatch.setenv("LIFT3D_CACHE_DIR", str(tmp_path / "cache"))
    local = tmp_path / "local"
    assert cli.main(_run_argv(str(dataset), str(dataset.parent / "images"), str(local))) == 0
    url = f"s3://{BUCKET}/runs/throttled"
    with ThrottlingProxy(s3.endpoint) as proxy:
        s3.set_env(AWS_ENDPOINT_URL_S3=proxy.endpoint, AWS_ENDPOINT_URL=proxy.endpoint,
                   AWS_MAX_ATTEMPTS="10", AWS_RETRY_MODE="standard")
        try:
            assert cli.main(_run_argv(f"s3://{BUCKET}/in/annotations.json", f"s3://{BUCKET}/in/images", url)) == 0
        finally:
            s3.set_env(AWS_ENDPOINT_URL_S3=s3.endpoint, AWS_ENDPOINT_URL=s3.endpoint)
    assert proxy.counts["throttled"] > 20, proxy.counts  # the store really pushed back
    remote = s3.files(url)
    for part in ("repository", "qa"):
        mine = _same_part(_local_files(local / part))
        theirs = _same_part({k[len(part) + 1:]: v for k, v in remote.items() if k.startswith(part + "/")})
        assert mine and mine == theirs, part
