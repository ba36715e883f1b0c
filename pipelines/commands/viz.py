"""`lift3d viz`: per-image PNGs (wireframes, bird's-eye view, QA) and a static HTML gallery."""
from __future__ import annotations

import argparse
import json
import logging
import random
import re
import sys
from pathlib import Path

HELP = "render per-image PNGs (3D wireframes, bird's-eye view, QA pairs) and a static HTML gallery"
DESCRIPTION = (
    "Writes OUT/images/KEY.png for each selected image (photo with projected 3D boxes, a top view with the "
    "camera frustum, the objects and the image's QA pairs) and OUT/index.html, a self-contained gallery "
    "that opens from disk, with filters by category, QA family and rejection reason. Optionally exports "
    "each scene for a 3D viewer (PLY + JSON boxes, or a Rerun recording when rerun-sdk is installed)."
)

log = logging.getLogger("lift3d.viz")

#: Record keys as schemas/image_record.schema.json allows them. Output file names are built
#: from keys read from the shards, which are input: any other key is skipped, never written.
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def valid_key(key) -> bool:
    """True when `key` (a record's `key`) is safe as a file name: ^[A-Za-z0-9_-]+$ (no dot, slash, NUL)."""
    return isinstance(key, str) and KEY_RE.fullmatch(key) is not None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", required=True, help="lift output folder (OUT or OUT/repository); a URL "
                   "(s3://, gs://, ...) is read through a local mirror in $LIFT3D_CACHE_DIR (~/.cache/lift3d)")
    p.add_argument("--out", required=True, help="gallery folder to write")
    p.add_argument("--qa", help="QA shard folder (default: OUT/qa next to the repository, when present)")
    p.add_argument("--limit", type=int, default=200, help="images to render (0 = all)")
    p.add_argument("--sample", choices=["first", "random"], default="first",
                   help="which images when there are more than --limit (random: uniform reservoir sample)")
    p.add_argument("--seed", type=int, default=0, help="seed of --sample random")
    p.add_argument("--keys", help="comma-separated image keys to render (overrides --sample)")
    p.add_argument("--category", help="only images with an object of this category")
    p.add_argument("--with-rejected", action="store_true", help="only images with at least one rejected object")
    p.add_argument("--max-height", type=int, default=540, help="photo height in the PNGs, pixels")
    p.add_argument("--export-3d", choices=["none", "ply", "rerun"], default="none",
                   help="also export each scene to OUT/3d/KEY/ (PLY + boxes.json) or OUT/3d/KEY.rrd (Rerun)")
    p.add_argument("--title", default=None, help="gallery title (default: the repository path)")
    p.add_argument("--eval", help="a `lift3d eval --out` JSON report to show in the gallery header (3D box figures "
                   "and, from `lift3d eval --qa`, the QA truth against GT)")


def _wanted(rec: dict, args, keys: set[str] | None) -> bool:
    if keys is not None:
        return str(rec.get("key")) in keys
    objs = rec.get("objects") or []
    if args.category and not any(o.get("category") == args.category for o in objs):
        return False
    if args.with_rejected and not (rec.get("status") == "rejected" or any(o.get("status") == "rejected" for o in objs)):
        return False
    return True


def _run(args: argparse.Namespace) -> int:
    from pipelines.options import repository_paths
    from pipelines.cli import UserError
    from lifting.viz.gallery import gallery_entry, write_gallery
    from lifting.viz.panel import render_panel
    from lifting.viz.reader import iter_qa, iter_records

    paths = repository_paths(args.repository, args.qa)
    keys = {k.strip() for k in args.keys.split(",") if k.strip()} if args.keys else None
    limit = args.limit if args.limit and args.limit > 0 else None
    with_depth = args.export_3d != "none"

    chosen: list[tuple[dict, dict]] = []
    rng = random.Random(args.seed)
    seen = 0
    skipped: dict[str, int] = {}
    for rec, files in iter_records(paths.repo_dir, with_image=True, with_depth=with_depth):
        if not valid_key(rec.get("key")):
            skipped["record_key_invalid"] = skipped.get("record_key_invalid", 0) + 1
            log.warning("skipping a record whose key is not ^[A-Za-z0-9_-]+$: %r", str(rec.get("key"))[:80])
            continue
        if not _wanted(rec, args, keys):
            continue
        seen += 1
        if keys is not None or limit is None or len(chosen) < limit:
            chosen.append((rec, files))
        elif args.sample == "random":
            j = rng.randrange(seen)  # reservoir sampling: every match kept with probability limit/seen
            if j < limit:
                chosen[j] = (rec, files)
        else:
            break
    if not chosen:
        why = f" ({skipped['record_key_invalid']} record(s) skipped: invalid key)" if skipped else ""
        raise UserError(f"no image of the repository matches the selection{why}")
    want = {str(r.get("key")) for r, _ in chosen}
    questions: dict[str, list[dict]] = {k: [] for k in want}
    for s in iter_qa(paths.qa_dir):
        k = str(s.get("image_key"))
        if k in questions:
            questions[k].extend(s.get("questions") or [])
    log.info("rendering %d images (QA from %s)", len(chosen), paths.qa_dir or "nowhere")

    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries, exported, export_reasons = [], 0, {}
    for rec, files in chosen:
        key = str(rec.get("key"))
        qs = questions.get(key, [])
        png = render_panel(rec, files.get("jpg"), qs, max_height=args.max_height)
        png.save(out / "images" / f"{key}.png", optimize=False)
        entries.append(gallery_entry(rec, qs, f"images/{key}.png"))
        if with_depth:
            res = _export(rec, files, out, args.export_3d)
            if "reason" in res:
                export_reasons[res["reason"]] = export_reasons.get(res["reason"], 0) + 1
            else:
                exported += 1
    evaluation = None
    if args.eval:
        try:
            evaluation = json.loads(Path(args.eval).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"--eval report not readable: {args.eval} ({e})") from e
        if not isinstance(evaluation, dict):
            raise UserError(f"--eval report is not a JSON object: {args.eval}")
    index = write_gallery(out, entries, title=args.title or f"lift3d: {paths.repo_dir}", evaluation=evaluation)
    summary = {"gallery": str(index), "images": len(entries), "matching_images_seen": seen,
               "records_skipped": skipped}
    if with_depth:
        summary.update({"exported_3d": exported, "export_3d_skipped": export_reasons})
        if export_reasons.get("rerun_not_installed"):
            log.warning("--export-3d rerun needs the optional package rerun-sdk (pip install rerun-sdk)")
    sys.stdout.write(json.dumps(summary) + "\n")
    return 0


def _export(rec: dict, files: dict, out: Path, kind: str) -> dict:
    import io

    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from lifting.viz.export3d import export_ply, export_rerun
    from lifting.viz.reader import decode_depth

    depth = decode_depth(files["depth.png"], rec) if files.get("depth.png") else None
    rgb = None
    if files.get("jpg"):
        try:
            rgb = np.asarray(Image.open(io.BytesIO(files["jpg"])).convert("RGB"))
        except (UnidentifiedImageError, OSError):
            rgb = None
    key = str(rec.get("key"))
    if kind == "rerun":
        return export_rerun(out / "3d" / f"{key}.rrd", rec, depth, rgb)
    return export_ply(out / "3d" / key, rec, depth, rgb)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.options import repository_errors

    with repository_errors():
        return _run(args)
