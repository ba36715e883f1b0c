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
    return TestPipeline(options=PipelineOptions(["--direct_running_mode=in_memory"]), blocking=True)


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
