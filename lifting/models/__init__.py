"""Model stages of lifting: depth + intrinsics, box-prompted segmentation, open-vocabulary detection, tagging.

Pure torch/transformers code, no Beam (pipelines/model_handlers.py adapts these to
RunInference). Importing this package is cheap: torch and transformers are imported when
a backend is loaded.
"""
from lifting.models.base import (
    BoxSegmenter,
    DepthEstimator,
    DepthPrediction,
    Detection,
    DeviceUnavailableError,
    ModelSetupError,
    OpenVocabDetector,
    PackageMissingError,
    Tagger,
    WeightsNotFoundError,
)
from lifting.models.registry import (
    BACKENDS,
    backend_status,
    backends,
    get_depth_estimator,
    get_detector,
    get_segmenter,
    get_tagger,
)

__all__ = [
    "BACKENDS", "BoxSegmenter", "DepthEstimator", "DepthPrediction", "Detection", "DeviceUnavailableError",
    "ModelSetupError", "OpenVocabDetector", "PackageMissingError", "Tagger", "WeightsNotFoundError",
    "backend_status", "backends", "get_depth_estimator", "get_detector", "get_segmenter", "get_tagger",
]
