"""Injected faults (issue 11, item 3): disk full, unwritable output, missing or corrupt model
weights, an LLM endpoint that is down, slow or returns garbage.

Kill-and-resume is tested in tests/test_pipeline_lift.py::test_resume_after_kill_matches_uninterrupted
(SIGKILL of the running job, then a resumed run gives byte-identical files) and not repeated
here; the LLM client/rephraser fault matrix is in tests/test_llm_client.py and
tests/test_llm_rephraser.py. This file adds the pipeline-level view: `lift3d lift` and
`lift3d qa --rephrase` run end to end while the fault happens.
"""
from __future__ import annotations

import errno
import json
import socket
from pathlib import Path

import pytest

from pipelines import cli

N_SCENES = 3


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from lifting.synthetic import SceneConfig, write_dataset

    return write_dataset(tmp_path_factory.mktemp("scenes"), n_scenes=N_SCENES, seed=11,
                         config=SceneConfig(width=160, height=120))


def _lift(scenes, out, *more):
    return cli.main(["lift", "--source", "omni3d", "--annotations", str(scenes), "--images",
                     str(scenes.parent / "images"), "--out", str(out), "--depth-model", "sensor",
                     "--samples-per-shard", "1", "--workers", "1", "--no-progress", *more])


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "_parts" not in p.parts}


@pytest.fixture(scope="module")
def reference(scenes, tmp_path_factory):
    """A clean, uninterrupted run: the output every faulty-then-resumed run must reproduce."""
    out = tmp_path_factory.mktemp("ref")
    assert _lift(scenes, out) == 0
    return out


def _disk_full_after(monkeypatch, n_ok: int):
    """Make the shard writer fail with ENOSPC after `n_ok` samples (mid-shard, mid-run)."""
    from pipelines import sinks

    real = sinks._add_sample
    calls = {"n": 0}

    def add(tar, sample):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tar, sample)

    monkeypatch.setattr(sinks, "_add_sample", add)


def test_disk_full_mid_shard_leaves_no_partial_shard_and_resume_completes(scenes, reference, tmp_path,
                                                                          monkeypatch):
    out = tmp_path / "out"
    with monkeypatch.context() as m:
        _disk_full_after(m, 1)
        assert _lift(scenes, out) == 2  # a one-line user error (test_disk_full_is_one_clear_line)
    repo = out / "repository"
    finals = sorted(p.name for p in repo.glob("shard-*.tar"))
    markers = sorted(p.name.replace(".stats.json", ".tar") for p in (repo / "_parts").glob("shard-*.stats.json"))
    assert finals == markers, "a shard exists under its final name without its unit being complete"
    assert not list(repo.rglob("*.tmp-*")), "temporary files left behind"
    assert not (repo / "manifest.json").exists()
    # space is back: the same command resumes and gives exactly the clean run's files
    assert _lift(scenes, out) == 0
    assert _files(repo) == _files(reference / "repository")


def test_disk_full_is_one_clear_line(scenes, tmp_path, monkeypatch, capsys):
    _disk_full_after(monkeypatch, 0)
    rc = _lift(scenes, tmp_path / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "No space left on device" in err[0], err
    assert err[0].startswith("lift3d lift: error:")
    assert not list((tmp_path / "out" / "repository").glob("shard-*.tar")), "a partial shard under a final name"


def test_os_errors_of_workers_are_recognised_in_every_form():
    """Beam's in-memory runner chains the worker's OSError; the multi-process runner only passes
    its traceback text in a RuntimeError. Both (and a plain OSError) give one line; other
    errors are left alone (they are bugs and keep their traceback)."""
    from pipelines.options import os_error_line

    chained = RuntimeError("OSError: [Errno 28] No space left on device [while running 'WriteUnits']")
    chained.__context__ = OSError(errno.ENOSPC, "No space left on device")
    text = RuntimeError('Traceback (most recent call last):\n  File "x.py", line 1, in f\n'
                        "PermissionError: [Errno 13] Permission denied: '/out/repository/shard-000000.tar'\n\n"
                        "During handling of the above exception, another exception occurred:\n...")
    for exc, want in ((chained, "No space left on device"), (text, "Permission denied"),
                      (OSError(errno.EROFS, "Read-only file system", "/out"), "Read-only file system: /out")):
        line = os_error_line(exc)
        assert line and want in line and "\n" not in line, (exc, line)
    assert os_error_line(RuntimeError("ValueError: bad value [while running 'Lift']")) is None
    assert os_error_line(OSError("cannot identify image file")) is None  # no errno: not the environment


def test_unwritable_output_is_one_clear_line(scenes, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    rc = _lift(scenes, blocker / "out")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("lift3d lift: error:"), err


def test_missing_weights_fail_before_any_work(scenes, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["lift", "--source", "omni3d", "--annotations", str(scenes), "--images",
                   str(scenes.parent / "images"), "--out", str(out), "--depth-model", "depth-anything-v2",
                   "--depth-weights", str(tmp_path / "no-such-weights"), "--workers", "1", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "weights" in err[0] and "no-such-weights" in err[0], err
    assert not out.exists(), "work started before the model was checked"


@pytest.fixture(scope="module")
def corrupt_ckpt(tmp_path_factory):
    """A tiny Depth Anything V2 checkpoint folder whose model.safetensors is cut in half."""
    from lifting.models.depth import tiny_random_checkpoint

    d = tiny_random_checkpoint("depth-anything-v2", tmp_path_factory.mktemp("ckpt"))
    w = next(d.glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    return d


def test_corrupt_weights_fail_before_any_work(scenes, corrupt_ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["lift", "--source", "omni3d", "--annotations", str(scenes), "--images",
                   str(scenes.parent / "images"), "--out", str(out), "--depth-model", "depth-anything-v2",
                   "--depth-weights", str(corrupt_ckpt), "--depth-input-size", "56", "--workers", "1",
                   "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "safetensors" in err[0].lower(), err
    assert not list(out.rglob("shard-*.tar"))


def test_corrupt_weights_are_refused_by_the_safe_loader(corrupt_ckpt):
    """The loader itself (safetensors) refuses the truncated file with a clear error, no pickle involved."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    with pytest.raises(SafetensorError):
        load_file(str(next(corrupt_ckpt.glob("*.safetensors"))))


# -- LLM endpoint faults through `lift3d qa --rephrase` -------------------------------------------

def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def real_rephraser(config: dict):
    """The library's Rephraser built from the pipeline's rephrase config (what QAUnitFn.setup
    builds; injected so that these tests use the exact config dict the workers receive)."""
    from lifting.llm import RephraseConfig, Rephraser

    return Rephraser(RephraseConfig.from_dict(config))


def _qa(repo: Path, out: Path, tmp: Path, *more) -> dict:
    """`qa_pipeline.run` (the `lift3d qa` pipeline, real QA engine and real Rephraser); QA samples by key."""
    from pipelines import qa_pipeline

    cfg = tmp / f"{out.name}.yaml"
    cfg.write_text("rephrase_config: {timeout_s: 0.5, max_retries: 1, budget_s: 3.0, backoff_base_s: 0.01, "
                   "backoff_max_s: 0.02, breaker_threshold: 2, breaker_cooldown_s: 60.0, concurrency: 4}\n")
    qa_pipeline.run(["--repository", str(repo), "--qa-out", str(out), "--config", str(cfg), "--workers", "1",
                     "--no-progress", *more], rephraser_factory=real_rephraser)
    from lifting.repository import iter_shard_samples

    samples = {}
    for p in sorted(out.glob("shard-*.tar")):
        for s in iter_shard_samples(p):
            samples[s["__key__"]] = json.loads(s["json"])
    return samples


@pytest.fixture(scope="module")
def template_qa(reference, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qa_ref")
    return _qa(reference / "repository", tmp / "plain", tmp)


def _garbage(req, seq):
    from lifting.llm.loopback_server import Reply

    return Reply(status=200, body=b'{"choices": [{"message": "\xff\xfe not json', kind="garbage")


def _slow(req, seq):
    from lifting.llm.loopback_server import chat_reply, faithful_rewrite

    r = chat_reply(faithful_rewrite(req), seq=seq)
    r.delay_s = 2.0  # longer than timeout_s: every attempt times out
    return r


@pytest.mark.parametrize("fault", ["down", "slow", "garbage"])
def test_llm_fault_keeps_every_sample_with_template_text(reference, template_qa, tmp_path, fault):
    from lifting.llm.loopback_server import LoopbackChatServer

    assert template_qa, "the reference repository must give QA samples"
    llm = ["--rephrase", "--llm-model", "m"]
    if fault == "down":
        got = _qa(reference / "repository", tmp_path / fault, tmp_path, *llm,
                  "--llm-base-url", f"http://127.0.0.1:{_free_port()}/v1")
    else:
        with LoopbackChatServer(_slow if fault == "slow" else _garbage) as srv:
            got = _qa(reference / "repository", tmp_path / fault, tmp_path, *llm, "--llm-base-url", srv.url)
            assert srv.requests > 0
    assert got.keys() == template_qa.keys(), "samples lost"
    n = 0
    for key, sample in got.items():
        ref_q = {q["qid"]: q for q in template_qa[key]["questions"]}
        for q in sample["questions"]:
            n += 1
            assert q["question"] == ref_q[q["qid"]]["question"] and q["answer"] == ref_q[q["qid"]]["answer"]
            assert q.get("rephrased") is False and q.get("rephrase_status") not in (None, "ok"), q
    assert n > 0


def test_lift3d_qa_rephrase_cli_runs(reference, tmp_path):
    """`lift3d qa --rephrase` from the CLI (QAUnitFn.setup builds the Rephraser itself); the
    answers land in QA_OUT/llm_cache.sqlite by default, so a re-run asks the server nothing."""
    from lifting.llm.loopback_server import LoopbackChatServer, chat_reply, faithful_rewrite
    from lifting.repository import iter_shard_samples

    qa_out = tmp_path / "q"
    cfg = tmp_path / "fast.yaml"  # garbage answers are retried: keep the retries short
    cfg.write_text("rephrase_config: {max_retries: 1, backoff_base_s: 0.01, backoff_max_s: 0.02}\n")
    argv = ["qa", "--repository", str(reference / "repository"), "--qa-out", str(qa_out), "--rephrase",
            "--llm-model", "m", "--config", str(cfg), "--workers", "1", "--no-progress"]
    with LoopbackChatServer(_garbage) as srv:
        assert cli.main([*argv, "--llm-base-url", srv.url]) == 0
        assert srv.requests > 0
    with LoopbackChatServer(lambda req, seq: chat_reply(faithful_rewrite(req), seq=seq)) as srv:
        assert cli.main([*argv, "--llm-base-url", srv.url, "--overwrite"]) == 0
        paid = srv.requests
        assert paid > 0 and (qa_out / "llm_cache.sqlite").is_file()
        questions = [q for p in sorted(qa_out.glob("shard-*.tar")) for s in iter_shard_samples(p)
                     for q in json.loads(s["json"])["questions"]]
        assert questions and any(q.get("rephrased") for q in questions)
        srv.reset_counters()
        assert cli.main([*argv, "--llm-base-url", srv.url, "--overwrite"]) == 0
        assert srv.requests == 0, "a re-run asked the server again instead of using QA_OUT/llm_cache.sqlite"


# -- determinism whatever the number of workers (issue 11, item 5) ---------------------------------

def test_two_worker_processes_give_byte_identical_output(scenes, reference, tmp_path):
    """Same input + config + seed: 2 worker processes (multi_processing) write the same shards,
    manifest, stats, index, rejected and errors bytes as the 1-worker in-memory reference.
    (Two runs with the same worker count: tests/test_pipeline_lift.py::test_two_runs_byte_identical_and_counts_match.)"""
    out = tmp_path / "w2"
    rc = cli.main(["lift", "--source", "omni3d", "--annotations", str(scenes), "--images",
                   str(scenes.parent / "images"), "--out", str(out), "--depth-model", "sensor",
                   "--samples-per-shard", "1", "--workers", "2", "--direct_running_mode=multi_processing",
                   "--no-progress"])
    assert rc == 0
    a, b = _files(reference / "repository"), _files(out / "repository")
    assert {"manifest.json", "stats.json", "index/objects.parquet", "errors/errors.jsonl"} <= a.keys()
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a), [k for k in a if a.get(k) != b.get(k)]


# -- a clean command line: no import-time warnings -------------------------------------------------

_HELP_SCRIPT = """
import contextlib, io, json, sys
from pipelines import cli
codes = {}
for argv in [["--help"]] + [[c, "--help"] for c in cli._command_modules()] + [["models"]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse ends --help with SystemExit(0)
            code = e.code
    codes[" ".join(argv)] = [code, bool(out.getvalue().strip())]
print(json.dumps({"codes": codes, "beam_imported": "apache_beam" in sys.modules}))
"""


def test_help_of_every_command_and_models_print_no_warning():
    """`lift3d --help`, `lift3d COMMAND --help` for every command and `lift3d models`, through
    pipelines.cli.main: exit 0, and nothing on stderr (Beam's import-time 'apitools not found'
    warning came from command modules importing apache_beam to add their flags). Run in a fresh
    interpreter: in this one apache_beam is already imported and would warn no more."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    p = subprocess.run([sys.executable, "-c", _HELP_SCRIPT], cwd=root, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    res = json.loads(p.stdout.strip().splitlines()[-1])
    from pipelines import cli as _cli

    assert len(res["codes"]) == len(_cli._command_modules()) + 2
    assert all(code == 0 and printed for code, printed in res["codes"].values()), res["codes"]
    assert p.stderr == "", p.stderr
    assert not res["beam_imported"]
