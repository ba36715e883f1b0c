"""Segmentation, open-vocabulary detection and tagging backends on CPU with tiny random configs."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from lifting.models.base import Detection, PackageMissingError
from lifting.models.detect import deduplicate, iou_matrix, nms, nms_indices, tiny_random_checkpoint as tiny_det
from lifting.models.registry import get_detector, get_segmenter, get_tagger
from lifting.models.segment import clip_boxes, tiny_random_checkpoint as tiny_sam


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(3).integers(0, 255, (75, 101, 3), dtype=np.uint8)


# -- SAM ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sam(tmp_path_factory):
    seg = get_segmenter("sam", weights=str(tiny_sam(tmp_path_factory.mktemp("sam"))), device="cpu",
                        max_boxes_per_pass=2)
    seg.load()
    return seg


BOXES = np.array([[10, 10, 50, 60], [0, 0, 101, 75], [-5, 3, 20, 90], [30.2, 30.7, 31, 31], [60, 5, 99, 40]], float)


def test_sam_masks_shape_dtype_and_chunking(sam, image):
    masks, scores = sam.predict_with_scores(image, BOXES)
    assert masks.shape == (5, 75, 101) and masks.dtype == bool and scores.shape == (5,)
    # 5 boxes in passes of 2 give the same masks as one pass of all of them
    sam.max_boxes_per_pass = 64
    try:
        assert np.array_equal(sam.predict(image, BOXES), masks)
    finally:
        sam.max_boxes_per_pass = 2
    # each box's mask depends on that box only (prompts are independent)
    assert np.array_equal(sam.predict(image, BOXES[[4, 0]]), masks[[4, 0]])
    assert sam.predict(image, np.zeros((0, 4))).shape == (0, 75, 101)


def test_sam_box_prompts_are_scaled_like_the_processor(sam, image):
    boxes = clip_boxes(BOXES, 101, 75)
    inputs = sam.processor(images=image, return_tensors="pt")
    ref = sam.processor(images=image, input_boxes=[boxes.tolist()], return_tensors="pt")["input_boxes"]
    np.testing.assert_allclose(sam._scale_boxes(boxes, inputs).numpy(), ref.numpy(), rtol=1e-6)


def test_clip_boxes_stays_inside_and_non_empty():
    b = clip_boxes(BOXES, 101, 75)
    assert np.all(b[:, 0] >= 0) and np.all(b[:, 2] <= 101) and np.all(b[:, 3] <= 75)
    assert np.all(b[:, 2] - b[:, 0] >= 0.999) and np.all(b[:, 3] - b[:, 1] >= 0.999)
    np.testing.assert_array_equal(b[0], BOXES[0])


def test_segmenter_fallback_is_said_once(tmp_path, caplog):
    assert get_segmenter("annotation") is None and get_segmenter("none") is None
    with caplog.at_level(logging.WARNING, logger="lifting.models.registry"):
        for _ in range(3):
            assert get_segmenter("sam", on_missing="fallback", weights=str(tmp_path / "missing"), device="cpu") is None
    msgs = [r.getMessage() for r in caplog.records if "falling back" in r.getMessage()]
    assert len(msgs) == 1 and "depth-only box segmentation" in msgs[0] and str(tmp_path / "missing") in msgs[0]


def test_sam_official_without_package_says_so():
    try:
        import segment_anything  # noqa: F401
        pytest.skip("segment_anything imports here")
    except Exception:  # noqa: BLE001 - any import failure means the backend is unavailable
        pass
    with pytest.raises(PackageMissingError, match="segment_anything.*pip install"):
        get_segmenter("sam-official", weights="/nonexistent/sam_vit_h_4b8939.pth").load()


# -- NMS / de-duplication -----------------------------------------------------------------
def test_iou_and_nms_against_hand_computed_cases():
    a = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 9]], float)
    iou = iou_matrix(a, a)
    assert iou[0, 1] == pytest.approx(50 / 150) and iou[0, 2] == 0 and iou[0, 3] == pytest.approx(0.9)
    assert iou[3, 1] == pytest.approx(45 / 145)
    assert list(nms_indices(a, [0.9, 0.8, 0.7, 0.95], 0.5)) == [3, 1, 2]  # 3 suppresses 0 (IoU 0.9)
    assert list(nms_indices(a, [0.9, 0.8, 0.7, 0.95], 0.3)) == [3, 2]  # and 1 (IoU 0.31)
    dets = [Detection((0, 0, 10, 10), "cat", 0.9), Detection((0, 0, 10, 9), "dog", 0.8),
            Detection((0, 0, 10, 9.5), "cat", 0.7)]
    assert [d.score for d in nms(dets, 0.5)] == [0.9, 0.8]  # different labels do not suppress each other
    assert [d.score for d in nms(dets, 0.5, class_aware=False)] == [0.9]


def test_deduplicate_against_dataset_boxes():
    dets = [Detection((0, 0, 10, 10), "cat", 0.9), Detection((50, 50, 60, 60), "cat", 0.8),
            Detection((1, 0, 11, 10), "dog", 0.7)]
    existing = np.array([[0, 0, 10, 10]], float)
    assert [d.score for d in deduplicate(dets, existing, 0.5)] == [0.8]
    assert [d.score for d in deduplicate(dets, existing, 0.5, existing_labels=["dog"])] == [0.9, 0.8]
    assert deduplicate(dets, np.zeros((0, 4)), 0.5) == dets


# -- OWLv2 --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def owl_path(tmp_path_factory):
    return tiny_det("owlv2", tmp_path_factory.mktemp("owl"))


PROMPTS = ["cat", "dog", "dining table", "cat", " "]


def test_owlv2_detections_are_valid_and_follow_the_padded_square(owl_path, image):
    import torch

    det = get_detector("owlv2", weights=str(owl_path), device="cpu", score_threshold=0.0, nms_iou=None,
                       min_box_px=0.0, max_detections=1000)
    dets = det.predict(image, PROMPTS)
    assert dets and all(d.label in {"cat", "dog", "dining table"} for d in dets)
    assert [d.score for d in dets] == sorted((d.score for d in dets), reverse=True)
    # reference: boxes straight from the model, relative to the bottom/right-padded square of side max(H, W)
    inputs = det.processor(text=[[det.prompt_template.format(p) for p in ["cat", "dog", "dining table"]]],
                           images=image, return_tensors="pt", padding="max_length", max_length=det.max_text_len)
    with torch.inference_mode():
        out = det.model(**inputs)
    cx, cy, w, h = out.pred_boxes[0].unbind(-1)
    side = 101
    ref = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).numpy() * side
    ref[:, [0, 2]] = ref[:, [0, 2]].clip(0, 101)
    ref[:, [1, 3]] = ref[:, [1, 3]].clip(0, 75)
    ref = ref[(ref[:, 2] > ref[:, 0]) & (ref[:, 3] > ref[:, 1])]
    got = np.array(sorted(d.bbox_xyxy for d in dets))
    np.testing.assert_allclose(got, np.array(sorted(map(tuple, ref))), atol=1e-3)


def test_owlv2_threshold_and_nms(owl_path, image):
    loose = get_detector("owlv2", weights=str(owl_path), device="cpu", score_threshold=0.0, nms_iou=0.3)
    dets = loose.predict(image, PROMPTS)
    for lab in {d.label for d in dets}:
        b = np.array([d.bbox_xyxy for d in dets if d.label == lab])
        iou = iou_matrix(b, b)
        assert np.all(iou[~np.eye(len(b), dtype=bool)] <= 0.3 + 1e-9)
    cut = float(np.median([d.score for d in dets]))
    strict = get_detector("owlv2", weights=str(owl_path), device="cpu", score_threshold=cut, nms_iou=0.3)
    strict_dets = strict.predict(image, PROMPTS)
    assert all(d.score > cut for d in strict_dets) and len(strict_dets) < len(dets)
    assert loose.predict(image, ["", "  "]) == []


# -- Grounding DINO -----------------------------------------------------------------------
def test_grounding_dino_prompts_chunks_and_labels(tmp_path, image):
    det = get_detector("grounding-dino", weights=str(tiny_det("grounding-dino", tmp_path / "gd")), device="cpu",
                       score_threshold=0.0, nms_iou=0.5)
    det.load()
    prompts = ["cat", "dog", "dining table", "person", "chair", "car", "tv", "bottle"] * 3
    det.max_text_len = 12  # force several text chunks
    chunks = det._chunks(list(dict.fromkeys(prompts)))
    assert len(chunks) > 1 and all(len(ids) <= 12 for ids, _ in chunks)
    tok = det.tokenizer
    spelled = [tok.decode(ids[a:b]) for ids, spans in chunks for a, b in spans]
    assert spelled == list(dict.fromkeys(prompts))
    dets = det.predict(image, prompts)
    assert dets and {d.label for d in dets} <= set(prompts)
    assert all(0 <= d.bbox_xyxy[0] < d.bbox_xyxy[2] <= 101 and 0 <= d.bbox_xyxy[1] < d.bbox_xyxy[3] <= 75
               for d in dets)
    assert all(0.0 <= d.score <= 1.0 for d in dets)


# -- tagging ------------------------------------------------------------------------------
def test_labels_tagger_cleans_and_dedupes(image):
    t = get_tagger("labels")
    assert t.predict(image, [" Dining  Table", "cat", "dining table", "", "Cat"]) == ["dining table", "cat"]
    assert t.predict(image, None) == []


def test_ram_without_package_says_so(image):
    try:
        import ram.models  # noqa: F401
        pytest.skip("ram imports here")
    except Exception:  # noqa: BLE001 - any import failure means the backend is unavailable
        pass
    with pytest.raises(PackageMissingError, match="ram.*recognize-anything"):
        get_tagger("ram").predict(image)
