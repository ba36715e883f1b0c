"""`lift3d run`: lift then QA, into one output folder."""
from __future__ import annotations

import time

HELP = "lift a dataset and generate QA shards in one go (lift, then qa)"
DESCRIPTION = (
    "Run `lift3d lift` into OUT/repository, then `lift3d qa` from it into OUT/qa. Takes the "
    "options of both; re-running resumes both stages. Unlisted flags are Beam pipeline options.")
ACCEPTS_PIPELINE_OPTIONS = True


def add_arguments(parser) -> None:
    from pipelines import options as opt

    opt.add_arguments(parser, opt.LIFT_GROUPS + [g for g in opt.QA_GROUPS if g not in opt.LIFT_GROUPS])


def run(args, extra) -> int:
    from pipelines import options as opt
    from pipelines.commands.lift import lift_summary
    from pipelines.commands.qa import qa_out, qa_summary
    from pipelines.lift_pipeline import run_lift
    from pipelines.progress import format_table
    from pipelines.qa_pipeline import run_qa

    with opt.user_errors():
        s = opt.resolve(args, extra)
        if s.qa.repository:
            raise ValueError("--repository is not used by `lift3d run` (it reads OUT/repository)")
        t0 = time.monotonic()
        lstats = run_lift(s)
        t1 = time.monotonic()
        qstats = run_qa(s)
        t2 = time.monotonic()
    print(format_table(lift_summary(lstats, s.output.out, t1 - t0), title="lift3d run: lift"))
    print(format_table(qa_summary(qstats, qa_out(s), t2 - t1), title="lift3d run: qa"))
    return 0 if lstats["balanced"] else 1
