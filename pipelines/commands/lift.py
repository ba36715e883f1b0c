"""`lift3d lift`: 2D-annotated images -> the 3D object repository (OUT/repository)."""
from __future__ import annotations

import sys
import time

HELP = "lift 2D-annotated images into a 3D object repository (sharded WebDataset)"
DESCRIPTION = (
    "Read a dataset, estimate or read depth, lift every annotated object to a metric 3D box and "
    "write OUT/repository: shard-NNNNNN.tar (KEY.jpg, KEY.json), index/objects.parquet, "
    "rejected/, errors/, manifest.json and stats.json. Re-running into the same OUT resumes: "
    "finished shards are kept. Flags not listed here are Apache Beam pipeline options "
    "(e.g. --runner, --direct_num_workers, Dataflow/Flink/Spark options).")
ACCEPTS_PIPELINE_OPTIONS = True


def add_arguments(parser) -> None:
    from pipelines import options as opt

    opt.add_arguments(parser, opt.LIFT_GROUPS)


def lift_summary(stats: dict, out: str, seconds: float) -> list[tuple[str, object]]:
    """Rows of the final summary table of a lift run."""
    im, ob = stats["images"], stats["objects"]
    rows = [("images in", im["in"]), ("lifted", im["lifted"]), ("rejected", im["rejected"]),
            ("failed", im["failed"]), ("objects kept", ob["kept"]), ("objects rejected", ob["rejected"])]
    reasons = {**stats["objects_rejected_by_reason"]}
    for r, n in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))[:6]:
        rows.append((f"  rejected: {r}", n))
    for r, n in sorted(stats["images_failed_by_reason"].items(), key=lambda kv: (-kv[1], kv[0]))[:4]:
        rows.append((f"  failed: {r}", n))
    models = stats.get("models") or {}
    if models:
        rows.append(("depth", models.get("depth")))
        seg = models.get("segmenter_used")
        rows.append(("segmenter", seg if not models.get("segmenter_fallback") else f"{seg} (SAM unavailable)"))
    rows += [("shards", stats["shards"]), ("samples", stats["samples"]),
             ("wall time", f"{seconds:.1f} s"), ("images/s", f"{im['in'] / seconds:.2f}" if seconds > 0 else "-"),
             ("repository", f"{out}/repository")]
    return rows


def run(args, extra) -> int:
    from pipelines import options as opt
    from pipelines.lift_pipeline import run_lift
    from pipelines.progress import format_table

    t0 = time.monotonic()
    with opt.user_errors():
        s = opt.resolve(args, extra)
        stats = run_lift(s)
    print(format_table(lift_summary(stats, s.output.out, time.monotonic() - t0), title="lift3d lift: summary"))
    if not stats["balanced"]:
        print("warning: images in != lifted + rejected + failed", file=sys.stderr)
        return 1
    return 0
