"""Registry of model backends: names, what they need, factories, and a local availability check.

    depth:     sensor | depth-anything-v2 (= -indoor) | depth-anything-v2-outdoor | depth-pro | moge
    segment:   sam | sam-official | annotation | none
    detect:    owlv2 | grounding-dino
    tag:       labels | ram

Factories are cheap (no weights loaded until `load()`), so they can be built on a launcher
and pickled to workers. `backend_status` checks packages and weights without importing
heavy modules or touching the network (for `lift3d models`).
"""
from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

from lifting.models.base import BoxSegmenter, DepthEstimator, ModelSetupError, OpenVocabDetector, Tagger
from lifting.models.weights import find_weights, how_to_get

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendInfo:
    """What a backend is and needs.

    packages: (import name, pip requirement) pairs that must import for the backend to work.
    weights: (repo_id, filename or None, url or None) of the default checkpoint; None = no model.
    """

    kind: str  # depth | segment | detect | tag
    name: str
    description: str
    packages: tuple[tuple[str, str], ...] = ()
    weights: tuple[str | None, str | None, str | None] | None = None
    aliases: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)


_TF = (("transformers", "transformers"), ("torch", "torch"))

BACKENDS: tuple[BackendInfo, ...] = (
    BackendInfo("depth", "sensor", "the dataset's own depth and K (RGB-D sources); no model"),
    BackendInfo("depth", "depth-anything-v2", "Depth Anything V2 metric (indoor 20 m / outdoor 80 m), K from "
                "dataset, EXIF, FoV prior or another estimator", _TF,
                ("depth-anything/Depth-Anything-V2-Metric-Indoor-Large-hf", None, None),
                aliases=("depth-anything-v2-indoor",), options={"scene": "indoor"}),
    BackendInfo("depth", "depth-anything-v2-outdoor", "Depth Anything V2 metric, outdoor checkpoint (80 m)", _TF,
                ("depth-anything/Depth-Anything-V2-Metric-Outdoor-Large-hf", None, None), options={"scene": "outdoor"}),
    BackendInfo("depth", "depth-pro", "Apple Depth Pro; predicts the field of view, so gives K itself", _TF,
                ("apple/DepthPro-hf", None, None)),
    BackendInfo("depth", "moge", "MoGe-2 (official dlr-moge package): depth, mask and intrinsics",
                (("moge", "dlr-moge"), ("torchvision", "torchvision")),
                ("Ruicheng/moge-2-vitl-normal", "model.pt", None)),
    BackendInfo("segment", "sam", "SAM ViT-H through transformers, box prompts batched per image", _TF,
                ("facebook/sam-vit-huge", None, None)),
    BackendInfo("segment", "sam-official", "SAM through Meta's segment-anything package (local .pth)",
                (("segment_anything", "segment-anything"), ("torchvision", "torchvision")),
                (None, "sam_vit_h_4b8939.pth", "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth")),
    BackendInfo("segment", "annotation", "the dataset's own masks; no model"),
    BackendInfo("segment", "none", "no segmenter: depth-only box segmentation of the lifting core"),
    BackendInfo("detect", "owlv2", "OWLv2 open-vocabulary detector", _TF,
                ("google/owlv2-base-patch16-ensemble", None, None)),
    BackendInfo("detect", "grounding-dino", "Grounding DINO open-vocabulary detector", _TF,
                ("IDEA-Research/grounding-dino-base", None, None)),
    BackendInfo("tag", "labels", "the dataset's image-level labels; no model"),
    BackendInfo("tag", "ram", "Recognize Anything (RAM++), recognize-anything package",
                (("ram", "recognize-anything (git+https://github.com/xinyu1205/recognize-anything)"),
                 ("torchvision", "torchvision")),
                ("xinyu1205/recognize-anything-plus-model", "ram_plus_swin_large_14m.pth", None)),
)


def backends(kind: str | None = None) -> list[BackendInfo]:
    """All backends, or those of one kind (depth | segment | detect | tag)."""
    return [b for b in BACKENDS if kind is None or b.kind == kind]


def get_info(kind: str, name: str) -> BackendInfo:
    """The BackendInfo of `name` (or one of its aliases); ValueError listing the valid names otherwise."""
    for b in backends(kind):
        if name == b.name or name in b.aliases:
            return b
    valid = ", ".join(n for b in backends(kind) for n in (b.name, *b.aliases))
    raise ValueError(f"unknown {kind} backend {name!r}; choose one of: {valid}")


def _package_ok(import_name: str) -> bool:
    try:
        return importlib.util.find_spec(import_name) is not None
    except (ImportError, ValueError):
        return False


def backend_status(info: BackendInfo, weights: str | None = None) -> dict:
    """Availability of a backend on this machine, without loading anything or using the network.

    Returns a JSON-ready dict: kind, name, packages_ok (bool), missing_packages (pip names),
    needs_weights, weights_found (bool), weights_path (str or None), looked_in (list), get_with (str),
    description.
    """
    missing = [pip for imp, pip in info.packages if not _package_ok(imp)]
    st = {"kind": info.kind, "name": info.name, "description": info.description, "packages_ok": not missing,
          "missing_packages": missing, "needs_weights": info.weights is not None, "weights_found": None,
          "weights_path": None, "looked_in": [], "get_with": None}
    if info.weights is not None:
        repo_id, filename, url = info.weights
        if repo_id is None:
            # single-file checkpoints without a hub repository are only found by explicit path
            path, looked = (find_weights(None, weights, filename) if weights else (None, ["(pass weights=PATH)"]))
        else:
            path, looked = find_weights(repo_id, weights, filename)
        st.update(weights_found=path is not None, weights_path=str(path) if path else None, looked_in=looked,
                  get_with=how_to_get(repo_id, filename, url))
    return st


def get_depth_estimator(name: str, **options) -> DepthEstimator | None:
    """A depth backend by name (not loaded yet). None for "sensor" (the pipeline reads the dataset's depth).

    depth-anything-v2[-indoor] / -outdoor set the default scene. Options go to the backend's constructor.
    """
    info = get_info("depth", name)
    if info.name == "sensor":
        return None
    from lifting.models import depth

    if info.name.startswith("depth-anything-v2"):
        for k, v in info.options.items():
            options.setdefault(k, v)
        return depth.DepthAnythingV2(**options)
    if info.name == "depth-pro":
        return depth.DepthPro(**options)
    return depth.MoGe(**options)


_fallback_said: set[str] = set()


def get_segmenter(name: str, on_missing: str = "raise", **options) -> BoxSegmenter | None:
    """A box segmenter by name, or None for "annotation" / "none".

    on_missing="fallback": when the backend cannot be set up (package or weights missing,
    device absent), log once per backend that lifting falls back to depth-only box
    segmentation and return None; "raise" (default) lets the one-line ModelSetupError out.
    The segmenter is loaded here when on_missing="fallback" (that is how missing parts show).
    """
    info = get_info("segment", name)
    if info.name in ("annotation", "none"):
        return None
    from lifting.models import segment

    seg = segment.SamSegmenter(**options) if info.name == "sam" else segment.SamOfficialSegmenter(**options)
    if on_missing == "fallback":
        try:
            seg.load()
        except ModelSetupError as e:
            if info.name not in _fallback_said:
                _fallback_said.add(info.name)
                log.warning("segmenter %s unavailable (%s); falling back to depth-only box segmentation", name, e)
            return None
    elif on_missing != "raise":
        raise ValueError(f"on_missing must be raise or fallback, got {on_missing!r}")
    return seg


def get_detector(name: str, **options) -> OpenVocabDetector:
    """An open-vocabulary detector by name (owlv2 | grounding-dino), not loaded yet."""
    info = get_info("detect", name)
    from lifting.models import detect

    return detect.Owlv2Detector(**options) if info.name == "owlv2" else detect.GroundingDinoDetector(**options)


def get_tagger(name: str, **options) -> Tagger:
    """A tagger by name (labels | ram), not loaded yet."""
    info = get_info("tag", name)
    from lifting.models import tagging

    return tagging.LabelsTagger(**options) if info.name == "labels" else tagging.RamTagger(**options)
