"""Configuration of the QA engine (see docs/QA_FAMILIES.md for what every field means)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

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
    """

    position_m: float = 0.15
    position_rel: float = 0.05
    size_m: float = 0.05
    volume_m3: float = 0.002
    size_rel: float = 0.10
    distance_m: float = 0.15
    distance_rel: float = 0.10
    clock_deg: float = 5.0


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
