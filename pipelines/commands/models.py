"""`lift3d models`: which model backends are usable here (package installed? weights found locally?).

Never downloads and never loads a model; prints one row per backend and, for each missing
part, the command that fixes it. Always exits 0 (it is a report), unless --require names a
backend that is not ready (exit 1), which is handy in cluster start-up scripts.
"""
from __future__ import annotations

import json
import sys

HELP = "list model backends: package installed, weights found locally"
DESCRIPTION = ("List every depth / segmentation / detection / tagging backend, whether its Python packages "
               "are installed and whether its weights are found locally (explicit path, $LIFT3D_MODELS_DIR, "
               "Hugging Face cache). Nothing is downloaded.")


def add_arguments(parser) -> None:
    parser.add_argument("--kind", choices=["depth", "segment", "detect", "tag"], default=None,
                        help="only backends of this kind")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--require", action="append", default=[], metavar="NAME",
                        help="exit 1 unless backend NAME is ready (repeatable)")


def _ready(st: dict) -> bool:
    return bool(st.get("packages_ok")) and (not st.get("needs_weights") or bool(st.get("weights_found")))


def _row(st: dict) -> tuple[str, str, str, str]:
    pkg = "yes" if st["packages_ok"] else "missing: " + ", ".join(st["missing_packages"])
    if st.get("error"):
        return st["kind"], st["name"], pkg, f"error: {st['error']}"
    if not st["needs_weights"]:
        weights = "- (no model)"
    elif st["weights_found"]:
        weights = f"found: {st['weights_path']}"
    else:
        weights = f"missing (looked in {'; '.join(st['looked_in']) or 'nowhere'}); get with: {st['get_with']}"
    return st["kind"], st["name"], pkg, weights


def run(args, extra) -> int:
    from lifting.models.registry import backend_status, backends

    from pipelines.cli import UserError

    statuses = []
    for info in backends(args.kind):
        try:
            st = backend_status(info)
        except Exception as e:  # noqa: BLE001 - a report must not die on one backend; the cause is shown in its row
            st = {"kind": info.kind, "name": info.name, "packages_ok": False, "missing_packages": [],
                  "needs_weights": info.weights is not None, "weights_found": False, "error": f"{type(e).__name__}: {e}"}
        st["ready"] = _ready(st)
        statuses.append(st)
    names = {s["name"] for s in statuses}
    unknown = [r for r in args.require if r not in names]
    if unknown:
        raise UserError(f"--require: unknown backend(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    if args.json:
        print(json.dumps({"backends": statuses}, indent=1))
    else:
        rows = [("KIND", "BACKEND", "PACKAGES", "WEIGHTS")] + [_row(s) for s in statuses]
        w = [max(len(r[i]) for r in rows) for i in range(3)]
        for r in rows:
            print(f"{r[0]:<{w[0]}}  {r[1]:<{w[1]}}  {r[2]:<{w[2]}}  {r[3]}")
        n_ready = sum(s["ready"] for s in statuses)
        print(f"\n{n_ready}/{len(statuses)} backends ready. Set $LIFT3D_MODELS_DIR or HF_HOME to point at "
              "pre-fetched weights; HF_HUB_OFFLINE=1 forbids downloads at run time.")
    not_ready = [s["name"] for s in statuses if s["name"] in args.require and not s["ready"]]
    if not_ready:
        print(f"lift3d models: not ready: {', '.join(not_ready)}", file=sys.stderr)
        return 1
    return 0
