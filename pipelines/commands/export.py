"""`lift3d export`: QA shards -> a trainer's own dataset layout (N3D-VLM / LLaMA-Factory)."""
from __future__ import annotations

import json
import time
from pathlib import Path

from pipelines.cli import UserError

HELP = "export QA shards for a trainer: N3D-VLM's rows, images and point maps (LLaMA-Factory sharegpt)"
DESCRIPTION = (
    "Convert QA shards written with `lift3d qa --style n3d` into N3D-VLM's training data: sharded JSON Lines rows "
    "{messages, images, points, question_type} for stage 1 (detection + grounding) and stage 2 (spatial reasoning "
    "mixed with a share of localisation rows), the images, one point map per image (.npz: pcd float16 (H, W, 4) "
    "with x left, y up, z forward in metres and a validity mask; intr float32 (3, 3) normalised intrinsics) made "
    "from the repository's KEY.depth.png and K (lift with --write-depth), and OUT/dataset_info.json for "
    "LLaMA-Factory (--dataset_dir OUT, --dataset lift3d_n3d_stage1 or lift3d_n3d_stage2). Samples that cannot "
    "be exported are counted by reason in OUT/stats.json and listed in OUT/errors.jsonl. Re-running resumes.")


def add_arguments(parser) -> None:
    from pipelines.export import FORMATS

    parser.add_argument("--format", required=True, choices=FORMATS,
                        help="layout to write; n3d-vlm: the released N3D-VLM's LLaMA-Factory sharegpt rows with "
                        "point maps")
    parser.add_argument("--qa", required=True, metavar="DIR",
                        help="QA folder (shard-NNNNNN.tar from `lift3d qa --style n3d`)")
    parser.add_argument("--repository", metavar="DIR", default=None,
                        help="3D repository the QA was made from (its KEY.depth.png and K make the point maps); "
                        "default: the repository folder next to --qa (OUT/qa -> OUT/repository)")
    parser.add_argument("--out", required=True, metavar="DIR", help="export folder (created)")
    parser.add_argument("--long-side", type=int, default=640,
                        help="point-map long side in pixels, as the release's (a 1024x683 image gets 640x427); "
                        "never upsampled")
    parser.add_argument("--full-size", action="store_true",
                        help="point maps at the image's own size instead of --long-side")
    parser.add_argument("--compress-points", action="store_true",
                        help="deflate the .npz point maps (about half the bytes, about 3-4x the export's CPU time)")
    parser.add_argument("--localisation-share", type=float, default=0.2,
                        help="fraction of the stage-2 rows that are localisation (detection/grounding) rows, in [0, 1)")
    parser.add_argument("--workers", type=int, default=1, help="processes exporting shards in parallel")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard a previous export in --out made with a different configuration")


def _qa_style(qa_dir: Path) -> str | None:
    """The text style the QA folder's manifest records (None when it has no manifest)."""
    man = qa_dir / "manifest.json"
    if not man.is_file():
        return None
    try:
        cfg = json.loads(man.read_text()).get("config", {})
    except (OSError, ValueError):
        return None
    return (cfg.get("qa_config") or {}).get("style", "lift3d")


def run(args, extra) -> int:
    from lifting.repository import list_shards
    from pipelines.export import ExportConfig, run_export
    from pipelines.progress import format_table
    from pipelines.sinks import OutputConflict

    qa_dir = Path(args.qa)
    if not qa_dir.is_dir():
        raise UserError(f"--qa folder not found: {qa_dir}")
    if not list_shards(qa_dir):
        raise UserError(f"no shard-NNNNNN.tar in --qa folder {qa_dir}")
    style = _qa_style(qa_dir)
    if style is not None and style != "n3d":
        raise UserError(f"{qa_dir} holds QA in the {style!r} style; N3D-VLM needs `lift3d qa --style n3d`")
    repo_dir = Path(args.repository) if args.repository else qa_dir.parent / "repository"
    if not repo_dir.is_dir():
        raise UserError(f"repository folder not found: {repo_dir} (give --repository)")
    if not 0.0 <= args.localisation_share < 1.0:
        raise UserError(f"--localisation-share must be in [0, 1), got {args.localisation_share}")
    if args.long_side < 16:
        raise UserError(f"--long-side must be >= 16, got {args.long_side}")
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    cfg = ExportConfig(format=args.format, long_side=None if args.full_size else args.long_side,
                       compress_points=args.compress_points, localisation_share=args.localisation_share)
    t0 = time.monotonic()
    out = Path(args.out)
    try:
        stats = run_export(qa_dir, repo_dir, out, cfg, workers=args.workers, overwrite=args.overwrite)
    except OutputConflict as e:
        raise UserError(str(e)) from None
    rows = [("samples in", stats["samples_in"]), ("exported", stats["samples_exported"]),
            ("skipped", stats["samples_skipped"])]
    rows += [(f"  {k}", v) for k, v in stats["skipped_by_reason"].items()]
    rows += [(f"rows {k}", v) for k, v in stats["rows_by_stage"].items()]
    rows += [("point maps", f"{stats['npz_bytes'] / 1e6:.1f} MB"), ("wall time", f"{time.monotonic() - t0:.1f} s"),
             ("dataset_info", str(out / "dataset_info.json"))]
    print(format_table(rows, title="lift3d export: summary"))
    return 0
