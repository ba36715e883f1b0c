"""`lift3d score`: grade a model's predictions on a QA benchmark built by `lift3d qa --benchmark N`."""
from __future__ import annotations

import json
from pathlib import Path

from pipelines.cli import UserError

HELP = "grade predictions on a QA benchmark (numeric within +-25%%, choices exactly; per-family accuracy)"
DESCRIPTION = (
    "Grade a model's answers on a benchmark file (JSON Lines written by `lift3d qa --benchmark N`). "
    "Predictions are a JSON object {qid: answer text} or JSON Lines of {\"qid\": ..., \"prediction\": ...}. "
    "Prints one JSON object: overall, per-family and per-form accuracy."
)


def add_arguments(parser) -> None:
    parser.add_argument("--benchmark", required=True, help="benchmark file (JSON Lines or a JSON list)")
    parser.add_argument("--predictions", required=True, help="predictions: JSON {qid: text} or JSONL {qid, prediction}")
    parser.add_argument("--out", default=None, help="also write the metrics JSON here")


def read_predictions(path: Path) -> dict:
    """{qid: prediction text} from a JSON object or JSON Lines ({qid, prediction|answer|text})."""
    text = path.read_text(encoding="utf-8")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        return {str(k): (v if isinstance(v, str) else json.dumps(v)) for k, v in obj.items()}
    rows = obj if isinstance(obj, list) else []
    if obj is None:
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{i}: not JSON ({e.msg})") from None
    out = {}
    for r in rows:
        if not isinstance(r, dict) or "qid" not in r:
            raise UserError(f"{path}: each prediction row needs a 'qid'")
        pred = next((r[k] for k in ("prediction", "answer", "text", "response") if k in r), None)
        if pred is None:
            raise UserError(f"{path}: row for qid {r['qid']!r} has no 'prediction' field")
        out[str(r["qid"])] = str(pred)
    return out


def run(args, extra) -> int:
    from lifting.qa.benchmark import read_benchmark, score

    bpath, ppath = Path(args.benchmark), Path(args.predictions)
    for p in (bpath, ppath):
        if not p.is_file():
            raise UserError(f"file not found: {p}")
    try:
        bench = read_benchmark(bpath)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{bpath}: not a benchmark file ({e})") from None
    if not bench or not all(isinstance(it, dict) and {"qid", "form", "answer"} <= set(it) for it in bench):
        raise UserError(f"{bpath}: not a benchmark file (items need qid, form, answer)")
    metrics = score(bench, read_predictions(ppath))
    text = json.dumps(metrics, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0
