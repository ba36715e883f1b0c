"""One small lifted repository + n3d-style QA + N3D-VLM exports, built once per test process
through the real command line (shared by the export tests).

`lift3d synth --scene outdoor` renders 1242x375 street scenes with exact 16-bit millimetre
depth and GT boxes; `lift3d lift --write-depth` stores the depth it used as KEY.depth.png;
`lift3d qa --style n3d` writes the QA (detection and grounding weighted up so that every image
has localisation rows); `lift3d export` writes the 640 px export and a full-size one.
"""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipelines.cli import main


@dataclass(frozen=True)
class Built:
    root: Path
    repo: Path
    qa: Path
    export: Path  # default: point maps with long side 640
    export_full: Path  # --full-size


@functools.lru_cache(maxsize=1)
def build() -> Built:
    root = Path(tempfile.mkdtemp(prefix="lift3d_export_"))
    atexit.register(shutil.rmtree, root, True)  # shared by the test files of this process
    data, out = root / "data", root / "out"
    assert main(["synth", "--out", str(data), "--scenes", "4", "--seed", "3", "--scene", "outdoor"]) == 0
    assert main(["lift", "--source", "omni3d", "--annotations", str(data / "annotations.json"), "--images",
                 str(data / "images"), "--out", str(out), "--workers", "1", "--no-progress", "--write-depth",
                 "--samples-per-shard", "2"]) == 0
    cfg = root / "qa.yaml"
    cfg.write_text("qa_config: {max_questions: 14, max_per_family: 3, families: {detection: 3.0, grounding: 3.0, "
                   "relation_position: 2.0, relation_size: 1.0, metric_distance: 1.0, metric_object: 1.0, "
                   "direction_clock: 1.0, multi_order: 1.0, multi_extreme: 1.0, multi_count: 0.5, "
                   "viewpoint_opposite: 1.0, viewpoint_object: 1.0}}\n")
    assert main(["qa", "--out", str(out), "--config", str(cfg), "--style", "n3d", "--workers", "1",
                 "--no-progress"]) == 0
    exp, full = root / "export", root / "export_full"
    assert main(["export", "--format", "n3d-vlm", "--qa", str(out / "qa"), "--out", str(exp)]) == 0
    assert main(["export", "--format", "n3d-vlm", "--qa", str(out / "qa"), "--out", str(full), "--full-size",
                 "--localisation-share", "0.5"]) == 0
    return Built(root, out / "repository", out / "qa", exp, full)

