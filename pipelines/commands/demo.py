"""`lift3d demo`: the whole engine on embedded synthetic RGB-D scenes, no download."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

HELP = "run the whole engine on a few synthetic RGB-D scenes (no download) and report fidelity"
DESCRIPTION = (
    "Generate a few synthetic indoor RGB-D scenes with exact 3D ground truth (OUT/data), lift them "
    "with their sensor depth (OUT/repository), generate QA (OUT/qa), render a visual report "
    "(OUT/report/index.html) and print the fidelity of the lifted boxes against the ground truth. "
    "Unlisted flags are Beam pipeline options.")
ACCEPTS_PIPELINE_OPTIONS = True

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--out", required=True, help="output folder (created): data/, repository/, qa/, report/")
    parser.add_argument("--scenes", type=int, default=6, help="number of synthetic scenes to render and lift")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the scenes (same seed, same scenes)")
    parser.add_argument("--noise", choices=["none", "realistic"], default="realistic",
                        help="sensor-like depth noise in the scenes, or exact depth")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: all cores)")
    parser.add_argument("--report-limit", type=int, default=12, help="images rendered in the visual report")


def _fidelity(repo: Path, qa: Path, annotations: Path) -> dict | None:
    """lifting.evaluate's summary of the repository against the scenes' GT, with the QA
    truth (lifting.qa_truth) under "qa_truth" (None if unavailable)."""
    try:
        from lifting.evaluate import evaluate_records, load_gt
        from lifting.qa_truth import evaluate_qa
        from lifting.repository import iter_repository
        from lifting.viz.reader import iter_qa
    except ImportError as e:
        log.warning("fidelity not computed: %s", e)
        return None
    gt = load_gt(annotations)
    records = {rec["key"]: rec for rec, _ in iter_repository(repo)}
    fid = evaluate_records(records.values(), gt)
    fid["qa_truth"] = evaluate_qa(iter_qa(qa), records, gt)
    return fid


def _flat_numbers(d: dict, prefix: str = "", depth: int = 0) -> list[tuple[str, object]]:
    rows = []
    for k, v in d.items():
        if isinstance(v, dict) and depth < 1:
            rows += _flat_numbers(v, f"{prefix}{k}.", depth + 1)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            rows.append((f"{prefix}{k}", f"{v:.3f}" if isinstance(v, float) else v))
    return rows


def run(args, extra) -> int:
    from pipelines import cli
    from pipelines import options as opt
    from pipelines.commands.lift import lift_summary
    from pipelines.commands.qa import qa_summary
    from pipelines.commands.synth import synth
    from pipelines.lift_pipeline import run_lift
    from pipelines.progress import format_table
    from pipelines.qa_pipeline import run_qa

    out = Path(args.out)
    t0 = time.monotonic()
    with opt.user_errors():
        if args.scenes < 1:
            raise ValueError("--scenes must be >= 1")
        ann = synth(str(out / "data"), args.scenes, args.seed, args.noise)
        s = opt.Settings()
        s.input.source, s.input.annotations, s.input.images = "omni3d", str(ann), str(ann.parent / "images")
        s.models.depth_model = "sensor"
        s.output.out = str(out)
        s.output.samples_per_shard = max(1, (args.scenes + 1) // 2)
        s.output.overwrite = True
        s.runner.workers = args.workers
        s.beam_args = list(extra)
        opt.check_beam_args(s.beam_args)
        t1 = time.monotonic()
        lstats = run_lift(s)
        t2 = time.monotonic()
        qstats = run_qa(s)
        t3 = time.monotonic()
    report = out / "report"
    fid = _fidelity(out / "repository", out / "qa", ann)
    if fid is not None:
        (out / "fidelity.json").write_text(json.dumps(fid, indent=2, sort_keys=True) + "\n")
    rc = cli.main(["viz", "--repository", str(out / "repository"), "--qa", str(out / "qa"), "--out", str(report),
                   "--limit", str(args.report_limit)] + (["--eval", str(out / "fidelity.json")] if fid else []))
    print(format_table(lift_summary(lstats, str(out), t2 - t1), title="lift (sensor depth)"))
    print(format_table(qa_summary(qstats, str(out / "qa"), t3 - t2), title="qa"))
    if fid is not None:
        boxes = {k: v for k, v in fid.items() if k != "qa_truth"}
        print(format_table(_flat_numbers(boxes)[:24], title="fidelity against the scenes' ground truth"))
        qt = fid["qa_truth"]
        print(format_table(_flat_numbers({k: qt[k] for k in ("questions", "true", "false", "ambiguous", "truth_rate",
                                                             "binary_truth_rate", "numeric_within_25pct", "clock_exact")
                                          if qt.get(k) is not None}),
                           title="QA answers recomputed from the ground truth (lift3d eval --qa)"))
    print(f"scenes:      {ann.parent}  ({args.scenes} scenes, GT in {ann.name})")
    print(f"repository:  {out / 'repository'}  (manifest.json, stats.json, index/, rejected/, errors/)")
    print(f"qa shards:   {out / 'qa'}")
    print(f"report:      {report / 'index.html'}" + ("" if rc == 0 else "  (viz failed, see above)"))
    if fid is not None:
        print(f"fidelity:    {out / 'fidelity.json'}")
    print(f"total time:  {time.monotonic() - t0:.1f} s")
    return 0
