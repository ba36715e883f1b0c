"""Security measures (issue 11, item 4): no unpickling of untrusted data, no shell built from
input, safe shard reading, a pixel limit on decoding, API keys never written anywhere.

The first tests scan the source tree (AST, not grep: comments and strings do not count);
the last ones run the real pipelines on a small synthetic dataset.
"""
from __future__ import annotations

import ast
import io
import json
import logging
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ["lifting", "pipelines", "bench", "scripts"]


def _py_files():
    for d in SCANNED:
        yield from sorted((ROOT / d).rglob("*.py"))


def _dotted(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _kw(call: ast.Call, name: str):
    for k in call.keywords:
        if k.arg == name:
            return k.value
    return None


def _unsafe_calls(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, why) for every call that deserialises code-carrying formats or builds a shell."""
    bad = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = _dotted(n.func)
        last = f.rsplit(".", 1)[-1]
        if f in ("pickle.load", "pickle.loads", "cPickle.load", "dill.load", "dill.loads", "cloudpickle.load",
                 "cloudpickle.loads", "marshal.load", "marshal.loads", "joblib.load", "shelve.open"):
            bad.append((n.lineno, f"{f}: unpickling"))
        elif f == "torch.load":
            wo = _kw(n, "weights_only")
            if not (isinstance(wo, ast.Constant) and wo.value is True):
                bad.append((n.lineno, "torch.load without weights_only=True"))
        elif last == "load" and f.startswith(("np.", "numpy.")):
            ap = _kw(n, "allow_pickle")
            if ap is not None and not (isinstance(ap, ast.Constant) and ap.value is False):
                bad.append((n.lineno, "np.load with allow_pickle"))
        elif f in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all", "yaml.unsafe_load_all"):
            bad.append((n.lineno, f"{f}: use yaml.safe_load"))
        elif f in ("os.system", "os.popen", "commands.getoutput", "subprocess.getoutput", "subprocess.getstatusoutput") \
                or f.startswith("os.spawn") or f.startswith("os.exec"):
            bad.append((n.lineno, f"{f}: runs a shell or replaces the process"))
        elif f.startswith("subprocess.") or last in ("Popen", "check_output", "check_call"):
            sh = _kw(n, "shell")
            if sh is not None and not (isinstance(sh, ast.Constant) and sh.value is False):
                bad.append((n.lineno, f"{f} with shell=True"))
            if n.args and isinstance(n.args[0], (ast.JoinedStr, ast.BinOp, ast.Constant)) and \
                    not (isinstance(n.args[0], ast.Constant) and not isinstance(n.args[0].value, str)):
                bad.append((n.lineno, f"{f} with a command string (use an argument list)"))
        elif f in ("eval", "exec") or last in ("extractall",):
            bad.append((n.lineno, f"{f}"))
    return bad


def test_no_unpickling_no_shell_no_eval_in_the_source_tree():
    found = []
    for p in _py_files():
        tree = ast.parse(p.read_text(encoding="utf-8"), filename=str(p))
        found += [f"{p.relative_to(ROOT)}:{line}: {why}" for line, why in _unsafe_calls(tree)]
    assert not found, "\n".join(found)


def test_the_scanner_catches_what_it_claims():
    src = ("import pickle, os, subprocess, torch, yaml, numpy as np\n"
           "pickle.loads(b)\ntorch.load(p)\ntorch.load(p, weights_only=False)\nnp.load(p, allow_pickle=True)\n"
           "yaml.load(s)\nos.system('ls ' + x)\nsubprocess.run(f'ls {x}', shell=True)\neval(s)\n"
           "t.extractall('.')\n"
           "torch.load(p, weights_only=True)\nsubprocess.run(['ls', x])\nnp.load(p, allow_pickle=False)\n")
    lines = sorted({line for line, _ in _unsafe_calls(ast.parse(src))})
    assert lines == list(range(2, 11)), lines


def test_pickle_free_loaders_are_the_ones_in_use():
    """Model weights: transformers from_pretrained prefers safetensors; third-party loaders that call
    torch.load without the flag (segment-anything, RAM, MoGe) are safe only with torch >= 2.6,
    whose default is weights_only=True."""
    from importlib import metadata

    major, minor = (int(x) for x in metadata.version("torch").split("+")[0].split(".")[:2])
    assert (major, minor) >= (2, 6)
    text = (ROOT / "lifting" / "sources" / "depth_io.py").read_text()
    assert "allow_pickle=False" in text  # .npy depth maps come from datasets: never unpickled


def test_pixel_limit_is_on_and_never_disabled(tmp_path):
    from PIL import Image

    from lifting.sources.image_io import DEFAULT_MAX_PIXELS, InputError, read_image
    from pipelines.options import InputSettings

    assert InputSettings().max_pixels and InputSettings().max_pixels <= DEFAULT_MAX_PIXELS
    for p in _py_files():
        assert "MAX_IMAGE_PIXELS = None" not in p.read_text(encoding="utf-8"), p
    Image.new("RGB", (300, 200)).save(tmp_path / "x.png")
    with pytest.raises(InputError) as e:
        read_image(tmp_path / "x.png", max_pixels=300 * 200 - 1)
    assert e.value.reason == "image_too_large"
    assert read_image(tmp_path / "x.png", max_pixels=300 * 200).shape == (200, 300, 3)


@pytest.mark.parametrize("name,typ", [("../../evil.json", tarfile.REGTYPE), ("/etc/evil.json", tarfile.REGTYPE),
                                      ("a/../../evil.json", tarfile.REGTYPE), ("k.json", tarfile.SYMTYPE),
                                      ("k.json", tarfile.LNKTYPE), ("k.json", tarfile.CHRTYPE)])
def test_shard_reader_refuses_unsafe_members_before_yielding(tmp_path, name, typ):
    from lifting.repository import RepositoryError, iter_shard_samples

    p = tmp_path / "shard-000000.tar"
    with tarfile.open(p, "w") as t:
        ok = tarfile.TarInfo("a.json")
        ok.size = 2
        t.addfile(ok, io.BytesIO(b"{}"))
        ti = tarfile.TarInfo(name)
        ti.type = typ
        if typ == tarfile.REGTYPE:
            ti.size = 2
            t.addfile(ti, io.BytesIO(b"{}"))
        else:
            ti.linkname = "/etc/passwd"
            t.addfile(ti)
    got = []
    with pytest.raises(RepositoryError) as e:
        for s in iter_shard_samples(p):
            got.append(s)
    assert e.value.reason in ("unsafe_member_path", "unsafe_member_type") and got == []


# -- end to end: the API key, and a hostile record key --------------------------------------------

SECRET = "sk-test-L1FT3D-DO-NOT-LEAK-0123456789abcdef"


@pytest.fixture(scope="module")
def small_repo(tmp_path_factory):
    from lifting.synthetic import SceneConfig, write_dataset
    from pipelines import cli

    d = tmp_path_factory.mktemp("sec")
    ann = write_dataset(d / "data", n_scenes=2, seed=21, config=SceneConfig(width=160, height=120))
    out = d / "out"
    assert cli.main(["lift", "--source", "omni3d", "--annotations", str(ann), "--images", str(ann.parent / "images"),
                     "--out", str(out), "--depth-model", "sensor", "--workers", "1", "--no-progress"]) == 0
    return out / "repository"


def test_api_key_only_from_the_environment_and_never_written(small_repo, tmp_path, monkeypatch, caplog, capsys):
    """A QA run with rephrasing and a key in the environment: the key reaches the server's
    Authorization header, and appears in no output file, log line or console output."""
    from lifting.llm.loopback_server import LoopbackChatServer, chat_reply, faithful_rewrite
    from pipelines import qa_pipeline
    from test_reliability_faults import real_rephraser

    monkeypatch.setenv("LIFT3D_TEST_LLM_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("rephrase_config: {api_key_env: LIFT3D_TEST_LLM_KEY, timeout_s: 2.0, max_retries: 1}\n")
    out = tmp_path / "qa"
    with LoopbackChatServer(lambda req, seq: chat_reply(faithful_rewrite(req), seq=seq)) as srv:
        stats = qa_pipeline.run(["--repository", str(small_repo), "--qa-out", str(out), "--rephrase",
                                 "--llm-base-url", srv.url, "--llm-model", "m", "--config", str(cfg),
                                 "--workers", "1", "--no-progress"], rephraser_factory=real_rephraser)
        assert srv.headers_seen.get("authorization") == f"Bearer {SECRET}"
    assert stats["samples"] > 0
    blobs = {str(p): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert any(p.endswith("manifest.json") for p in blobs)
    leaks = [p for p, b in blobs.items() if SECRET.encode() in b]
    io_text = capsys.readouterr()
    assert not leaks and SECRET not in caplog.text and SECRET not in io_text.out + io_text.err
    man = json.loads((out / "manifest.json").read_text())
    assert "LIFT3D_TEST_LLM_KEY" in json.dumps(man)  # the variable's name is recorded, not its value


def _rewrite_key(repo: Path, dst: Path, new_key: str) -> None:
    """Copy `repo` with the first record's JSON `key` replaced (member names stay safe)."""
    import shutil

    shutil.copytree(repo, dst)
    shard = sorted(dst.glob("shard-*.tar"))[0]
    with tarfile.open(shard) as t:
        members = [(m, t.extractfile(m).read()) for m in t.getmembers()]
    with tarfile.open(shard, "w") as t:
        done = False
        for m, data in members:
            if m.name.endswith(".json") and not done:
                rec = json.loads(data)
                rec["key"] = new_key
                data = json.dumps(rec).encode()
                done = True
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))


def test_viz_never_writes_outside_its_output_folder(small_repo, tmp_path, capsys):
    """A record key read from a hostile shard ('../../escaped') is skipped and counted, never
    used as a file name; the other records are rendered."""
    from pipelines import cli

    hostile = tmp_path / "hostile"
    _rewrite_key(small_repo, hostile, "../../escaped")
    out = tmp_path / "a" / "b" / "viz"
    capsys.readouterr()
    rc = cli.main(["viz", "--repository", str(hostile), "--out", str(out)])
    outside = [p for p in tmp_path.rglob("escaped*")]
    assert not outside, outside
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and summary["records_skipped"] == {"record_key_invalid": 1}
    assert summary["images"] >= 1 and len(list((out / "images").glob("*.png"))) == summary["images"]
