"""Dataset card of a 3D repository: counts and distributions as Markdown + PNG plots.

`DatasetStats` streams image records (`add_record`), QA samples (`add_qa`) and failure
entries (`add_failure`), keeping counters and one float32 per object and figure, so a
million-image repository fits in memory. `write_card(out_dir)` writes

    OUT/README.md      the card (tables + the plots below), ready to publish with the data
    OUT/stats.json     the same numbers, machine-readable
    OUT/plots/*.png    categories, QA families, answer forms, depth, object size,
                       points per object, projected IoU, rejection reasons

Plots use matplotlib's object API with the Agg canvas (no pyplot global state, no display).
"""
from __future__ import annotations

import json
import math
from array import array
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from lifting.boxes import iou_2d, project_box
from lifting.evaluate import record_box

#: Rows shown in Markdown tables and bars in bar plots before "... N more".
TOP_N = 40


class DatasetStats:
    """Streaming accumulator of the figures of a dataset card (see module docstring)."""

    def __init__(self):
        self.images = Counter()  # lifted / rejected
        self.image_reasons = Counter()
        self.failures = Counter()
        self.provenance = defaultdict(Counter)  # field -> value -> images
        self.cat_kept = Counter()
        self.cat_rejected = Counter()
        self.object_reasons = Counter()
        self.values = defaultdict(lambda: array("f"))  # figure -> one float per kept object
        self.objects_per_image = array("f")
        self.qa_samples = 0
        self.questions = 0
        self.families = Counter()
        self.forms = Counter()
        self.family_form = Counter()
        self.templates = Counter()
        self.rephrased = 0
        self.qa_images: set[str] = set()

    # -- accumulation ----------------------------------------------------------------------
    def add_record(self, rec: dict) -> None:
        """One image record (schemas/image_record.schema.json)."""
        status = rec.get("status", "lifted")
        self.images[status] += 1
        if status != "lifted":
            self.image_reasons[rec.get("reason") or "unknown"] += 1
        for f in ("source", "K_source", "depth_source", "gravity_source"):
            self.provenance[f][str(rec.get(f, "unknown"))] += 1
        K = rec.get("K")
        K = None if K is None else np.asarray(K, dtype=np.float64)
        size = (rec.get("width"), rec.get("height"))
        kept = 0
        for o in rec.get("objects") or []:
            cat = str(o.get("category", "?"))
            box = record_box(o) if o.get("status", "kept") == "kept" else None
            if box is None:
                self.cat_rejected[cat] += 1
                self.object_reasons[o.get("reason") or "no_box3d"] += 1
                continue
            kept += 1
            self.cat_kept[cat] += 1
            v = self.values
            v["depth_m"].append(float(box.center_cam[2]))
            v["distance_m"].append(float(np.linalg.norm(box.center_cam)))
            for name, d in zip(("width_m", "height_m", "length_m"), box.dimensions):
                v[name].append(float(d))
            v["max_extent_m"].append(float(box.dimensions.max()))
            v["volume_m3"].append(float(box.volume))
            q = o.get("quality") or {}
            if isinstance(q.get("n_points"), (int, float)):
                v["points_per_object"].append(float(q["n_points"]))
            if isinstance(q.get("proj_iou"), (int, float)):
                v["proj_iou"].append(float(q["proj_iou"]))
            elif K is not None and o.get("bbox_xyxy") and all(size):
                v["proj_iou"].append(iou_2d(project_box(box, K, size), tuple(o["bbox_xyxy"])))
        self.objects_per_image.append(float(kept))

    def add_qa(self, sample: dict) -> None:
        """One QA sample (schemas/qa_sample.schema.json)."""
        self.qa_samples += 1
        self.qa_images.add(str(sample.get("image_key")))
        for q in sample.get("questions") or []:
            self.questions += 1
            fam, form = str(q.get("family", "?")), str(q.get("form", "?"))
            self.families[fam] += 1
            self.forms[form] += 1
            self.family_form[(fam, form)] += 1
            self.templates[str(q.get("template_id", "?"))] += 1
            self.rephrased += bool(q.get("rephrased"))

    def add_failure(self, entry: dict) -> None:
        """One entry of OUT/repository/errors/ (an input that failed), counted by reason."""
        self.failures[str(entry.get("reason") or entry.get("error") or "unknown")] += 1

    # -- summary ---------------------------------------------------------------------------
    def distribution(self, name: str) -> dict | None:
        """count, mean and percentiles (p5 p25 p50 p75 p95) of one figure, or None if empty."""
        a = np.frombuffer(self.values[name], dtype=np.float32) if name in self.values else np.zeros(0)
        if name == "objects_per_image":
            a = np.frombuffer(self.objects_per_image, dtype=np.float32)
        if a.size == 0:
            return None
        p = np.percentile(a, [5, 25, 50, 75, 95])
        return {"count": int(a.size), "mean": float(a.mean()), "p5": float(p[0]), "p25": float(p[1]),
                "median": float(p[2]), "p75": float(p[3]), "p95": float(p[4])}

    def summary(self) -> dict:
        """All numbers of the card, JSON-ready."""
        n_kept, n_rej = sum(self.cat_kept.values()), sum(self.cat_rejected.values())
        return {
            "images": int(sum(self.images.values())),
            "images_lifted": int(self.images.get("lifted", 0)),
            "images_rejected": int(sum(v for k, v in self.images.items() if k != "lifted")),
            "images_failed": int(sum(self.failures.values())),
            "objects": n_kept + n_rej,
            "objects_kept": n_kept,
            "objects_rejected": n_rej,
            "categories": len(set(self.cat_kept) | set(self.cat_rejected)),
            "qa_samples": self.qa_samples,
            "qa_questions": self.questions,
            "qa_images": len(self.qa_images),
            "qa_rephrased": self.rephrased,
            "per_category": {c: {"kept": self.cat_kept.get(c, 0), "rejected": self.cat_rejected.get(c, 0)}
                             for c in sorted(set(self.cat_kept) | set(self.cat_rejected),
                                             key=lambda c: (-self.cat_kept.get(c, 0), c))},
            "per_qa_family": dict(self.families.most_common()),
            "per_answer_form": dict(self.forms.most_common()),
            "per_family_form": {f"{f}/{m}": n for (f, m), n in self.family_form.most_common()},
            "per_template": dict(self.templates.most_common()),
            "provenance": {k: dict(v.most_common()) for k, v in sorted(self.provenance.items())},
            "rejection_reasons": dict(self.object_reasons.most_common()),
            "image_rejection_reasons": dict(self.image_reasons.most_common()),
            "failure_reasons": dict(self.failures.most_common()),
            "distributions": {k: self.distribution(k) for k in
                              ["depth_m", "distance_m", "width_m", "height_m", "length_m", "max_extent_m",
                               "volume_m3", "points_per_object", "proj_iou", "objects_per_image"]},
        }

    # -- output ----------------------------------------------------------------------------
    def write_card(self, out_dir: str | Path, title: str = "3D repository", command: str | None = None) -> Path:
        """Write README.md, stats.json and plots/*.png under `out_dir`; returns the README path."""
        out = Path(out_dir)
        (out / "plots").mkdir(parents=True, exist_ok=True)
        s = self.summary()
        (out / "stats.json").write_text(json.dumps(s, indent=1, sort_keys=False))
        plots = self._plots(out / "plots")
        (out / "README.md").write_text(_markdown(s, plots, title, command), encoding="utf-8")
        return out / "README.md"

    def _plots(self, folder: Path) -> dict[str, str]:
        """Render the plots; returns name -> relative path of each PNG written."""
        made: dict[str, str] = {}

        def save(fig, name):
            fig.tight_layout()
            fig.savefig(folder / f"{name}.png", dpi=100)
            made[name] = f"plots/{name}.png"

        cats = sorted(set(self.cat_kept) | set(self.cat_rejected), key=lambda c: -(self.cat_kept[c] + self.cat_rejected[c]))
        if cats:
            top = cats[:TOP_N][::-1]
            fig, ax = _fig(8, max(3, 0.22 * len(top) + 1))
            kept = [self.cat_kept[c] for c in top]
            ax.barh(top, kept, color="#1f77b4", label="kept")
            ax.barh(top, [self.cat_rejected[c] for c in top], left=kept, color="#bbbbbb", label="rejected")
            ax.set_xlabel("objects")
            ax.set_title(f"objects per category (top {len(top)} of {len(cats)})")
            ax.legend(loc="lower right")
            save(fig, "categories")
        for name, counter, xl in (("qa_families", self.families, "questions"), ("answer_forms", self.forms, "questions")):
            if counter:
                items = counter.most_common(TOP_N)[::-1]
                fig, ax = _fig(7, max(2.5, 0.3 * len(items) + 1))
                ax.barh([k for k, _ in items], [v for _, v in items], color="#2ca02c")
                ax.set_xlabel(xl)
                ax.set_title(name.replace("_", " "))
                save(fig, name)
        reasons = Counter()
        for k, v in self.object_reasons.items():
            reasons[f"object: {k}"] += v
        for k, v in self.image_reasons.items():
            reasons[f"image: {k}"] += v
        for k, v in self.failures.items():
            reasons[f"failed: {k}"] += v
        if reasons:
            items = reasons.most_common(TOP_N)[::-1]
            fig, ax = _fig(8, max(2.5, 0.3 * len(items) + 1))
            ax.barh([k for k, _ in items], [v for _, v in items], color="#d62728")
            ax.set_xlabel("count")
            ax.set_title("rejection and failure reasons")
            save(fig, "rejections")
        v = {k: np.frombuffer(a, dtype=np.float32) for k, a in self.values.items()}
        if v.get("depth_m") is not None and v["depth_m"].size:
            fig, ax = _fig(6, 3.5)
            ax.hist(v["depth_m"], bins=50, color="#1f77b4")
            ax.set_xlabel("box centre depth z (m)")
            ax.set_ylabel("objects")
            ax.set_title("depth")
            save(fig, "depth")
        if v.get("width_m") is not None and v["width_m"].size:
            fig, ax = _fig(6, 3.5)
            allv = np.concatenate([v["width_m"], v["height_m"], v["length_m"]])
            bins = _log_bins(allv)
            for k, c in (("width_m", "#1f77b4"), ("height_m", "#ff7f0e"), ("length_m", "#2ca02c")):
                ax.hist(v[k], bins=bins, histtype="step", linewidth=1.6, color=c, label=k[:-2])
            ax.set_xscale("log")
            ax.set_xlabel("box extent (m)")
            ax.set_ylabel("objects")
            ax.set_title("object size")
            ax.legend()
            save(fig, "size")
        if v.get("points_per_object") is not None and v["points_per_object"].size:
            fig, ax = _fig(6, 3.5)
            ax.hist(v["points_per_object"], bins=_log_bins(np.maximum(v["points_per_object"], 1)), color="#9467bd")
            ax.set_xscale("log")
            ax.set_xlabel("depth points per object")
            ax.set_ylabel("objects")
            ax.set_title("points per object")
            save(fig, "points_per_object")
        if v.get("proj_iou") is not None and v["proj_iou"].size:
            fig, ax = _fig(6, 3.5)
            ax.hist(v["proj_iou"], bins=np.linspace(0, 1, 41), color="#17becf")
            ax.set_xlabel("IoU of projected 3D box with source 2D box")
            ax.set_ylabel("objects")
            ax.set_title("projected IoU")
            save(fig, "proj_iou")
        return made


def _fig(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot(111)


def _log_bins(a: np.ndarray, n: int = 40) -> np.ndarray:
    a = a[np.isfinite(a) & (a > 0)]
    if a.size == 0:
        return np.linspace(0, 1, n)
    lo, hi = float(a.min()), float(a.max())
    if hi <= lo:
        hi = lo * 1.01 + 1e-6
    return np.logspace(math.log10(lo), math.log10(hi), n)


def _table(rows: list[tuple], head: tuple) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _pct(n: int, d: int) -> str:
    return f"{100.0 * n / d:.1f}%" if d else "-"


def _markdown(s: dict, plots: dict[str, str], title: str, command: str | None) -> str:
    def img(name):
        return f"\n![{name}]({plots[name]})\n" if name in plots else ""

    md = [f"# {title}: dataset card", "",
          f"Generated by `lift3d stats` on {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}."
          + (f" Command: `{command}`." if command else ""), "",
          "3D boxes are metric, in the camera frame (OpenCV: +x right, +y down, +z forward), gravity-aligned, "
          "stored Omni3D-style (`center_cam`, `dimensions` = w, h, l, `R_cam`, `yaw`).", "",
          "## Summary", "",
          _table([("images", s["images"], ""),
                  ("images lifted", s["images_lifted"], _pct(s["images_lifted"], s["images"])),
                  ("images rejected (no object kept)", s["images_rejected"], _pct(s["images_rejected"], s["images"])),
                  ("inputs failed (errors/)", s["images_failed"], ""),
                  ("objects", s["objects"], ""),
                  ("objects kept", s["objects_kept"], _pct(s["objects_kept"], s["objects"])),
                  ("objects rejected", s["objects_rejected"], _pct(s["objects_rejected"], s["objects"])),
                  ("categories", s["categories"], ""),
                  ("QA samples", s["qa_samples"], ""),
                  ("QA questions", s["qa_questions"], ""),
                  ("images with QA", s["qa_images"], ""),
                  ("questions rephrased by an LLM", s["qa_rephrased"], _pct(s["qa_rephrased"], s["qa_questions"]))],
                 ("", "count", "share")), ""]
    md += ["## Provenance", "", "Where the camera intrinsics, the depth and the gravity direction of each image came from.", ""]
    for field, counts in s["provenance"].items():
        md += [f"**{field}**", "", _table([(k, v, _pct(v, s["images"])) for k, v in counts.items()], (field, "images", "share")), ""]
    md += ["## Categories", "", img("categories")]
    pc = list(s["per_category"].items())
    md += [_table([(c, d["kept"], d["rejected"], _pct(d["kept"], d["kept"] + d["rejected"])) for c, d in pc[:TOP_N]],
                  ("category", "kept", "rejected", "kept share"))]
    if len(pc) > TOP_N:
        md += ["", f"... and {len(pc) - TOP_N} more categories (all in `stats.json`)."]
    md += ["", "## QA", ""]
    if s["qa_questions"]:
        md += [img("qa_families"), _table([(k, v, _pct(v, s["qa_questions"])) for k, v in s["per_qa_family"].items()],
                                          ("question family", "questions", "share")), "",
               img("answer_forms"), _table([(k, v, _pct(v, s["qa_questions"])) for k, v in s["per_answer_form"].items()],
                                           ("answer form", "questions", "share")), "",
               _table([tuple(k.split("/", 1)) + (v,) for k, v in list(s["per_family_form"].items())[:TOP_N]],
                      ("family", "form", "questions")), ""]
    else:
        md += ["No QA shards were found next to the repository.", ""]
    md += ["## Distributions", "", "Over kept objects (objects per image: over all images).", "",
           _table([(k, d["count"], *(f"{d[p]:.3g}" for p in ("mean", "p5", "p25", "median", "p75", "p95")))
                   for k, d in s["distributions"].items() if d],
                  ("figure", "n", "mean", "p5", "p25", "median", "p75", "p95")), ""]
    for name in ("depth", "size", "points_per_object", "proj_iou"):
        md.append(img(name))
    md += ["## Rejections and failures", "", "Every input ends lifted, rejected (with a reason) or failed "
           "(with an error); nothing is dropped silently.", "", img("rejections")]
    rows = [("object", k, v) for k, v in s["rejection_reasons"].items()]
    rows += [("image", k, v) for k, v in s["image_rejection_reasons"].items()]
    rows += [("failed input", k, v) for k, v in s["failure_reasons"].items()]
    md += [_table(rows, ("level", "reason", "count")) if rows else "None.", ""]
    return "\n".join(md)
