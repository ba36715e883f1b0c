"""Apache Beam ModelHandlers over the lifting model backends, for `RunInference`.

RunInference owns batching (`batch_elements_kwargs`) and keeps one model per worker
process (`share_model_across_processes` / `large_model` puts a single copy in a shared
process for models too big to load once per SDK process). The handlers only translate
between Beam elements and `lifting.models` calls.

Elements are dicts; fields other than the ones read pass through untouched, and each
output is `PredictionResult(example=element, inference=...)`:

    DepthModelHandler       {"image": (H, W, 3) uint8, "K": (3, 3) | None, "focal_35mm": float | None}
                            -> inference: DepthPrediction
    SegmenterModelHandler   {"image", "boxes_xyxy": (N, 4)} -> inference: (N, H, W) bool masks
    DetectorModelHandler    {"image", "prompts": [str], "existing_boxes_xyxy": (M, 4) | None,
                             "existing_labels": [str] | None} -> inference: [Detection] (de-duplicated)
    TaggerModelHandler      {"image", "labels": [str] | None} -> inference: [str]

Wrap with `KeyedModelHandler(handler)` to carry (key, element) pairs instead.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from lifting.models.registry import get_depth_estimator, get_detector, get_segmenter, get_tagger


class _LiftModelHandler(ModelHandler[dict, PredictionResult, Any]):
    """Common options: backend name + constructor options, batch sizes, sharing."""

    kind = "model"

    def __init__(self, name: str, options: dict | None = None, *, min_batch_size: int = 1,
                 max_batch_size: int = 16, large_model: bool = False, model_copies: int | None = None,
                 max_batch_duration_secs: int | None = None):
        super().__init__(min_batch_size=min_batch_size, max_batch_size=max_batch_size,
                         max_batch_duration_secs=max_batch_duration_secs, large_model=large_model,
                         model_copies=model_copies)
        self.name = name
        self.options = dict(options or {})

    def _build(self):
        raise NotImplementedError

    def load_model(self):
        """Build the backend and load its weights (once per worker process, or once per machine when shared)."""
        model = self._build()
        if model is None:
            raise ValueError(f"{self.kind} backend {self.name!r} has no model to run in RunInference")
        model.load()
        return model

    def get_num_bytes(self, batch: Sequence[dict]) -> int:
        """Bytes of the images in the batch (cheaper than Beam's default of pickling the batch)."""
        return int(sum(getattr(e.get("image"), "nbytes", 0) for e in batch))

    def get_metrics_namespace(self) -> str:
        return f"lift3d_{self.kind}_{self.name}"


class DepthModelHandler(_LiftModelHandler):
    """RunInference handler for depth estimators; one `predict` call per Beam batch."""

    kind = "depth"

    def _build(self):
        return get_depth_estimator(self.name, **self.options)

    def run_inference(self, batch: Sequence[dict], model, inference_args: dict | None = None) -> Iterable[PredictionResult]:
        preds = model.predict([e["image"] for e in batch], [e.get("K") for e in batch],
                              [e.get("focal_35mm") for e in batch])
        return [PredictionResult(e, p, self.name) for e, p in zip(batch, preds)]


class SegmenterModelHandler(_LiftModelHandler):
    """RunInference handler for box segmenters (one image at a time inside the batch; boxes batched per image)."""

    kind = "segment"

    def _build(self):
        return get_segmenter(self.name, **self.options)

    def run_inference(self, batch, model, inference_args=None):
        return [PredictionResult(e, model.predict(e["image"], e["boxes_xyxy"]), self.name) for e in batch]


class DetectorModelHandler(_LiftModelHandler):
    """RunInference handler for open-vocabulary detectors, de-duplicating against the dataset's boxes."""

    kind = "detect"

    def __init__(self, name: str, options: dict | None = None, *, dedup_iou: float = 0.5, **kw):
        super().__init__(name, options, **kw)
        self.dedup_iou = dedup_iou

    def _build(self):
        return get_detector(self.name, **self.options)

    def run_inference(self, batch, model, inference_args=None):
        from lifting.models.detect import deduplicate

        out = []
        for e in batch:
            dets = model.predict(e["image"], list(e.get("prompts") or []))
            existing = e.get("existing_boxes_xyxy")
            if existing is not None and len(existing):
                dets = deduplicate(dets, existing, self.dedup_iou, e.get("existing_labels"))
            out.append(PredictionResult(e, dets, self.name))
        return out


class TaggerModelHandler(_LiftModelHandler):
    """RunInference handler for taggers."""

    kind = "tag"

    def _build(self):
        return get_tagger(self.name, **self.options)

    def run_inference(self, batch, model, inference_args=None):
        return [PredictionResult(e, model.predict(e["image"], e.get("labels")), self.name) for e in batch]
