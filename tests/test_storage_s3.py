"""Inputs and outputs on s3:// against a real S3-compatible server on 127.0.0.1 (moto).

`lift3d run` reads the annotations, images and depth files from the bucket and writes the
repository and the QA shards there: the same shard, index, stats, rejected and errors bytes
as a run on local files; a run killed mid-way resumes to the same bytes; a missing bucket,
missing credentials and a permission error each end with one clear line and lose nothing.
"""
from __future__ import annotations

import http.client
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

import s3_server
from test_pipeline_lift import _SCRIPT, _tp, simple_lift

pytestmark = pytest.mark.skipif(not s3_server.available(), reason=s3_server.MISSING)

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "lift3d-data"
N_SCENES = 5
#: What must be byte-identical between a local and an s3:// run (the manifest and _parts/_run.json
#: also record the input and output locations, which differ by construction).
SAME = ("shard-", "index/", "stats.json", "rejected/", "errors/")


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_server.S3Server() as server:
        server.make_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def dataset(s3, tmp_path_factory):
    """Synthetic RGB-D scenes, locally and copied to s3://BUCKET/in (same relative layout)."""
    from lifting.synthetic import SceneConfig, write_dataset

    d = tmp_path_factory.mktemp("scenes")
    ann = write_dataset(d, n_scenes=N_SCENES, seed=5, config=SceneConfig(width=240, height=180))
    s3.upload(d, f"s3://{BUCKET}/in")
    return ann


def _run_argv(ann: str, images: str, out: str, *more: str) -> list[str]:
    return ["run", "--source", "omni3d", "--annotations", ann, "--images", images, "--out", out,
            "--samples-per-shard", "2", "--workers", "1", "--no-progress", *more]


def _local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_parts" not in p.parts}


def _same_part(files: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if k.startswith(SAME) and "_parts/" not in k}


def test_lift3d_run_on_s3_gives_the_bytes_of_a_local_run(s3, dataset, tmp_path, capsys, monkeypatch):
    from pipelines import cli

    monkeypatch.setenv("LIFT3D_CACHE_DIR", str(tmp_path / "cache"))
    local = tmp_path / "local"
    assert cli.main(_run_argv(str(dataset), str(dataset.parent / "images"), str(local))) == 0
    url = f"s3://{BUCKET}/runs/a"
    assert cli.main(_run_argv(f"s3://{BUCKET}/in/annotations.json", f"s3://{BUCKET}/in/images", url)) == 0
    remote = s3.files(url)
    for part in ("repository", "qa"):
        mine = _same_part(_local_files(local / part))
        theirs = _same_part({k[len(part) + 1:]: v for k, v in remote.items() if k.startswith(part + "/")})
        assert mine and mine == theirs, part
        assert any(k.startswith("shard-") for k in theirs)
    stats = json.loads(remote["repository/stats.json"])
    assert stats["images"]["in"] == N_SCENES and stats["balanced"] and stats["objects_accounting"]["balanced"]
    assert stats["images"]["lifted"] > 0
    man = json.loads(remote["repository/manifest.json"])
    assert sorted("repository/" + s["name"] for s in man["shards"]) == sorted(
        k for k in remote if k.startswith("repository/shard-"))
    # lift3d eval reads the repository from the bucket (through a local mirror): the same report
    reports = []
    for where in (str(local), url):
        capsys.readouterr()
        assert cli.main(["eval", "--repository", where]) == 0
        rep = json.loads(capsys.readouterr().out)
        rep.pop("repository")
        reports.append(rep)
    assert reports[0] == reports[1] and reports[0]
    # a second run into the same bucket folder resumes: every unit done, nothing rewritten
    before = s3.files(url)
    assert cli.main(_run_argv(f"s3://{BUCKET}/in/annotations.json", f"s3://{BUCKET}/in/images", url)) == 0
    assert s3.files(url) == before


def _lift_argv(ann: str, images: str, out: str, *more: str) -> list[str]:
    return ["--source", "omni3d", "--annotations", ann, "--images", images, "--out", out,
            "--depth-model", "sensor", "--samples-per-shard", "1", "--no-progress", *more]


def test_kill_and_resume_on_s3_matches_an_uninterrupted_local_run(s3, dataset, tmp_path):
    """SIGKILL mid-run with the output on s3://, a partial object of an unfinished unit left
    behind, then the same command again: the same bytes as one clean local run."""
    from pipelines import lift_pipeline

    url = f"s3://{BUCKET}/runs/killed"
    ann, images = f"s3://{BUCKET}/in/annotations.json", f"s3://{BUCKET}/in/images"
    script = tmp_path / "run_lift.py"
    script.write_text(_SCRIPT.format(src=inspect.getsource(simple_lift)))
    proc = subprocess.Popen([sys.executable, str(script), *_lift_argv(ann, images, url, "--workers", "1")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    fs = s3.fs()
    run_file = f"{BUCKET}/runs/killed/repository/_parts/_run.json"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 90 and proc.poll() is None and not fs.exists(run_file):
        time.sleep(0.05)
        fs.invalidate_cache()
    time.sleep(1.0)  # inside the (slowed) lift stage
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    cut = s3.files(url)
    assert "repository/manifest.json" not in cut, "the run finished before it could be killed"
    shards = {k for k in cut if k.startswith("repository/shard-")}
    markers = {k for k in cut if k.startswith("repository/_parts/shard-") and k.endswith(".stats.json")}
    assert len(shards) == len(markers)  # nothing under a final name without its unit being complete
    # a worker that died after uploading a shard but before its marker: a stale object, no marker
    done = {int(k.split("shard-")[1][:6]) for k in markers}
    stale = min(set(range(N_SCENES)) - done)
    fs.pipe_file(f"{BUCKET}/runs/killed/repository/shard-{stale:06d}.tar", b"partial upload")
    fs.pipe_file(f"{BUCKET}/runs/killed/repository/_parts/shard-{stale:06d}.objects.parquet", b"partial")

    ref = tmp_path / "ref"
    lift_pipeline.run(_lift_argv(str(dataset), str(dataset.parent / "images"), str(ref)), test_pipeline=_tp(),
                      lift_fn=simple_lift)
    stats = lift_pipeline.run(_lift_argv(ann, images, url), test_pipeline=_tp(), lift_fn=simple_lift)
    assert stats["images"]["in"] == N_SCENES and stats["balanced"]
    remote = {k[len("repository/"):]: v for k, v in s3.files(url).items() if k.startswith("repository/")}
    assert _same_part(remote) == _same_part(_local_files(ref / "repository"))
    assert remote[f"shard-{stale:06d}.tar"] != b"partial upload"


def _one_error_line(capsys, argv: list[str]) -> str:
    from pipelines import cli

    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    lines = [line for line in err if line.startswith("lift3d ")]
    assert len(lines) == 1 and "Traceback" not in "\n".join(err), err
    return lines[0]


def test_missing_bucket_is_one_clear_line(s3, dataset, capsys):
    line = _one_error_line(capsys, _run_argv(str(dataset), str(dataset.parent / "images"), "s3://no-such-bucket/out"))
    assert "s3://no-such-bucket" in line and "does not exist" in line
    assert not s3.fs().exists("no-such-bucket")  # not created behind the user's back


def test_missing_credentials_are_one_clear_line_and_lose_nothing(s3, dataset, capsys):
    url = f"s3://{BUCKET}/runs/nocreds"
    s3.set_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None)
    try:
        line = _one_error_line(capsys, _run_argv(str(dataset), str(dataset.parent / "images"), url))
    finally:
        s3.set_env(AWS_ACCESS_KEY_ID=s3.KEY, AWS_SECRET_ACCESS_KEY=s3.SECRET)
    assert "credentials" in line and f"s3://{BUCKET}" in line and "AWS_ACCESS_KEY_ID" in line
    # with the credentials back, the same command completes
    from pipelines import cli

    assert cli.main(_run_argv(str(dataset), str(dataset.parent / "images"), url)) == 0
    stats = json.loads(s3.files(url)["repository/stats.json"])
    assert stats["images"]["in"] == N_SCENES and stats["balanced"]


def test_permission_denied_is_one_clear_line(s3, dataset, capsys):
    """A user whose IAM policy denies writing objects: writing the output is refused by the
    server (moto enforces IAM once its no-auth allowance is 0)."""
    import boto3
    from moto import settings

    iam = boto3.client("iam", endpoint_url=s3.endpoint, region_name="us-east-1")
    iam.create_user(UserName="reader")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"},
        {"Effect": "Deny", "Action": ["s3:PutObject", "s3:DeleteObject"], "Resource": "*"}]}
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    url = f"s3://{BUCKET}/runs/denied"
    s3.set_env(AWS_ACCESS_KEY_ID=key["AccessKeyId"], AWS_SECRET_ACCESS_KEY=key["SecretAccessKey"])
    old = settings.INITIAL_NO_AUTH_ACTION_COUNT
    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0
    try:
        line = _one_error_line(capsys, _run_argv(f"s3://{BUCKET}/in/annotations.json", f"s3://{BUCKET}/in/images",
                                                 url))
    finally:
        settings.INITIAL_NO_AUTH_ACTION_COUNT = old
        s3.set_env(AWS_ACCESS_KEY_ID=s3.KEY, AWS_SECRET_ACCESS_KEY=s3.SECRET)
    assert "permission denied" in line and url + "/" in line
    assert not [k for k in s3.files(url) if k.startswith("repository/shard-")]


def test_index_planning_with_the_output_on_s3(s3, dataset, tmp_path):
    """--plan-in-memory-mb 0 with s3:// input and output: the index is built locally, uploaded
    to OUT/_index, read back by the workers; the same bytes as the same plan on local files."""
    from pipelines import cli

    more = ("--plan-in-memory-mb", "0")
    local = tmp_path / "local"
    assert cli.main(_run_argv(str(dataset), str(dataset.parent / "images"), str(local), *more)) == 0
    url = f"s3://{BUCKET}/runs/indexed"
    assert cli.main(_run_argv(f"s3://{BUCKET}/in/annotations.json", f"s3://{BUCKET}/in/images", url, *more)) == 0
    remote = s3.files(url)
    assert "_index/_SUMMARY.json" in remote and any(k.startswith("_index/part-") for k in remote)
    for part in ("repository", "qa"):
        mine = _same_part(_local_files(local / part))
        theirs = _same_part({k[len(part) + 1:]: v for k, v in remote.items() if k.startswith(part + "/")})
        assert mine and mine == theirs, part


# -- a throttled store -------------------------------------------------------------------------
# The S3 server answers a share of the requests with `503 SlowDown` (injected by a proxy on
# 127.0.0.1 in front of moto's server, as a busy bucket does). `lift3d run` into the bucket
# retries them (botocore's retry policy, which s3fs uses) and ends with the bytes of an
# unthrottled local run: nothing lost, nothing written twice.

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


def test_a_throttled_bucket_gets_the_bytes_of_a_local_run(s3, dataset, tmp_path, monkeypatch):
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
