"""Configuration of the QA engine (see docs/QA_FAMILIES.md for what every field means)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lifting.bbox_text import DEFAULT_PRECISION, BboxPrecision

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
    """

    seed: int = 0
    families: dict = field(default_factory=lambda: dict(DEFAULT_FAMILIES))
    max_per_family: int = 2
    max_questions: int = 10
    margins: Margins = Margins()
    units: str = "metric"
    decimals: int = 2
    cot: bool = True
    system_prompt: str | None = (
        "You are a spatial reasoning assistant. Ground every object you use as a 3D box "
        "Bbox(class,u,v,z,angle,sx,sy,sz), then reason step by step in 3D before answering."
    )
    precision: BboxPrecision = DEFAULT_PRECISION
    attempts: int = 12  # random candidates tried per question before a family gives up

    def __post_init__(self):
        if self.units not in ("metric", "imperial"):
            raise ValueError(f"units must be 'metric' or 'imperial', got {self.units!r}")
        unknown = set(self.families) - set(DEFAULT_FAMILIES)
        if unknown:
            raise ValueError(f"unknown QA families: {sorted(unknown)}; known: {sorted(DEFAULT_FAMILIES)}")
        if self.max_per_family < 1 or self.max_questions < 1:
            raise ValueError("max_per_family and max_questions must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)
