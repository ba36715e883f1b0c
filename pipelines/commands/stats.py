"""`lift3d stats`: a dataset card (Markdown + PNG plots + stats.json) of a 3D repository."""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

HELP = "write a dataset card: counts per category / QA family / answer form, distributions, rejection reasons"
DESCRIPTION = (
    "Streams the repository (and its QA shards when found) and writes OUT/README.md with tables and "
    "matplotlib plots in OUT/plots/, plus OUT/stats.json: counts per category, QA family and answer form; "
    "distributions of depth, object size, points per object and projected IoU; provenance of intrinsics, "
    "depth and gravity; rejection and failure reasons."
)

log = logging.getLogger("lift3d.stats")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", required=True, help="lift output folder (OUT or OUT/repository); a URL "
                   "(s3://, gs://, ...) is read through a local mirror in $LIFT3D_CACHE_DIR (~/.cache/lift3d)")
    p.add_argument("--out", help="card folder (default: OUT/card next to the repository; ./card for a URL)")
    p.add_argument("--qa", help="QA shard folder (default: OUT/qa next to the repository, when present)")
    p.add_argument("--title", help="card title (default: the output folder's name)")


def _run(args: argparse.Namespace) -> int:
    from pipelines.options import repository_paths
    from lifting.viz.card import DatasetStats
    from lifting.viz.reader import iter_qa, iter_records, iter_side

    paths = repository_paths(args.repository, args.qa)
    st = DatasetStats()
    n = 0
    for rec, _ in iter_records(paths.repo_dir):
        st.add_record(rec)
        n += 1
        if n % 100_000 == 0:
            log.info("%d image records read", n)
    for e in iter_side(paths.repo_dir, "errors"):
        st.add_failure(e)
    for s in iter_qa(paths.qa_dir):
        st.add_qa(s)
    from lifting.storage import is_url

    out = Path(args.out) if args.out else Path("card") if is_url(args.repository) else paths.repo_dir.parent / "card"
    title = args.title or paths.repo_dir.parent.name or "3D repository"
    readme = st.write_card(out, title=title, command=_command(args))
    s = st.summary()
    sys.stdout.write(json.dumps({"card": str(readme), "images": s["images"], "objects": s["objects"],
                                 "qa_questions": s["qa_questions"]}) + "\n")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces this card."""
    parts = ["lift3d", "stats", "--repository", str(args.repository)]
    for flag in ("out", "qa", "title"):
        if getattr(args, flag):
            parts += [f"--{flag}", str(getattr(args, flag))]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    from pipelines.options import repository_errors

    with repository_errors():
        return _run(args)
