"""Beam ModelHandler adapters: RunInference on the tiny depth model in a TestPipeline."""
from __future__ import annotations

import numpy as np
import pytest

apache_beam = pytest.importorskip("apache_beam")

from apache_beam.ml.inference.base import KeyedModelHandler, RunInference  # noqa: E402
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline  # noqa: E402
from apache_beam.testing.util import assert_that, equal_to  # noqa: E402

from lifting.camera import make_K  # noqa: E402
from lifting.models.depth import tiny_random_checkpoint  # noqa: E402
from pipelines.model_handlers import DepthModelHandler, DetectorModelHandler, TaggerModelHandler  # noqa: E402


@pytest.fixture(scope="module")
def da_path(tmp_path_factory):
    return str(tiny_random_checkpoint("depth-anything-v2", tmp_path_factory.mktemp("da_beam")))


def _elements():
    rng = np.random.default_rng(1)
    sizes = [(40, 52), (61, 33), (40, 52), (29, 71), (50, 50)]
    out = []
    for i, (h, w) in enumerate(sizes):
        out.append((f"img{i}", {"image": rng.integers(0, 255, (h, w, 3), dtype=np.uint8),
                                "K": make_K(50.0, 50.0, (w - 1) / 2, (h - 1) / 2) if i == 1 else None,
                                "focal_35mm": None, "source_key": f"coco_{i}"}))
    return out


def test_depth_handler_with_run_inference(da_path):
    elements = _elements()
    handler = DepthModelHandler("depth-anything-v2", {"weights": da_path, "device": "cpu", "input_size": 28},
                                max_batch_size=3)
    assert handler.batch_elements_kwargs() == {"min_batch_size": 1, "max_batch_size": 3}
    assert handler.get_num_bytes([e for _, e in elements]) == sum(e["image"].nbytes for _, e in elements)
    # reference: the same estimator, one image at a time, outside Beam
    ref_model = handler.load_model()
    ref = {k: ref_model.predict([e["image"]], [e["K"]])[0] for k, e in elements}

    def summarise(kv):
        key, result = kv
        p = result.inference
        e = result.example
        assert p.depth.shape == e["image"].shape[:2] and p.depth.dtype == np.float16
        np.testing.assert_allclose(p.depth.astype(np.float32), ref[key].depth.astype(np.float32), rtol=2e-3, atol=2e-3)
        return key, e["source_key"], p.K_source, p.depth.shape

    expected = [(k, e["source_key"], "dataset" if e["K"] is not None else "fov_prior", e["image"].shape[:2])
                for k, e in elements]
    from pipelines.local_runner import LocalRunner  # never Beam's default runner: it tries to download Prism

    with BeamTestPipeline(runner=LocalRunner()) as p:
        out = (p | apache_beam.Create(elements) | RunInference(KeyedModelHandler(handler))
               | apache_beam.Map(summarise))
        assert_that(out, equal_to(expected))


def test_detector_and_tagger_handlers_run_inference_directly(tmp_path):
    from lifting.models.detect import tiny_random_checkpoint as tiny_det

    img = np.random.default_rng(2).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    h = DetectorModelHandler("owlv2", {"weights": str(tiny_det("owlv2", tmp_path / "owl")), "device": "cpu",
                                       "score_threshold": 0.0}, dedup_iou=0.5)
    model = h.load_model()
    (free,) = h.run_inference([{"image": img, "prompts": ["cat", "dog"]}], model)
    assert free.inference
    existing = np.array([d.bbox_xyxy for d in free.inference[:2]])
    (dedup,) = h.run_inference([{"image": img, "prompts": ["cat", "dog"], "existing_boxes_xyxy": existing}], model)
    assert len(dedup.inference) < len(free.inference)
    assert all(_iou(d.bbox_xyxy, existing).max() < 0.5 for d in dedup.inference)
    t = TaggerModelHandler("labels")
    (tags,) = t.run_inference([{"image": img, "labels": ["Cat", "cat", "dog"]}], t.load_model())
    assert tags.inference == ["cat", "dog"]


def _iou(box, others):
    from lifting.models.detect import iou_matrix

    return iou_matrix(np.array([box]), others)[0]
