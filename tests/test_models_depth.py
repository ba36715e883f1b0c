"""Depth + intrinsics backends on CPU with tiny random-initialised configs of the real architectures."""
from __future__ import annotations

import math
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from lifting.camera import K_from_exif_35mm, K_from_fov, make_K
from lifting.models.base import DeviceUnavailableError, ModelSetupError, PackageMissingError
from lifting.models.depth import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DepthAnythingV2,
    MoGe,
    _from_canvas,
    _to_canvas,
    moge_intrinsics_to_K,
    plan_letterbox,
    resolve_K,
    sensor_prediction,
    tiny_random_checkpoint,
)
from lifting.models.registry import get_depth_estimator

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SIZES = [(75, 101), (120, 61), (33, 47), (75, 101)]  # (H, W), odd sizes; the last image repeats the first


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    out = []
    for h, w in SIZES[:3]:
        # smooth structure + noise so the network sees something image-like
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
        out.append(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))
    out.append(out[0].copy())
    return out


@pytest.fixture(scope="module")
def da_path(tmp_path_factory):
    return tiny_random_checkpoint("depth-anything-v2", tmp_path_factory.mktemp("da"))


@pytest.fixture(scope="module")
def dp_path(tmp_path_factory):
    return tiny_random_checkpoint("depth-pro", tmp_path_factory.mktemp("dp"))


@pytest.fixture(scope="module")
def da(da_path):
    est = get_depth_estimator("depth-anything-v2", weights=str(da_path), device="cpu", input_size=56)
    est.load()
    return est


@pytest.fixture(scope="module")
def dp(dp_path):
    est = get_depth_estimator("depth-pro", weights=str(dp_path), device="cpu")
    est.load()
    return est


KD = make_K(90.0, 95.0, 30.0, 55.0)  # a dataset K for the (120, 61) image


def _inputs():
    Ks = [None, KD, None, None]
    f35 = [None, None, 28.0, None]
    return Ks, f35


# -- geometry of the aspect-preserving pre-processing --------------------------------------
@pytest.mark.parametrize("hw", [(480, 640), (427, 640), (640, 480), (75, 101), (333, 1000), (518, 518)])
@pytest.mark.parametrize("mode", ["short_side", "long_side"])
def test_letterbox_keeps_aspect_and_pads_to_patch_multiple(hw, mode):
    H, W = hw
    lb = plan_letterbox(H, W, 518, mode, 14, 56)
    assert lb.canvas_h % 14 == 0 and lb.canvas_w % 14 == 0
    assert lb.h <= lb.canvas_h and lb.w <= lb.canvas_w
    target = min(lb.h, lb.w) if mode == "short_side" else max(lb.h, lb.w)
    assert target == 518
    assert abs(lb.w / lb.h - W / H) < 2.0 / min(lb.h, lb.w)  # aspect kept to within rounding
    assert abs(lb.top - (lb.canvas_h - lb.h - lb.top)) <= 1 and abs(lb.left - (lb.canvas_w - lb.w - lb.left)) <= 1
    # the short side is only padded to the next patch multiple
    short_pad = (lb.canvas_w - lb.w) if lb.w < lb.h else (lb.canvas_h - lb.h)
    assert short_pad < 14 or lb.h == lb.w


def test_canvas_roundtrip_recovers_the_image():
    """Resize+pad then crop+resize back is (nearly) the identity: no shift, no distortion."""
    H, W = 61, 97
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    ch0 = 40 + 150 * (xx / W) + 50 * np.sin(yy / 9.0)  # smooth, so resampling error is small
    img = np.stack([ch0, ch0[::-1], np.full_like(ch0, 90)], -1).astype(np.uint8)
    lb = plan_letterbox(H, W, 140, "short_side", 14, None)
    canvas = _to_canvas(img, lb, IMAGENET_MEAN, IMAGENET_STD, "cpu")
    assert tuple(canvas.shape) == (3, lb.canvas_h, lb.canvas_w)
    pad = canvas.clone()
    pad[:, lb.top:lb.top + lb.h, lb.left:lb.left + lb.w] = 0
    assert float(pad.abs().max()) == 0.0  # padding is the mean colour (0 after normalisation)
    back = _from_canvas(canvas[0] * IMAGENET_STD[0] + IMAGENET_MEAN[0], lb).numpy() * 255
    assert back.shape == (H, W)
    assert np.abs(back - img[..., 0])[2:-2, 2:-2].mean() < 2.0


# -- intrinsics ---------------------------------------------------------------------------
def test_resolve_K_order():
    K, src = resolve_K(101, 75, KD, 28.0, 60.0)
    assert src == "dataset" and np.array_equal(K, KD)
    K, src = resolve_K(101, 75, np.eye(3) * [0, 1, 1], 28.0, 60.0)  # unusable dataset K is skipped
    assert src == "exif" and np.allclose(K, K_from_exif_35mm(101, 75, 28.0))
    K, src = resolve_K(101, 75, None, None, 70.0)
    assert src == "fov_prior" and np.allclose(K, K_from_fov(101, 75, 70.0))


def test_sensor_prediction_marks_missing_depth_invalid():
    d = np.array([[0.0, 1.5], [np.nan, 3.25]])
    p = sensor_prediction(d, KD)
    assert p.depth.dtype == np.float16 and p.valid.tolist() == [[False, True], [False, True]]
    assert p.depth[1, 1] == np.float16(3.25) and p.depth_source == "sensor" and p.K_source == "dataset"


# -- Depth Anything V2 --------------------------------------------------------------------
def test_depth_anything_shapes_dtype_K_and_validity(da, images):
    Ks, f35 = _inputs()
    preds = da.predict(images, Ks, f35)
    assert len(preds) == len(images)
    for p, im in zip(preds, images):
        assert p.depth.shape == im.shape[:2] and p.depth.dtype == np.float16
        assert p.valid.shape == im.shape[:2] and p.valid.dtype == bool
        assert p.K.shape == (3, 3) and p.K.dtype == np.float64
        assert p.depth_source == "model:depth-anything-v2"
        d = p.depth.astype(np.float32)
        assert p.valid.mean() > 0.5
        assert np.all((d[p.valid] > 0) & (d[p.valid] <= 20.0 * 0.98 + 0.02))
        assert np.all(d[~p.valid] == 0)
        assert d[p.valid].std() > 0.05  # the (random) network's output varies over the image
    assert [p.K_source for p in preds] == ["fov_prior", "dataset", "exif", "fov_prior"]
    assert np.array_equal(preds[1].K, KD)
    assert np.allclose(preds[2].K, K_from_exif_35mm(47, 33, 28.0))
    assert np.allclose(preds[0].K, K_from_fov(101, 75, 60.0))


def test_depth_anything_batch_equals_one_by_one(da, images):
    Ks, f35 = _inputs()
    batch = da.predict(images, Ks, f35)
    for i, im in enumerate(images):
        one = da.predict([im], [Ks[i]], [f35[i]])[0]
        assert np.array_equal(one.valid, batch[i].valid)
        np.testing.assert_allclose(one.depth.astype(np.float32), batch[i].depth.astype(np.float32), rtol=2e-3, atol=2e-3)
    # identical images in one batch give identical depth
    assert np.array_equal(batch[0].depth, batch[3].depth)


def test_depth_anything_network_sees_padded_undistorted_canvas(da, images):
    seen = []
    h = da.model.register_forward_pre_hook(lambda m, args, kw: seen.append(kw["pixel_values"].clone()),
                                           with_kwargs=True)
    try:
        da.predict([images[1]], [None])
    finally:
        h.remove()
    (x,) = seen
    lb = plan_letterbox(120, 61, 56, "short_side", 14, 56)
    assert tuple(x.shape) == (1, 3, lb.canvas_h, lb.canvas_w)
    assert lb.w == 56 and lb.h == round(120 * 56 / 61)
    inside = x[0, :, lb.top:lb.top + lb.h, lb.left:lb.left + lb.w]
    assert float(x.abs().sum() - inside.abs().sum()) == 0.0 and float(inside.abs().sum()) > 0


def test_depth_anything_outdoor_alias_and_relative_checkpoint_rejected(tmp_path, da_path):
    est = get_depth_estimator("depth-anything-v2-outdoor", weights=str(da_path), device="cpu")
    assert est.scene == "outdoor" and "Outdoor" in est.repo_id
    from transformers import DepthAnythingConfig

    cfg = DepthAnythingConfig.from_pretrained(str(da_path))
    cfg.depth_estimation_type = "relative"
    rel = tmp_path / "rel"
    import shutil

    shutil.copytree(da_path, rel)
    cfg.save_pretrained(str(rel))
    with pytest.raises(ModelSetupError, match="relative depth"):
        DepthAnythingV2(weights=str(rel), device="cpu").load()


def test_intrinsics_from_another_estimator(da_path, dp, images):
    est = DepthAnythingV2(weights=str(da_path), device="cpu", input_size=56, intrinsics_from=dp)
    Ks, f35 = _inputs()
    preds = est.predict(images, Ks, f35)
    assert [p.K_source for p in preds] == ["model:depth-pro", "dataset", "exif", "model:depth-pro"]
    ref = dp.predict([images[0]], [None])[0]
    np.testing.assert_allclose(preds[0].K, ref.K)


def test_cuda_request_without_cuda_fails_in_one_line(da_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available on this machine")
    with pytest.raises(DeviceUnavailableError) as e:
        DepthAnythingV2(weights=str(da_path), device="cuda").load()
    assert "\n" not in str(e.value) and "cuda" in str(e.value).lower()


# -- Depth Pro ----------------------------------------------------------------------------
def test_depth_pro_predicts_K_and_metric_scale_follows_focal(dp, images):
    preds = dp.predict(images, [None] * len(images))
    for p, im in zip(preds, images):
        H, W = im.shape[:2]
        assert p.depth.shape == (H, W) and p.depth.dtype == np.float16 and p.valid.all()
        assert p.K_source == "model:depth-pro"
        fx, fy, cx, cy = p.K[0, 0], p.K[1, 1], p.K[0, 2], p.K[1, 2]
        assert fx == fy > 0 and cx == (W - 1) / 2 and cy == (H - 1) / 2
        fov = math.degrees(2 * math.atan(0.5 * max(H, W) / fx))  # the FoV of the padded square
        assert 5 < fov < 170
    # depth is proportional to the focal length used (inverse depth = canonical * W_ref / f)
    im = images[0]
    f0 = 80.0
    d1 = dp.predict([im], [make_K(f0, f0, 50, 37)])[0]
    d2 = dp.predict([im], [make_K(2 * f0, 2 * f0, 50, 37)])[0]
    assert d1.K_source == "dataset"
    ratio = d2.depth.astype(np.float64) / d1.depth.astype(np.float64)
    np.testing.assert_allclose(ratio, 2.0, rtol=2e-3)


def test_depth_pro_batch_equals_one_by_one(dp, images):
    Ks, f35 = _inputs()
    batch = dp.predict(images, Ks, f35)
    for i, im in enumerate(images):
        one = dp.predict([im], [Ks[i]], [f35[i]])[0]
        np.testing.assert_allclose(one.depth.astype(np.float32), batch[i].depth.astype(np.float32), rtol=2e-3)
        np.testing.assert_allclose(one.K, batch[i].K, rtol=1e-5)
        assert one.K_source == batch[i].K_source


# -- MoGe ---------------------------------------------------------------------------------
def test_moge_missing_package_is_one_clear_line():
    try:
        import moge.model.v2  # noqa: F401
        pytest.skip("moge is installed here")
    except Exception:  # noqa: BLE001 - any import failure means the backend is unavailable
        pass
    with pytest.raises(PackageMissingError) as e:
        MoGe(device="cpu").load()
    msg = str(e.value)
    assert "\n" not in msg and "moge" in msg and "pip install" in msg


def test_moge_outputs_converted_to_pixels(monkeypatch, tmp_path, images):
    """The real MoGe post-processing path, with the package replaced by a stand-in model."""
    import torch

    calls = []

    class FakeMoGe:
        @classmethod
        def from_pretrained(cls, path):
            assert Path(path).is_file()
            return cls()

        def to(self, device):
            return self

        def eval(self):
            return self

        def infer(self, image, **kw):
            calls.append(kw)
            _, H, W = image.shape
            depth = torch.linspace(1.0, 5.0, H * W).reshape(H, W)
            mask = torch.ones(H, W, dtype=torch.bool)
            mask[0] = False
            return {"depth": depth, "mask": mask,
                    "intrinsics": torch.tensor([[0.8, 0, 0.5], [0, 0.8 * W / H, 0.5], [0, 0, 1.0]])}

    v2 = types.ModuleType("moge.model.v2")
    v2.MoGeModel = FakeMoGe
    monkeypatch.setitem(sys.modules, "moge", types.ModuleType("moge"))
    monkeypatch.setitem(sys.modules, "moge.model", types.ModuleType("moge.model"))
    monkeypatch.setitem(sys.modules, "moge.model.v2", v2)
    ckpt = tmp_path / "model.pt"
    ckpt.write_bytes(b"x")
    est = get_depth_estimator("moge", weights=str(ckpt), device="cpu")
    preds = est.predict(images[:2], [None, KD])
    H, W = images[0].shape[:2]
    p = preds[0]
    assert p.K_source == "model:moge" and p.depth.shape == (H, W) and p.depth.dtype == np.float16
    np.testing.assert_allclose(p.K, make_K(0.8 * W, 0.8 * W, (W - 1) / 2, (H - 1) / 2))
    np.testing.assert_allclose(p.K, moge_intrinsics_to_K(np.array([[0.8, 0, 0.5], [0, 0.8 * W / H, 0.5], [0, 0, 1]]), W, H))
    assert not p.valid[0].any() and p.valid[1:].all() and np.all(p.depth[0] == 0)
    assert "fov_x" not in calls[0]
    assert preds[1].K_source == "dataset" and np.array_equal(preds[1].K, KD)
    assert calls[1]["fov_x"] == pytest.approx(math.degrees(2 * math.atan(61 / 2 / 90.0)))


# -- real images --------------------------------------------------------------------------
def test_depth_on_real_coco_images(da):
    root = DATA / "coco-mini" / "val2017"
    if not root.is_dir():
        pytest.skip(f"real sample data not found at {root}")
    from PIL import Image

    files = sorted(root.glob("*.jpg"))[:3]
    imgs = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    preds = da.predict(imgs, [None] * len(imgs))
    for im, p in zip(imgs, preds):
        assert p.depth.shape == im.shape[:2] and p.valid.any()
        assert np.allclose(p.K, K_from_fov(im.shape[1], im.shape[0], 60.0)) and p.K_source == "fov_prior"
