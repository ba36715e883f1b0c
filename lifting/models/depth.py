"""Monocular metric depth + intrinsics backends: Depth Anything V2 (metric), Depth Pro, MoGe-2.

All backends share one contract (`lifting.models.base.DepthEstimator`): a batch of RGB
images of any sizes in, per image a float16 metric z-depth map at the input resolution,
intrinsics K and a validity mask out.

Pre-processing keeps the aspect ratio: each image is resized (on the model's device) and
padded symmetrically to a canvas whose sides are multiples of the network's patch size;
the prediction is cropped back to the image area and resized to the input resolution.
Images are grouped by canvas inside a batch, so a batched call gives the same result as
one image at a time. Pre-processing is hand-written in torch (not the transformers image
processors) because it must pad instead of distort and run on the GPU; the slow
processors' resize/normalise constants are read from the checkpoint's
preprocessor_config.json.

Intrinsics, in order of preference (K_source): the dataset's K ("dataset"), the EXIF 35 mm
focal length ("exif"), a model that predicts them ("model:<name>"), a field-of-view prior
("fov_prior").
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lifting.camera import K_from_exif_35mm, K_from_fov, fov_from_K, make_K, validate_K
from lifting.models.base import (
    DepthEstimator,
    DepthPrediction,
    ModelSetupError,
    check_image,
    require_package,
    resolve_device,
    resolve_dtype,
)
from lifting.models.weights import resolve_weights

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Default horizontal field of view (degrees) when neither the dataset, EXIF nor a model gives K.
DEFAULT_FOV_PRIOR_DEG = 60.0


# -- intrinsics ---------------------------------------------------------------------------
def resolve_K(
    width: int,
    height: int,
    K=None,
    focal_35mm: float | None = None,
    fov_prior_deg: float = DEFAULT_FOV_PRIOR_DEG,
) -> tuple[np.ndarray, str]:
    """Intrinsics (3, 3) float64 of a W x H image and where they came from.

    Order: a usable dataset K ("dataset"), the EXIF 35 mm-equivalent focal length in mm
    ("exif"), else a horizontal field-of-view prior in degrees ("fov_prior").
    An unusable dataset K (wrong shape, non-finite, non-positive focal) is skipped.
    """
    if K is not None and validate_K(K, width, height) is None:
        return np.asarray(K, dtype=np.float64).reshape(3, 3).copy(), "dataset"
    if focal_35mm is not None and np.isfinite(focal_35mm) and focal_35mm > 0:
        return K_from_exif_35mm(width, height, float(focal_35mm)), "exif"
    return K_from_fov(width, height, fov_prior_deg), "fov_prior"


def _known_K(width: int, height: int, K, focal_35mm) -> tuple[np.ndarray | None, str | None]:
    """The dataset or EXIF intrinsics if any, else (None, None)."""
    if K is not None and validate_K(K, width, height) is None:
        return np.asarray(K, dtype=np.float64).reshape(3, 3).copy(), "dataset"
    if focal_35mm is not None and np.isfinite(focal_35mm) and focal_35mm > 0:
        return K_from_exif_35mm(width, height, float(focal_35mm)), "exif"
    return None, None


def sensor_prediction(depth_m: np.ndarray, K) -> DepthPrediction:
    """Wrap a dataset's sensor depth (H, W) metres (0 or non-finite = missing) and its K as a DepthPrediction."""
    d = np.asarray(depth_m, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth_m must be (H, W), got {d.shape}")
    valid = np.isfinite(d) & (d > 0)
    return DepthPrediction(
        depth=np.where(valid, d, 0.0).astype(np.float16),
        K=np.asarray(K, dtype=np.float64).reshape(3, 3).copy(),
        valid=valid,
        K_source="dataset",
        depth_source="sensor",
    )


# -- aspect-preserving resize + pad -------------------------------------------------------
@dataclass(frozen=True)
class Letterbox:
    """How one H x W image sits on the network canvas.

    The image is resized to (h, w) and placed at rows [top, top + h), columns
    [left, left + w) of a (canvas_h, canvas_w) canvas; the rest is padding.
    """

    height: int
    width: int
    h: int
    w: int
    canvas_h: int
    canvas_w: int
    top: int
    left: int

    @property
    def canvas(self) -> tuple[int, int]:
        return (self.canvas_h, self.canvas_w)


def _ceil_to(x: int, m: int) -> int:
    return int(math.ceil(x / m) * m)


def plan_letterbox(height: int, width: int, input_size: int, mode: str = "short_side",
                   multiple: int = 14, bucket: int | None = None) -> Letterbox:
    """Canvas geometry for an H x W image (pixels).

    Args:
        input_size: target length in pixels of the short side ("short_side", Depth Anything's
            own rule), of the long side ("long_side"), or of both canvas sides ("square":
            the long side is resized to input_size and the canvas is input_size square).
        multiple: canvas sides are multiples of this (the ViT patch size).
        bucket: if set, the canvas's long side is rounded up to a multiple of `bucket`, so
            that images of similar aspect ratios share a canvas (fewer, larger GPU batches).
    Returns:
        the Letterbox; padding is split evenly between the two sides.
    """
    if height < 1 or width < 1:
        raise ValueError(f"image size must be positive, got {height}x{width}")
    if mode == "short_side":
        s = input_size / min(height, width)
    elif mode in ("long_side", "square"):
        s = input_size / max(height, width)
    else:
        raise ValueError(f"resize mode must be short_side, long_side or square; got {mode!r}")
    h = max(1, int(round(height * s)))
    w = max(1, int(round(width * s)))
    if mode == "square":
        ch = cw = _ceil_to(input_size, multiple)
        h, w = min(h, ch), min(w, cw)
    else:
        ch, cw = _ceil_to(h, multiple), _ceil_to(w, multiple)
        if bucket:
            if ch >= cw:
                ch = _ceil_to(ch, bucket)
            else:
                cw = _ceil_to(cw, bucket)
    return Letterbox(height, width, h, w, ch, cw, (ch - h) // 2, (cw - w) // 2)


def _to_canvas(image: np.ndarray, lb: Letterbox, mean, std, device, stretch: bool = False):
    """(3, canvas_h, canvas_w) float32 normalised tensor on `device` from an (H, W, 3) uint8 image.

    Resizes with antialiased bicubic interpolation; the padding is 0 after normalisation
    (the mean colour). With `stretch`, the image fills the canvas (no padding, distorted).
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(image).to(device, non_blocking=True).permute(2, 0, 1)[None].float().div_(255.0)
    size = lb.canvas if stretch else (lb.h, lb.w)
    if (t.shape[2], t.shape[3]) != size:
        t = F.interpolate(t, size=size, mode="bicubic", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    m = torch.tensor(mean, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device, dtype=torch.float32).view(1, 3, 1, 1)
    t = (t - m) / s
    if stretch:
        return t[0]
    canvas = t.new_zeros((3, lb.canvas_h, lb.canvas_w))
    canvas[:, lb.top:lb.top + lb.h, lb.left:lb.left + lb.w] = t[0]
    return canvas


def _from_canvas(pred, lb: Letterbox, stretch: bool = False):
    """(H, W) float32 tensor: a (ph, pw) prediction over the canvas, cropped to the image and resized to H x W.

    The prediction may be at another resolution than the canvas (it is resized to the canvas
    first); bilinear interpolation, pixel-centre aligned (align_corners=False).
    """
    import torch.nn.functional as F

    p = pred.float()[None, None]
    if (p.shape[2], p.shape[3]) != lb.canvas:
        p = F.interpolate(p, size=lb.canvas, mode="bilinear", align_corners=False)
    if not stretch:
        p = p[:, :, lb.top:lb.top + lb.h, lb.left:lb.left + lb.w]
    if (p.shape[2], p.shape[3]) != (lb.height, lb.width):
        p = F.interpolate(p, size=(lb.height, lb.width), mode="bilinear", align_corners=False)
    return p[0, 0]


def _dtype_kw(torch_dtype) -> dict:
    """from_pretrained keyword for the weights dtype (`dtype` since transformers 4.56, `torch_dtype` before)."""
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    return {key: torch_dtype}


def _read_preprocessor(path: Path) -> dict:
    f = Path(path) / "preprocessor_config.json"
    if f.is_file():
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            log.warning("could not read %s; using default normalisation", f)
    return {}


# -- shared torch backend -----------------------------------------------------------------
class _TorchDepthEstimator(DepthEstimator):
    """Common plumbing of the transformers depth backends (device, dtype, grouping, K)."""

    name = "torch-depth"
    repo_id: str | None = None

    def __init__(self, weights: str | None = None, device: str = "auto", dtype: str = "auto",
                 max_batch_size: int = 16, fov_prior_deg: float = DEFAULT_FOV_PRIOR_DEG,
                 min_depth_m: float = 1e-3, max_depth_m: float | None = None,
                 allow_download: bool | None = None, compile: bool = False):
        self.weights = weights
        self.device_str = device
        self.dtype_str = dtype
        self.max_batch_size = int(max_batch_size)
        self.fov_prior_deg = float(fov_prior_deg)
        self.min_depth_m = float(min_depth_m)
        self.max_depth_m = max_depth_m
        self.allow_download = allow_download
        self.compile = compile
        self.model = None
        self._loaded = False

    # subclasses fill these in
    def _load_model(self, path: Path):  # -> (model, mean, std)
        raise NotImplementedError

    def _plan(self, height: int, width: int) -> Letterbox:
        raise NotImplementedError

    def _forward(self, pixel_values, lbs: list[Letterbox], known: list[tuple]):
        """Run the network on a (B, 3, ch, cw) batch; return per image (depth (H, W) float32 tensor, K, K_source)."""
        raise NotImplementedError

    def load(self) -> None:
        """Resolve weights and device, load the network in eval mode (bf16 on CUDA by default)."""
        if self._loaded:
            return
        import torch

        self.device = resolve_device(self.device_str)
        self.torch_dtype = resolve_dtype(self.device, self.dtype_str)
        path = resolve_weights(self.name, self.repo_id, self.weights, allow_download=self.allow_download)
        self.weights_path = path
        self.model, self.mean, self.std = self._load_model(path)
        self.model.to(device=self.device, dtype=self.torch_dtype).eval()
        if self.compile:
            self.model = torch.compile(self.model)
        self._loaded = True
        log.info("%s loaded from %s on %s (%s)", self.name, path, self.device, self.torch_dtype)

    def _valid(self, depth, hi: float):
        import torch

        top = hi if self.max_depth_m is None else min(hi, float(self.max_depth_m))
        return torch.isfinite(depth) & (depth >= self.min_depth_m) & (depth <= top)

    def predict(self, images, Ks, focal_35mm=None) -> list[DepthPrediction]:
        """See DepthEstimator.predict: (H_i, W_i, 3) uint8 images in, per image (H_i, W_i) float16 metres out."""
        import torch

        self._ensure_loaded()
        n = len(images)
        if len(Ks) != n or (focal_35mm is not None and len(focal_35mm) != n):
            raise ValueError(f"images, Ks and focal_35mm must have the same length ({n}, {len(Ks)}, "
                             f"{None if focal_35mm is None else len(focal_35mm)})")
        focal_35mm = focal_35mm if focal_35mm is not None else [None] * n
        imgs = [check_image(im) for im in images]
        lbs = [self._plan(im.shape[0], im.shape[1]) for im in imgs]
        known = [_known_K(im.shape[1], im.shape[0], k, f) for im, k, f in zip(imgs, Ks, focal_35mm)]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, lb in enumerate(lbs):
            groups.setdefault(lb.canvas, []).append(i)
        out: list[DepthPrediction | None] = [None] * n
        with torch.inference_mode():
            for idx in groups.values():
                for s in range(0, len(idx), self.max_batch_size):
                    chunk = idx[s:s + self.max_batch_size]
                    x = torch.stack([self._canvas(imgs[i], lbs[i]) for i in chunk]).to(self.torch_dtype)
                    results = self._forward(x, [lbs[i] for i in chunk], [known[i] for i in chunk])
                    for i, (depth, valid, K, K_source) in zip(chunk, results):
                        out[i] = DepthPrediction(
                            depth=torch.where(valid, depth, torch.zeros_like(depth)).to(torch.float16).cpu().numpy(),
                            K=np.asarray(K, dtype=np.float64),
                            valid=valid.cpu().numpy(),
                            K_source=K_source,
                            depth_source=f"model:{self.name}",
                        )
        return out  # type: ignore[return-value]

    def _canvas(self, image, lb):
        return _to_canvas(image, lb, self.mean, self.std, self.device)


# -- Depth Anything V2 (metric) -----------------------------------------------------------
DEPTH_ANYTHING_V2_REPOS = {
    (scene, size): f"depth-anything/Depth-Anything-V2-Metric-{scene.capitalize()}-{size.capitalize()}-hf"
    for scene in ("indoor", "outdoor")
    for size in ("small", "base", "large")
}


class DepthAnythingV2(_TorchDepthEstimator):
    """Depth Anything V2 metric checkpoints through transformers' DepthAnythingForDepthEstimation.

    The network predicts metric depth but not intrinsics: K comes from the dataset, EXIF,
    another estimator (`intrinsics_from`: a DepthEstimator or a registry name such as
    "depth-pro" or "moge") or the field-of-view prior, in that order.
    Options: scene "indoor" (max 20 m, Hypersim) | "outdoor" (max 80 m, Virtual KITTI);
    size "small" | "base" | "large"; input_size (pixels, 518 as in the paper) applied to
    the short side ("short_side", the official rule) or long side ("long_side");
    bucket rounds the canvas's long side up to a multiple of this many pixels.
    """

    name = "depth-anything-v2"

    def __init__(self, scene: str = "indoor", size: str = "large", input_size: int = 518,
                 resize_mode: str = "short_side", bucket: int | None = 56, intrinsics_from=None,
                 max_valid_fraction: float = 0.98, **kw):
        super().__init__(**kw)
        if (scene, size) not in DEPTH_ANYTHING_V2_REPOS:
            raise ValueError(f"depth-anything-v2: scene must be indoor|outdoor and size small|base|large, "
                             f"got scene={scene!r} size={size!r}")
        self.scene, self.size = scene, size
        self.repo_id = DEPTH_ANYTHING_V2_REPOS[(scene, size)]
        self.input_size = int(input_size)
        self.resize_mode = resize_mode
        self.bucket = bucket
        self.intrinsics_from = intrinsics_from
        self.max_valid_fraction = float(max_valid_fraction)
        self.patch = 14

    def _load_model(self, path: Path):
        from transformers import DepthAnythingForDepthEstimation

        model = DepthAnythingForDepthEstimation.from_pretrained(str(path), **_dtype_kw(self.torch_dtype))
        cfg = model.config
        if getattr(cfg, "depth_estimation_type", "relative") != "metric":
            raise ModelSetupError(
                f"depth-anything-v2: checkpoint {path} predicts relative depth, not metres; use a Metric "
                f"checkpoint such as {self.repo_id}"
            )
        self.patch = int(getattr(cfg.backbone_config, "patch_size", 14))
        self.max_depth = float(cfg.max_depth)
        pre = _read_preprocessor(path)
        if isinstance(self.intrinsics_from, str):
            from lifting.models.registry import get_depth_estimator

            self.intrinsics_from = get_depth_estimator(self.intrinsics_from, device=self.device_str)
        if self.intrinsics_from is not None:
            self.intrinsics_from.load()
        return model, tuple(pre.get("image_mean", IMAGENET_MEAN)), tuple(pre.get("image_std", IMAGENET_STD))

    def _plan(self, height, width):
        return plan_letterbox(height, width, self.input_size, self.resize_mode, self.patch, self.bucket)

    def _forward(self, pixel_values, lbs, known):
        pred = self.model(pixel_values=pixel_values).predicted_depth  # (B, ch, cw) metres
        res = []
        for p, lb, (K, src) in zip(pred, lbs, known):
            depth = _from_canvas(p, lb)
            valid = self._valid(depth, self.max_depth * self.max_valid_fraction)
            if K is None:
                K, src = K_from_fov(lb.width, lb.height, self.fov_prior_deg), "fov_prior"
            res.append([depth, valid, K, src])
        return res

    def predict(self, images, Ks, focal_35mm=None):
        """See DepthEstimator.predict. Images without dataset/EXIF K take K from `intrinsics_from` when set."""
        preds = super().predict(images, Ks, focal_35mm)
        if self.intrinsics_from is None:
            return preds
        need = [i for i, p in enumerate(preds) if p.K_source == "fov_prior"]
        if need:
            other = self.intrinsics_from.predict([images[i] for i in need], [None] * len(need))
            for i, o in zip(need, other):
                if o.K_source.startswith("model:"):
                    preds[i].K, preds[i].K_source = o.K, o.K_source
        return preds


# -- Depth Pro ----------------------------------------------------------------------------
class DepthPro(_TorchDepthEstimator):
    """Apple Depth Pro through transformers' DepthProForDepthEstimation (with its field-of-view head).

    The network predicts canonical inverse depth and the horizontal field of view of its
    input. Metric inverse depth = canonical * W_ref / f_px, where W_ref is the width of
    what the network saw, in input pixels (the padded square's side in "pad" mode, the
    image width in "stretch" mode, the official pre-processing) and f_px the focal length
    used: the dataset's or EXIF's when known (as the official code does with f_px), else the
    predicted one (K_source "model:depth-pro"), else the FoV prior when the prediction is
    not a plausible angle.
    """

    name = "depth-pro"
    repo_id = "apple/DepthPro-hf"

    def __init__(self, resize_mode: str = "pad", input_size: int | None = None,
                 fov_range_deg: tuple[float, float] = (5.0, 170.0), **kw):
        super().__init__(**kw)
        if resize_mode not in ("pad", "stretch"):
            raise ValueError(f"depth-pro: resize_mode must be pad or stretch, got {resize_mode!r}")
        self.resize_mode = resize_mode
        self.input_size = input_size
        self.fov_range_deg = fov_range_deg

    def _load_model(self, path: Path):
        from transformers import DepthProForDepthEstimation

        model = DepthProForDepthEstimation.from_pretrained(str(path), use_fov_model=True, **_dtype_kw(self.torch_dtype))
        cfg = model.config
        pre = _read_preprocessor(path)
        native = int(round(cfg.patch_size / min(cfg.scaled_images_ratios)))
        if self.input_size is None:
            self.input_size = int((pre.get("size") or {}).get("height", native))
        self.max_inverse = 1e4
        return model, tuple(pre.get("image_mean", (0.5, 0.5, 0.5))), tuple(pre.get("image_std", (0.5, 0.5, 0.5)))

    def _plan(self, height, width):
        return plan_letterbox(height, width, self.input_size, "square", 1, None)

    def _canvas(self, image, lb):
        return _to_canvas(image, lb, self.mean, self.std, self.device, stretch=self.resize_mode == "stretch")

    def _forward(self, pixel_values, lbs, known):
        import torch

        out = self.model(pixel_values=pixel_values)
        canon = out.predicted_depth  # (B, ph, pw) canonical inverse depth over the canvas
        fovs = out.field_of_view
        res = []
        lo, hi = self.fov_range_deg
        for b, (lb, (K, src)) in enumerate(zip(lbs, known)):
            # width of what the network saw, in input-image pixels
            w_ref = float(lb.width) if self.resize_mode == "stretch" else float(max(lb.height, lb.width))
            if K is None:
                fov = float(fovs[b]) if fovs is not None else float("nan")
                if math.isfinite(fov) and lo <= fov <= hi:
                    f = 0.5 * w_ref / math.tan(math.radians(fov) / 2.0)
                    K, src = make_K(f, f, (lb.width - 1) / 2.0, (lb.height - 1) / 2.0), f"model:{self.name}"
                else:
                    K, src = K_from_fov(lb.width, lb.height, self.fov_prior_deg), "fov_prior"
            f_px = float(np.sqrt(K[0, 0] * K[1, 1]))
            inv = canon[b].float() * (w_ref / f_px)
            inv = _from_canvas(inv, lb, stretch=self.resize_mode == "stretch")
            depth = 1.0 / torch.clamp(inv, min=1.0 / self.max_inverse, max=self.max_inverse)
            valid = self._valid(depth, 0.999 * self.max_inverse)
            res.append([depth, valid, K, src])
        return res


# -- MoGe-2 -------------------------------------------------------------------------------
class MoGe(DepthEstimator):
    """MoGe-2 (the official `dlr-moge` package): metric point map, depth, mask and intrinsics.

    Optional: the package imports torchvision, so the backend is guarded and fails with one
    line when it is not usable. With a dataset/EXIF K the model is conditioned on that field
    of view (its `fov_x` argument) and that K is returned; otherwise the predicted
    normalised intrinsics are converted to pixels (K_source "model:moge").
    """

    name = "moge"
    repo_id = "Ruicheng/moge-2-vitl-normal"
    filename = "model.pt"
    install_hint = "pip install 'dlr-moge' (needs a torchvision matching your torch)"

    def __init__(self, weights: str | None = None, device: str = "auto", dtype: str = "auto",
                 resolution_level: int = 9, allow_download: bool | None = None,
                 min_depth_m: float = 1e-3, max_depth_m: float | None = None, **_ignored):
        self.weights = weights
        self.device_str = device
        self.dtype_str = dtype
        self.resolution_level = resolution_level
        self.allow_download = allow_download
        self.min_depth_m = min_depth_m
        self.max_depth_m = max_depth_m
        self._loaded = False

    def load(self) -> None:
        """Import moge, resolve the checkpoint (model.pt), load it on the device."""
        if self._loaded:
            return
        require_package("moge.model.v2", self.name, self.install_hint)
        from moge.model.v2 import MoGeModel

        self.device = resolve_device(self.device_str)
        self.torch_dtype = resolve_dtype(self.device, self.dtype_str)
        path = resolve_weights(self.name, self.repo_id, self.weights, filename=self.filename,
                               allow_download=self.allow_download)
        self.model = MoGeModel.from_pretrained(str(path)).to(self.device).eval()
        self._loaded = True

    def predict(self, images, Ks, focal_35mm=None) -> list[DepthPrediction]:
        """See DepthEstimator.predict; images are run one at a time (MoGe handles any aspect ratio itself)."""
        import torch

        self._ensure_loaded()
        focal_35mm = focal_35mm if focal_35mm is not None else [None] * len(images)
        out = []
        with torch.inference_mode():
            for image, K_in, f35 in zip(images, Ks, focal_35mm):
                image = check_image(image)
                H, W = image.shape[:2]
                K, src = _known_K(W, H, K_in, f35)
                t = torch.from_numpy(image).to(self.device).permute(2, 0, 1).float().div_(255.0)
                kwargs = {"resolution_level": self.resolution_level,
                          "use_fp16": self.torch_dtype != torch.float32}
                if K is not None:
                    kwargs["fov_x"] = fov_from_K(K, W)
                res = self.model.infer(t, **kwargs)
                depth = res["depth"].float().reshape(H, W)
                mask = res.get("mask")
                valid = torch.isfinite(depth) & (depth >= self.min_depth_m)
                if self.max_depth_m is not None:
                    valid &= depth <= float(self.max_depth_m)
                if mask is not None:
                    valid &= mask.reshape(H, W).bool()
                if K is None:
                    K, src = moge_intrinsics_to_K(res["intrinsics"].float().cpu().numpy(), W, H), f"model:{self.name}"
                out.append(DepthPrediction(
                    depth=torch.where(valid, depth, torch.zeros_like(depth)).to(torch.float16).cpu().numpy(),
                    K=K, valid=valid.cpu().numpy(), K_source=src, depth_source=f"model:{self.name}"))
        return out


def moge_intrinsics_to_K(intr_norm: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel intrinsics (3, 3) from MoGe's normalised ones (focal and centre in units of width/height,
    image edges at 0 and 1) for a W x H image, in lifting.camera's pixel-centre convention."""
    n = np.asarray(intr_norm, dtype=np.float64).reshape(3, 3)
    return make_K(n[0, 0] * width, n[1, 1] * height, n[0, 2] * width - 0.5, n[1, 2] * height - 0.5)


# -- tiny random checkpoints (tests, demos, benchmarks) -----------------------------------
def tiny_random_checkpoint(backend: str, path, seed: int = 0, full_size: bool = False) -> Path:
    """Save a random-initialised checkpoint of the real architecture into folder `path`.

    backend: "depth-anything-v2" (metric, max 20 m) or "depth-pro" (with FoV head).
    full_size=False gives a tiny config that runs on CPU in milliseconds; True gives the
    published architecture (ViT-L Depth Anything V2, Depth Pro's 3 x DINOv2-L), for speed
    measurements. Weights are re-drawn (normal, std 0.05) so the outputs vary across pixels.
    Returns the folder, loadable with weights=path.
    """
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, DepthProConfig, \
        DepthProForDepthEstimation, Dinov2Config

    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if backend == "depth-anything-v2":
        if full_size:
            bb = Dinov2Config(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
                              patch_size=14, image_size=518, out_indices=[5, 12, 18, 24], reshape_hidden_states=False,
                              layerscale_value=1.0)
            cfg = DepthAnythingConfig(backbone_config=bb, fusion_hidden_size=256, neck_hidden_sizes=[256, 512, 1024, 1024],
                                      reassemble_hidden_size=1024, head_hidden_size=32,
                                      depth_estimation_type="metric", max_depth=20.0)
        else:
            bb = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                              patch_size=14, image_size=56, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
            cfg = DepthAnythingConfig(backbone_config=bb, fusion_hidden_size=16, neck_hidden_sizes=[8, 16, 32, 32],
                                      reassemble_hidden_size=32, head_hidden_size=8,
                                      depth_estimation_type="metric", max_depth=20.0)
        model = DepthAnythingForDepthEstimation(cfg)
        pre = {"image_mean": list(IMAGENET_MEAN), "image_std": list(IMAGENET_STD), "size": {"height": 518, "width": 518},
               "image_processor_type": "DPTImageProcessor"}
    elif backend == "depth-pro":
        def dino(hidden, layers, heads, inter, image_size):
            return Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=inter, patch_size=16, image_size=image_size).to_dict()
        if full_size:
            sub = dino(1024, 24, 16, 4096, 384)
            cfg = DepthProConfig(use_fov_model=True, image_model_config=sub, patch_model_config=sub, fov_model_config=sub)
            size = 1536
        else:
            sub = dino(32, 4, 2, 64, 32)
            cfg = DepthProConfig(fusion_hidden_size=16, patch_size=32, intermediate_hook_ids=[1, 0],
                                 intermediate_feature_dims=[8, 8], scaled_images_ratios=[0.5, 1.0],
                                 scaled_images_overlap_ratios=[0.0, 0.5], scaled_images_feature_dims=[16, 16],
                                 merge_padding_value=1, use_fov_model=True, num_fov_head_layers=1,
                                 image_model_config=sub, patch_model_config=sub, fov_model_config=sub)
            size = 64
        model = DepthProForDepthEstimation(cfg, use_fov_model=True)
        pre = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "size": {"height": size, "width": size},
               "image_processor_type": "DepthProImageProcessor"}
    else:
        raise ValueError(f"no tiny checkpoint for depth backend {backend!r}")
    if not full_size:
        _spread_tiny_weights(model, backend)
    model.save_pretrained(str(path))
    (path / "preprocessor_config.json").write_text(json.dumps(pre, indent=1))
    return path


def _spread_tiny_weights(model, backend: str) -> None:
    """Re-draw a tiny model's weights so that its outputs vary across pixels and images.

    Default initialisation makes tiny heads output a constant; here every weight is drawn
    from N(0, 0.1) and the last depth layer is rescaled so that its pre-activation has unit
    spread on a random input. Depth Pro's FoV head is biased to about 55 degrees.
    """
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.1)
        if backend == "depth-anything-v2":
            last = model.head.conv3
            seen = {}
            h = last.register_forward_hook(lambda m, i, o: seen.setdefault("o", o))
            g = torch.Generator().manual_seed(1)
            model(pixel_values=torch.randn(2, 3, 56, 84, generator=g))
            h.remove()
            o = seen["o"]
            sd = float(o.std()) + 1e-8
            last.weight.div_(sd)
            last.bias.sub_(float(o.mean())).div_(sd)
        elif backend == "depth-pro":
            last = model.fov_model.head.layers[-1]
            last.weight.mul_(0.01)
            last.bias.fill_(55.0)
