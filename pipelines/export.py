"""`lift3d export --format n3d-vlm`: QA shards + the repository's depth -> N3D-VLM training data.

    OUT/dataset_info.json                 LLaMA-Factory entries lift3d_n3d_stage1 / _stage2
    OUT/stage1/rows-NNNNNN.jsonl          localisation rows (detection + grounding)
    OUT/stage2/rows-NNNNNN.jsonl          spatial reasoning rows + a share of localisation rows
    OUT/images/NNNNNN/KEY.jpg             the QA shard's image, as stored
    OUT/points/NNNNNN/KEY.npz             point map (lifting.pointmap) from KEY.depth.png and K
    OUT/_parts/shard-NNNNNN.stats.json    per unit, written last (its presence = unit done)
    OUT/stats.json                        samples in = exported + skipped (by reason); rows

Unit N reads QA shard N and repository shard N (the QA pipeline keeps that numbering)
through `lifting.repository.iter_shard_samples`. A sample that cannot be exported is
counted under a named reason and listed in OUT/errors.jsonl, never dropped silently.
Re-running into the same folder resumes; another configuration there is refused unless
--overwrite.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from lifting import storage
from pipelines import sinks

FORMATS = ("n3d-vlm",)

#: Reasons a QA sample is not exported (stats.json `skipped_by_reason`).
SKIP_REASONS = {
    "qa_json_missing": "the QA shard has no KEY.json for the sample",
    "qa_json_invalid": "KEY.json is not a QA sample",
    "qa_style_not_n3d": "the QA text is not in the n3d style (lift3d qa --style n3d)",
    "image_missing": "the QA shard has no KEY.jpg",
    "repository_record_missing": "the repository shard has no record with that key",
    "depth_missing": "the repository has no KEY.depth.png (lift with --write-depth)",
    "depth_unreadable": "KEY.depth.png does not decode",
    "depth_size_mismatch": "the depth map's size differs from the record's width x height",
    "record_invalid": "the repository record has no usable K / width / height",
}


@dataclass(frozen=True)
class ExportConfig:
    """What changes the export's output (its run identity).

    long_side: point-map long side in pixels (None = the image's full size).
    compress_points: deflate the .npz (about half the bytes, 3-4x the CPU time per sample).
    localisation_share: fraction of the stage-2 rows that are localisation rows.
    """

    format: str = "n3d-vlm"
    long_side: int | None = 640
    compress_points: bool = False
    localisation_share: float = 0.2


def unit_name(unit: int) -> str:
    return f"{unit:06d}"


def _write_fast(path: Path, data: bytes) -> None:
    """Write via a temporary sibling and a rename (no fsync: the unit's stats file, written
    last with fsync, is what marks the unit done; a killed unit is redone whole)."""
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:12]}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _json_loads():
    """orjson.loads when installed (the [trainers] extra; ~4x faster on the records and QA
    samples, which cost as much as the depth decode), else json.loads. Both raise ValueError
    subclasses on bad input."""
    try:
        import orjson
    except ImportError:
        return json.loads
    return orjson.loads


def _record_geometry(rec: dict):
    """(K (3, 3) array, (W, H)) of a repository record; ValueError when unusable."""
    import numpy as np

    K = np.asarray(rec["K"], dtype=np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"bad K {rec.get('K')!r}")
    return K, (int(rec["width"]), int(rec["height"]))


def export_unit(unit: int, qa_shard: str, repo_shard: str | None, out: str, cfg: ExportConfig) -> dict:
    """Export one unit (see module docstring); returns the unit's stats dict (also written)."""
    from lifting.pointmap import npz_bytes, point_map
    from lifting.qa.n3d_rows import question_row, split_stages
    from lifting.repository import RepositoryError, decode_depth_png, iter_shard_samples

    t0 = time.process_time()
    loads = _json_loads()
    root = Path(out)
    name = unit_name(unit)
    img_dir, pts_dir = root / "images" / name, root / "points" / name
    img_dir.mkdir(parents=True, exist_ok=True)
    pts_dir.mkdir(parents=True, exist_ok=True)
    repo = {}
    if repo_shard is not None:
        repo = {s["__key__"]: s for s in iter_shard_samples(repo_shard)}
    skipped, errors, rows = Counter(), [], []
    n_in = n_out = npz_total = 0
    for s in iter_shard_samples(qa_shard):
        n_in += 1
        key = s["__key__"]

        def skip(reason: str, detail: str = "") -> None:
            skipped[reason] += 1
            errors.append({"key": key, "unit": unit, "reason": reason, "detail": detail[:300]})

        if "json" not in s:
            skip("qa_json_missing")
            continue
        try:
            qa = loads(s["json"])
            questions = qa["questions"]
        except (ValueError, KeyError, TypeError) as e:
            skip("qa_json_invalid", str(e))
            continue
        if qa.get("style") != "n3d":
            skip("qa_style_not_n3d", f"style {qa.get('style', 'lift3d')!r}")
            continue
        if not s.get("jpg"):
            skip("image_missing")
            continue
        rs = repo.get(key)
        if rs is None or "json" not in rs:
            skip("repository_record_missing")
            continue
        try:
            rec = loads(rs["json"])
            K, (W, H) = _record_geometry(rec)
        except (ValueError, KeyError, TypeError) as e:
            skip("record_invalid", str(e))
            continue
        if "depth.png" not in rs:
            skip("depth_missing")
            continue
        try:
            depth = decode_depth_png(rs["depth.png"])
        except RepositoryError as e:
            skip("depth_unreadable", e.detail)
            continue
        if depth.shape != (H, W):
            skip("depth_size_mismatch", f"depth {depth.shape} vs record {(H, W)}")
            continue
        pcd, intr = point_map(depth, K, cfg.long_side)
        npz = npz_bytes(pcd, intr, compress=cfg.compress_points)
        npz_total += len(npz)
        image, points = f"images/{name}/{key}.jpg", f"points/{name}/{key}.npz"
        _write_fast(root / image, bytes(s["jpg"]))
        _write_fast(root / points, npz)
        rows.extend(question_row(qa, q, image, points) for q in questions)
        n_out += 1
    stages = split_stages(rows, cfg.localisation_share)
    for stage, stage_rows in stages.items():
        (root / stage).mkdir(parents=True, exist_ok=True)
        _write_fast(root / stage / f"rows-{name}.jsonl",
                    b"".join(sinks.canonical_json(r) + b"\n" for r in stage_rows))
    sinks.write_bytes_atomic(sinks.part_path(root, unit, "errors.jsonl"),
                             b"".join(sinks.canonical_json(e) + b"\n" for e in errors))
    stats = {"unit": unit, "samples_in": n_in, "samples_exported": n_out, "skipped_by_reason": dict(skipped),
             "rows": len(rows), "rows_by_stage": {k: len(v) for k, v in stages.items()},
             "rows_by_question_type": dict(Counter(r["question_type"] for r in rows)),
             "npz_bytes": npz_total, "cpu_s": round(time.process_time() - t0, 3)}
    sinks.write_json_atomic(sinks.part_path(root, unit, "stats.json"), stats)
    return stats


def plan_units(qa_dir: Path, repo_dir: Path) -> list[tuple[int, str, str | None]]:
    """(unit, QA shard, repository shard or None) for every QA shard, by name."""
    from lifting import storage
    from lifting.repository import list_shards

    repo = {storage.basename(p): p for p in list_shards(repo_dir)}
    return [(int(storage.basename(p)[6:12]), p, repo.get(storage.basename(p))) for p in list_shards(qa_dir)]


def run_export(qa_dir: Path, repo_dir: Path, out: Path, cfg: ExportConfig, workers: int = 1,
               overwrite: bool = False) -> dict:
    """Export every unit not done yet, then write dataset_info.json, errors.jsonl and stats.json."""

    units = plan_units(qa_dir, repo_dir)
    identity = {"config": asdict(cfg), "qa": str(qa_dir.resolve()), "repository": str(repo_dir.resolve())}
    sinks.prepare_output(out, identity, overwrite=overwrite)
    done = sinks.done_units(out)
    todo = [u for u in units if u[0] not in done]
    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(export_unit, *zip(*[(u, q, r, str(out), cfg) for u, q, r in todo])))
    else:
        for u, q, r in todo:
            export_unit(u, q, r, str(out), cfg)
    return finalize_export(out, [u for u, _, _ in units], cfg)


def finalize_export(out: Path, expected: list[int], cfg: ExportConfig) -> dict:
    """dataset_info.json, errors.jsonl and stats.json from the finished units' parts."""
    from lifting.qa.n3d_rows import dataset_info

    totals: dict = {"samples_in": 0, "samples_exported": 0, "rows": 0, "npz_bytes": 0, "cpu_s": 0.0}
    by_reason, by_stage, by_type = Counter(), Counter(), Counter()
    for u in sorted(expected):
        st = json.loads(storage.read_text(sinks.part_path(out, u, "stats.json")))
        for k in totals:
            totals[k] += st[k]
        by_reason.update(st["skipped_by_reason"])
        by_stage.update(st["rows_by_stage"])
        by_type.update(st["rows_by_question_type"])
    sinks.write_json_atomic(out / "dataset_info.json", dataset_info(), pretty=True)
    sinks.write_bytes_atomic(out / "errors.jsonl",
                             b"".join(storage.read_bytes(sinks.part_path(out, u, "errors.jsonl")) for u in sorted(expected)))
    stats = {"format": cfg.format, "units": len(expected), **totals, "cpu_s": round(totals["cpu_s"], 3),
             "samples_skipped": sum(by_reason.values()), "skipped_by_reason": dict(sorted(by_reason.items())),
             "rows_by_stage": dict(sorted(by_stage.items())), "rows_by_question_type": dict(sorted(by_type.items())),
             "point_map_long_side": cfg.long_side, "points_compressed": cfg.compress_points,
             "localisation_share": cfg.localisation_share}
    assert stats["samples_in"] == stats["samples_exported"] + stats["samples_skipped"]
    sinks.write_json_atomic(out / "stats.json", stats, pretty=True)
    return stats
