"""Configuration of the QA engine (see docs/QA_FAMILIES.md for what every field means)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from lifting.bbox_text import DEFAULT_PRECISION, PRESETS, BboxPrecision

#: Every family the engine knows, with its default weight in the per-image family mix.
DEFAULT_FAMILIES: dict[str, float] = {
    "detection": 0.5,
    "grounding": 1.0,
    "relation_position": 2.0,
    "relation_size": 1.0,
    "metric_distance": 1.0,
    "metric_object": 1.0,
    "direction_clock": 1.0,
    "multi_order": 1.0,
    "multi_extreme": 1.0,
    "multi_count": 0.5,
    "viewpoint_opposite": 1.0,
    "viewpoint_object": 1.0,
}

#: Families a benchmark draws from (no free-form box lists: those need a box matcher).
BENCHMARK_FAMILIES = tuple(f for f in DEFAULT_FAMILIES if f not in ("detection", "grounding"))

FT_PER_M = 3.280839895

#: Text styles: lift3d's own wording, or N3D-VLM's (qa_templates/n3d/: the release's prompts,
#: `bbox_i=Bbox(...)` lines at N3D_PRECISION, `<think>...</think> answer` replies whose traces
#: give centres with x left, y up, z forward, binary answers "That is True."/"That is False.").
STYLES = ("lift3d", "n3d")
DEFAULT_SYSTEM_PROMPT = (
    "You are a spatial reasoning assistant. Ground every object you use as a 3D box "
    "Bbox(class,u,v,z,angle,sx,sy,sz), then reason step by step in 3D before answering.")


@dataclass(frozen=True)
class Margins:
    """Ambiguity margins: a comparison is asked only when its difference is at least the
    absolute margin AND at least the relative margin times the comparison's scale.

    position_*: metres, scale = larger camera distance of the two objects.
    size_* / volume_m3: metres / cubic metres, scale = the larger of the two values.
    distance_*: metres, scale = the larger of the two distances compared.
    clock_deg: degrees kept away from a half-hour boundary of a clock position.
    numeric_min_m: a numeric answer in metres (a distance, a size) smaller than this is not
        asked: real lifting errors are ~0.1 m, so a 7 cm offset cannot be answered, or
        graded within a relative tolerance.
    uncertainty_k: questions robust to the lifting error: each comparison's absolute margin
        is raised to k times the 1-sigma of its difference, from the referenced objects'
        `quality.uncertainty` (lifting/lift/uncertainty.py; records without it count 0);
        clock positions keep k sigmas of angle from a half hour; 0 switches it off.
    numeric_rel_sigma: a numeric answer is asked only when k times its 1-sigma is at most
        this fraction of the value.
    """

    position_m: float = 0.15
    position_rel: float = 0.05
    size_m: float = 0.05
    volume_m3: float = 0.002
    size_rel: float = 0.10
    distance_m: float = 0.15
    distance_rel: float = 0.10
    clock_deg: float = 5.0
    numeric_min_m: float = 0.25
    uncertainty_k: float = 1.0
    numeric_rel_sigma: float = 0.15


@dataclass(frozen=True)
class QAConfig:
    """How questions are sampled and worded for one run.

    seed: run seed; all sampling is seeded from (seed, image key) only.
    families: family -> weight of the per-image mix (0 or absent disables a family).
    max_per_family / max_questions: per-image caps.
    margins: see `Margins`.
    units: "metric" (metres) or "imperial" (feet); numbers rounded to `decimals`.
    cot: write the reasoning trace (ground, compute, conclude) before the answer.
    system_prompt: system message of the `messages` form (None: no system turn).
    precision: Bbox text precision (lifting.bbox_text).
    style: "lift3d" or "n3d" (STYLES). "n3d" also makes the defaults N3D-VLM's: precision
        N3D_PRECISION, no system turn, no units sentence (each left as given when changed).
    """

    seed: int = 0
    families: dict = field(default_factory=lambda: dict(DEFAULT_FAMILIES))
    max_per_family: int = 2
    max_questions: int = 10
    margins: Margins = Margins()
    units: str = "metric"
    decimals: int = 2
    cot: bool = True
    system_prompt: str | None = DEFAULT_SYSTEM_PROMPT
    precision: BboxPrecision = DEFAULT_PRECISION
    attempts: int = 12  # random candidates tried per question before a family gives up
    style: str = "lift3d"

    def __post_init__(self):
        if self.style not in STYLES:
            raise ValueError(f"style must be one of {', '.join(STYLES)}, got {self.style!r}")
        if self.style == "n3d":
            if self.precision == DEFAULT_PRECISION:
                object.__setattr__(self, "precision", PRESETS["n3d"])
            if self.system_prompt == DEFAULT_SYSTEM_PROMPT:
                object.__setattr__(self, "system_prompt", None)
        if self.units not in ("metric", "imperial"):
            raise ValueError(f"units must be 'metric' or 'imperial', got {self.units!r}")
        unknown = set(self.families) - set(DEFAULT_FAMILIES)
        if unknown:
            raise ValueError(f"unknown QA families: {sorted(unknown)}; known: {sorted(DEFAULT_FAMILIES)}")
        if self.max_per_family < 1 or self.max_questions < 1:
            raise ValueError("max_per_family and max_questions must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "QAConfig":
        """Build from a (YAML/JSON) mapping such as `--config`'s `qa_config` section, nested
        `margins` and `precision` mappings included (the inverse of `to_dict`).

        ValueError (one line, naming the key) for an unknown key, a value of the wrong type
        or one out of range: the driver calls this before any worker does."""
        d = dict(d or {})
        _check_keys("qa_config", d, cls)
        if "margins" in d and not isinstance(d["margins"], Margins):
            d["margins"] = Margins(**_nested("qa_config.margins", d["margins"], Margins))
        if isinstance(d.get("precision"), str):
            from lifting.bbox_text import PRESETS

            if d["precision"] not in PRESETS:
                raise ValueError(f"qa_config.precision must be a mapping or one of {', '.join(PRESETS)}, "
                                 f"got {d['precision']!r}")
            d["precision"] = PRESETS[d["precision"]]
        if "precision" in d and not isinstance(d["precision"], BboxPrecision):
            d["precision"] = BboxPrecision(**_nested("qa_config.precision", d["precision"], BboxPrecision))
        if "families" in d:
            fam = d["families"]
            if not isinstance(fam, dict) or not all(isinstance(w, (int, float)) and not isinstance(w, bool) and w >= 0
                                                    for w in fam.values()):
                raise ValueError("qa_config.families must map family names to weights >= 0")
        for k in ("seed", "max_per_family", "max_questions", "decimals", "attempts"):
            if k in d and (not isinstance(d[k], int) or isinstance(d[k], bool)):
                raise ValueError(f"qa_config.{k} must be an integer, got {d[k]!r}")
        for k in ("cot",):
            if k in d and not isinstance(d[k], bool):
                raise ValueError(f"qa_config.{k} must be true or false, got {d[k]!r}")
        if "system_prompt" in d and d["system_prompt"] is not None and not isinstance(d["system_prompt"], str):
            raise ValueError("qa_config.system_prompt must be a string or null")
        return cls(**d)


def _check_keys(where: str, d: dict, cls) -> None:
    unknown = sorted(set(d) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {where} key(s): {', '.join(map(str, unknown))}; "
                         f"known: {', '.join(f.name for f in fields(cls))}")


def _nested(where: str, value, cls) -> dict:
    """A nested section (`margins`, `precision`) checked: a mapping of known keys to numbers."""
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be a mapping of {', '.join(f.name for f in fields(cls))}")
    _check_keys(where, value, cls)
    for k, v in value.items():
        want = next(f.type for f in fields(cls) if f.name == k)
        if want == "bool":
            if not isinstance(v, bool):
                raise ValueError(f"{where}.{k} must be true or false, got {v!r}")
            continue
        ok = isinstance(v, int) if want == "int" else isinstance(v, (int, float))
        if isinstance(v, bool) or not ok or v < 0:
            raise ValueError(f"{where}.{k} must be a number >= 0{' (an integer)' if want == 'int' else ''}, got {v!r}")
    return value
