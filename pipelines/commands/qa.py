"""`lift3d qa`: 3D repository -> spatial QA training shards (OUT/qa)."""
from __future__ import annotations

import time

HELP = "generate spatial QA training shards from a 3D repository"
DESCRIPTION = (
    "Read OUT/repository (or --repository DIR), generate 3D detection, grounding and spatial "
    "chain-of-thought QA for every image, optionally rephrase with an LLM, and write "
    "OUT/qa/shard-NNNNNN.tar (KEY.jpg + KEY.json), manifest.json and stats.json. QA shard N "
    "comes from repository shard N; re-running resumes. Unlisted flags are Beam pipeline options.")
ACCEPTS_PIPELINE_OPTIONS = True


def add_arguments(parser) -> None:
    from pipelines import options as opt

    opt.add_arguments(parser, opt.QA_GROUPS + ["output"])


def qa_summary(stats: dict, out: str, seconds: float) -> list[tuple[str, object]]:
    """Rows of the final summary table of a QA run."""
    rows = [("records in", stats.get("records_in", 0)), ("without QA", stats.get("records_without_qa", 0)),
            ("QA samples", stats["samples"]), ("questions", stats["questions"]),
            ("invalid samples", stats["samples_invalid"])]
    for fam, n in sorted(stats["questions_by_family"].items()):
        rows.append((f"  {fam}", n))
    rows += [("shards", stats["shards"]), ("wall time", f"{seconds:.1f} s"), ("qa output", out)]
    if stats.get("benchmark"):
        b = stats["benchmark"]
        rows += [("held-out images", stats.get("records_heldout", 0)), ("benchmark questions", b["questions"]),
                 ("benchmark", f"{out}/{b['file']}")]
    return rows


def qa_out(s) -> str:
    return s.qa.qa_out or f"{s.output.out}/qa"


def run(args, extra) -> int:
    from pipelines import options as opt
    from pipelines.progress import format_table
    from pipelines.qa_pipeline import run_qa

    t0 = time.monotonic()
    with opt.user_errors():
        s = opt.resolve(args, extra)
        stats = run_qa(s)
    print(format_table(qa_summary(stats, qa_out(s), time.monotonic() - t0), title="lift3d qa: summary"))
    return 0
