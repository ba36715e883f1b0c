"""Lift and QA pipelines end to end on synthetic RGB-D scenes: determinism, resume, accounting."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from pipelines import lift_pipeline, qa_pipeline

ROOT = Path(__file__).resolve().parents[1]
N_SCENES = 5


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from lifting.synthetic import SceneConfig, write_dataset

    d = tmp_path_factory.mktemp("scenes")
    return write_dataset(d, n_scenes=N_SCENES, seed=3, config=SceneConfig(width=240, height=180))


def simple_lift(record, depth, K, *, K_source, depth_source, masks=None, config=None):
    """Test-local stand-in for lift_image: box centre at the median depth of the 2D box."""
    objs = []
    for o in record.objects:
        x0, y0, x1, y1 = (int(round(v)) for v in o.bbox_xyxy)
        d = depth[max(y0, 0):y1, max(x0, 0):x1]
        z = float(np.median(d[d > 0])) if (d > 0).any() else 0.0
        kept = z > 0 and (x1 - x0) >= 15
        box = {"center_cam": [((x0 + x1) / 2 - K[0, 2]) * z / K[0, 0], ((y0 + y1) / 2 - K[1, 2]) * z / K[1, 1], z],
               "dimensions": [0.5, 0.5, 0.5], "R_cam": np.eye(3).tolist(), "yaw": 0.0}
        objs.append({"object_id": o.object_id, "category": o.category, "bbox_xyxy": list(o.bbox_xyxy),
                     "status": "kept" if kept else "rejected", "reason": None if kept else "too_small",
                     "box3d": box if kept else None})
    n = sum(o["status"] == "kept" for o in objs)
    return {"schema_version": 1, "key": record.key, "source": record.source, "image_id": record.image_id,
            "width": record.width, "height": record.height, "K": np.asarray(K).tolist(), "K_source": K_source,
            "depth_source": depth_source, "gravity_cam": [0.0, 1.0, 0.0], "gravity_source": "upright_default",
            "status": "lifted" if n else "rejected", "reason": None if n else "no_object_kept", "objects": objs}


def _argv(scenes, out, *more):
    return ["--source", "omni3d", "--annotations", str(scenes), "--images", str(scenes.parent / "images"),
            "--out", str(out), "--depth-model", "sensor", "--samples-per-shard", "2", "--no-progress", *more]


def _tp():
    from pipelines.local_runner import LocalRunner  # never Beam's default runner: it tries to download Prism

    return TestPipeline(runner=LocalRunner(), options=PipelineOptions(["--direct_running_mode=in_memory"]),
                        blocking=True)


def _files(root: Path) -> dict[str, bytes]:
    names = [p for p in root.rglob("*") if p.is_file() and "_parts" not in p.parts]
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(names)}


def test_two_runs_byte_identical_and_counts_match(scenes, tmp_path):
    import webdataset as wds

    s1 = lift_pipeline.run(_argv(scenes, tmp_path / "a"), test_pipeline=_tp(), lift_fn=simple_lift)
    s2 = lift_pipeline.run(_argv(scenes, tmp_path / "b"), test_pipeline=_tp(), lift_fn=simple_lift)
    assert s1 == s2
    fa, fb = _files(tmp_path / "a" / "repository"), _files(tmp_path / "b" / "repository")
    assert fa.keys() == fb.keys() and fa == fb
    assert {"manifest.json", "stats.json", "index/objects.parquet", "shard-000000.tar"} <= fa.keys()
    im = s1["images"]
    assert im["in"] == N_SCENES == im["lifted"] + im["rejected"] + im["failed"]
    man = json.loads((tmp_path / "a" / "repository" / "manifest.json").read_text())
    assert man["totals"]["shards"] == 3  # 5 images, 2 per shard
    shards = [str(tmp_path / "a" / "repository" / s["name"]) for s in man["shards"]]
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert len(samples) == s1["samples"] == im["lifted"] == man["totals"]["samples"]
    for smp in samples:
        rec = json.loads(smp["json"])
        assert rec["key"] == smp["__key__"] and smp["jpg"][:2] == b"\xff\xd8"
    gt = json.loads(scenes.read_text())
    assert s1["objects"]["total"] == len(gt["annotations"])


_SCRIPT = """
import sys, time
import numpy as np
from pipelines import lift_pipeline
{src}
def slow_lift(*a, **k):
    time.sleep(0.2)
    return simple_lift(*a, **k)
lift_pipeline.run(sys.argv[1:], lift_fn=slow_lift)
"""


def test_resume_after_kill_matches_uninterrupted(scenes, tmp_path):
    """A run killed mid-way (SIGKILL), then resumed, gives the same files as one clean run."""
    import inspect

    ref, cut = tmp_path / "ref", tmp_path / "cut"
    argv = _argv(scenes, cut, "--samples-per-shard", "1", "--workers", "1")
    script = tmp_path / "run_lift.py"
    script.write_text(_SCRIPT.format(src=inspect.getsource(simple_lift)))
    proc = subprocess.Popen([sys.executable, str(script), *argv], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    repo = cut / "repository"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60 and proc.poll() is None and not (repo / "_parts" / "_run.json").exists():
        time.sleep(0.02)
    time.sleep(1.0)  # inside the (slowed) lift stage
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (repo / "manifest.json").exists(), "the run finished before it could be killed"
    finals = [p for p in repo.glob("shard-*.tar")]
    markers = list((repo / "_parts").glob("shard-*.stats.json"))
    assert len(finals) == len(markers)  # nothing under a final name without its unit being complete
    # also simulate a kill between units: one unit complete, one half-written temporary
    lift_pipeline.run(_argv(scenes, ref, "--samples-per-shard", "1"), test_pipeline=_tp(), lift_fn=simple_lift)
    for src in [ref / "repository" / "shard-000002.tar", *(ref / "repository" / "_parts").glob("shard-000002.*")]:
        dst = repo / src.relative_to(ref / "repository")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(src.read_bytes())
    (repo / "shard-000003.tar.tmp-0123abcd").write_bytes(b"partial")
    stats = lift_pipeline.run(_argv(scenes, cut, "--samples-per-shard", "1"), test_pipeline=_tp(),
                              lift_fn=simple_lift)
    assert stats["images"]["in"] == N_SCENES
    assert not list(repo.rglob("*.tmp-*"))
    assert _files(repo) == _files(ref / "repository")


def _records(repo: Path) -> dict[str, dict]:
    from lifting.repository import iter_repository

    return {r["key"]: r for r, _ in iter_repository(repo)}


@pytest.fixture(scope="module")
def lifted(scenes, tmp_path_factory):
    """A repository of the scenes lifted by the real lifting core with sensor depth (auto-detected)."""
    from pipelines import cli

    out = tmp_path_factory.mktemp("lifted")
    argv = ["lift", "--source", "omni3d", "--annotations", str(scenes), "--images", str(scenes.parent / "images"),
            "--out", str(out), "--samples-per-shard", "2", "--workers", "1", "--no-progress"]
    assert cli.main(argv) == 0
    return out


def test_index_source_end_to_end_matches_native_source(scenes, lifted, tmp_path):
    """Parquet index partitions (lifting.sources.index.build_index) -> `lift3d lift --source index`:
    the same images, objects and per-image records as lifting the native files."""
    from lifting.sources.index import build_index
    from pipelines import cli

    idx = tmp_path / "index"
    build_index("omni3d", annotations=str(scenes), images=str(scenes.parent / "images"), out_dir=idx)
    out = tmp_path / "ix"
    assert cli.main(["lift", "--source", "index", "--index", str(idx), "--out", str(out), "--samples-per-shard", "2",
                     "--workers", "1", "--no-progress"]) == 0
    native = json.loads((lifted / "repository" / "stats.json").read_text())
    via_index = json.loads((out / "repository" / "stats.json").read_text())
    for k in ("images", "objects", "objects_rejected_by_reason", "images_failed_by_reason", "samples"):
        assert via_index[k] == native[k], k
    assert via_index["images"]["in"] == N_SCENES and via_index["models"]["depth"] == "sensor"
    assert _records(out / "repository") == _records(lifted / "repository")
    man = json.loads((out / "repository" / "manifest.json").read_text())
    assert man["config"]["input"]["source"] == "index" and man["totals"]["samples"] == native["samples"]


def test_qa_benchmark_is_built_from_held_out_images_only(lifted, tmp_path):
    from lifting.qa.benchmark import is_held_out, read_benchmark
    from lifting.repository import iter_shard_samples
    from pipelines import cli

    frac = 0.5
    keys = set(_records(lifted / "repository"))
    held = {k for k in keys if is_held_out(k, 0, frac)}
    assert held and held != keys, "pick another fraction: the split must have both sides here"
    out = tmp_path / "q"
    argv = ["qa", "--repository", str(lifted / "repository"), "--qa-out", str(out), "--benchmark", "12",
            "--heldout-fraction", str(frac), "--workers", "1", "--no-progress"]
    assert cli.main(argv) == 0
    st = json.loads((out / "stats.json").read_text())
    items = read_benchmark(out / "benchmark.jsonl")
    assert 0 < len(items) <= 12 and st["benchmark"]["questions"] == len(items)
    assert st["benchmark"]["heldout_images"] == st["records_heldout"] == len(held)
    assert {it["image_key"] for it in items} <= held
    qa_keys = {s["__key__"] for p in sorted(out.glob("shard-*.tar")) for s in iter_shard_samples(p)}
    assert qa_keys and not (qa_keys & held) and qa_keys <= keys - held
    first = (out / "benchmark.jsonl").read_bytes()
    assert cli.main(argv) == 0  # resumed: nothing to redo, same benchmark
    assert (out / "benchmark.jsonl").read_bytes() == first


def test_nested_qa_settings_from_a_config_file_reach_the_workers(lifted, tmp_path, capsys):
    """`qa_config: {margins: {...}, precision: {...}}` in --config builds Margins and
    BboxPrecision on the driver (it used to end in a worker traceback): the text follows the
    precision, huge margins leave no comparison to ask, and a misspelt nested key or a
    wrong type is one line on the driver."""
    import re

    from lifting.repository import iter_shard_samples
    from pipelines import cli

    def run(yaml_text: str, name: str):
        cfg = tmp_path / f"{name}.yaml"
        cfg.write_text(yaml_text)
        out = tmp_path / name
        code = cli.main(["qa", "--config", str(cfg), "--repository", str(lifted / "repository"), "--qa-out", str(out),
                         "--workers", "1", "--no-progress"])
        samples = [json.loads(smp["json"]) for p in sorted(out.glob("shard-*.tar")) for smp in iter_shard_samples(p)]
        return code, samples

    code, samples = run("qa_config:\n  precision: {uv_scale: 100, z_decimals: 1}\n"
                        "  margins: {position_m: 1000.0, size_m: 1000.0, distance_m: 1000.0, volume_m3: 1000.0}\n", "ok")
    assert code == 0 and samples
    text = json.dumps(samples)
    boxes = re.findall(r"Bbox\([^,]+,(\d+),(\d+),(-?[\d.]+),", text)
    assert boxes and all(int(u) <= 100 and int(v) <= 100 and len(z.split(".")[-1]) == 1 for u, v, z in boxes)
    fams = {q["family"] for smp in samples for q in smp["questions"]}
    assert "grounding" in fams and not fams & {"relation_position", "relation_size", "multi_order"}, fams
    capsys.readouterr()
    for bad, needle in [("qa_config: {margins: {postion_m: 1}}\n", "unknown qa_config.margins key(s): postion_m"),
                        ("qa_config: {precision: {uv_scale: fine}}\n", "qa_config.precision.uv_scale must be"),
                        ("qa_config: {margins: 3}\n", "qa_config.margins must be a mapping")]:
        code, _ = run(bad, "bad")
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
        assert code == 2 and len(err) == 1 and needle in err[0], err
