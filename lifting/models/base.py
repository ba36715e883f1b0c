"""Interfaces and result records of the model stages (depth, segmentation, detection, tagging).

Every backend looks like an Apache Beam `ModelHandler` without Beam: construct it with
plain keyword options (cheap, picklable), call `load()` once per worker, then
`predict(...)` on batches. `predict` does no file I/O. Expected model-setup failures
(package missing, weights missing, device missing) raise a `ModelSetupError` subclass whose
message is one actionable line.

Convention:
    Images are (H, W, 3) uint8 RGB in the stored image's pixel grid. Boxes are
    `bbox_xyxy` in pixel-edge coordinates (pixel i spans [i, i+1], like COCO).
    Depth is z-depth in metres along the camera's +z axis (OpenCV camera frame).
    K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] in pixels of the input image, pixel-centre
    convention of lifting.camera (centre of the top-left pixel is (0, 0)).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


# -- errors -------------------------------------------------------------------------------
class ModelSetupError(RuntimeError):
    """A backend cannot be set up; the message is one line saying what to do."""


class PackageMissingError(ModelSetupError):
    """An optional package a backend needs is not installed (or does not import)."""


class WeightsNotFoundError(ModelSetupError):
    """No weights for a backend: which model, where it looked, how to get them."""


class DeviceUnavailableError(ModelSetupError):
    """The requested device (e.g. cuda) is not available; never silently falls back to CPU."""


# -- results ------------------------------------------------------------------------------
@dataclass
class DepthPrediction:
    """Metric depth, intrinsics and validity of one input image.

    depth: (H, W) float16 z-depth in metres at the INPUT image resolution.
    K: (3, 3) float64 intrinsics of the input image (pixel-centre convention).
    valid: (H, W) bool, True where `depth` is finite, positive and inside the model's range.
    K_source: "dataset" | "exif" | "fov_prior" | "model:<name>".
    depth_source: "sensor" | "model:<name>".
    """

    depth: np.ndarray
    K: np.ndarray
    valid: np.ndarray
    K_source: str
    depth_source: str


@dataclass
class Detection:
    """One open-vocabulary detection: box in pixel-edge xyxy of the input image, prompt label, score in [0, 1]."""

    bbox_xyxy: tuple[float, float, float, float]
    label: str
    score: float


# -- interfaces ---------------------------------------------------------------------------
class _Model:
    """Shared life cycle: options in the constructor, `load()` once, then `predict`."""

    name: str = "model"

    def load(self) -> None:
        """Load weights onto the device; idempotent."""

    @property
    def loaded(self) -> bool:
        return getattr(self, "_loaded", False)

    def _ensure_loaded(self) -> None:
        if not self.loaded:
            self.load()


class DepthEstimator(_Model):
    """Monocular metric depth (+ intrinsics) for a batch of images of any sizes."""

    def predict(
        self,
        images: list[np.ndarray],
        Ks: list[np.ndarray | None],
        focal_35mm: list[float | None] | None = None,
    ) -> list[DepthPrediction]:
        """Depth for each image.

        Args:
            images: list of (H_i, W_i, 3) uint8 RGB images; sizes may differ.
            Ks: per image, the dataset's (3, 3) intrinsics in pixels of that image, or None.
            focal_35mm: per image, the EXIF 35 mm-equivalent focal length (mm), or None.
        Returns:
            one DepthPrediction per image, at that image's resolution.
        """
        raise NotImplementedError


class BoxSegmenter(_Model):
    """Instance masks from box prompts."""

    def predict(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Masks (N, H, W) bool for the (N, 4) pixel-edge boxes of one (H, W, 3) uint8 image."""
        raise NotImplementedError


class OpenVocabDetector(_Model):
    """2D boxes for free-text prompts."""

    def predict(self, image: np.ndarray, prompts: list[str]) -> list[Detection]:
        """Detections in one (H, W, 3) uint8 image; `label` is one of `prompts`."""
        raise NotImplementedError


class Tagger(_Model):
    """Image-level tags (used as detector prompts)."""

    def predict(self, image: np.ndarray, labels: list[str] | None = None) -> list[str]:
        """Tags of one (H, W, 3) uint8 image; `labels` are the dataset's image-level labels if any."""
        raise NotImplementedError


# -- checks and device helpers ------------------------------------------------------------
def check_image(image: np.ndarray) -> np.ndarray:
    """Return `image` as a C-contiguous (H, W, 3) uint8 array; raise ValueError on any other shape/dtype."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {a.shape}")
    if a.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {a.dtype}")
    a = np.ascontiguousarray(a)
    return a if a.flags.writeable else a.copy()  # torch.from_numpy needs a writable array


def check_boxes(boxes_xyxy) -> np.ndarray:
    """Return boxes as an (N, 4) float64 array of pixel-edge (x0, y0, x1, y1); raise ValueError otherwise."""
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    if b.size == 0:
        return b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes_xyxy must be (N, 4), got {b.shape}")
    return b


def resolve_device(device: str | None = "auto"):
    """torch.device for a user device string ("auto", "cpu", "cuda", "cuda:1", "mps").

    "auto" picks cuda when available, else cpu. An explicit accelerator that is not
    available raises DeviceUnavailableError (one line), never a silent fall back to CPU.
    """
    import torch

    dev = (device or "auto").strip().lower()
    if dev == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        d = torch.device(dev)
    except RuntimeError as e:
        raise DeviceUnavailableError(f"unknown device {device!r} ({e}); use auto, cpu, cuda or cuda:N") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"device {device!r} requested but CUDA is not available to this torch "
                f"({torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    elif d.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceUnavailableError(f"device {device!r} requested but MPS is not available")
    return d


def resolve_dtype(device, dtype: str | None = "auto"):
    """torch dtype for inference: "auto" = bfloat16 on CUDA devices that support it, else float32."""
    import torch

    name = (dtype or "auto").lower()
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    table = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
             "fp32": torch.float32, "float32": torch.float32}
    if name not in table:
        raise ValueError(f"dtype must be one of auto, {', '.join(table)}; got {dtype!r}")
    return table[name]


def require_package(import_name: str, backend: str, install_hint: str) -> None:
    """Raise PackageMissingError (one line) unless `import_name` imports cleanly.

    The import is attempted (not just looked up) because some optional packages are
    installed but fail at import time (e.g. segment-anything without a working torchvision).
    """
    import importlib

    try:
        importlib.import_module(import_name)
    except Exception as e:  # noqa: BLE001 - any import-time failure means the backend is unusable
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise PackageMissingError(
            f"{backend}: package {import_name!r} is not usable ({type(e).__name__}: {first[:160]}); "
            f"install it with: {install_hint}"
        ) from None
