"""Image-level tags used as open-vocabulary detector prompts: the dataset's own labels, or RAM.

`labels` returns the dataset's image-level labels (cleaned, de-duplicated). `ram` runs the
Recognize Anything Model (the `recognize-anything` package, not on PyPI, imports
torchvision: optional and guarded); its 384 x 384 pre-processing is done here in torch so
that only the model itself comes from the package.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lifting.models.base import Tagger, check_image, require_package, resolve_device
from lifting.models.weights import resolve_weights

log = logging.getLogger(__name__)


def clean_tags(tags) -> list[str]:
    """Tags stripped, whitespace-collapsed, lower-cased, empties dropped, de-duplicated in first-seen order."""
    out: list[str] = []
    for t in tags or []:
        t = " ".join(str(t).strip().lower().split())
        if t and t not in out:
            out.append(t)
    return out


class LabelsTagger(Tagger):
    """The dataset's image-level labels (OpenImages' human-verified labels, folder names, ...). No model."""

    name = "labels"

    def __init__(self, **_ignored):
        self._loaded = True

    def predict(self, image: np.ndarray, labels: list[str] | None = None) -> list[str]:
        """`labels` cleaned (see clean_tags); the image is not looked at."""
        return clean_tags(labels)


class RamTagger(Tagger):
    """Recognize Anything (RAM++ by default) through the `recognize-anything` package.

    The returned tags are the dataset's labels (if any) followed by RAM's tags, cleaned.
    Options: weights (checkpoint file), variant "ram_plus" | "ram", image_size (384).
    """

    name = "ram"
    install_hint = "pip install 'git+https://github.com/xinyu1205/recognize-anything.git' (needs torchvision)"
    CHECKPOINTS = {
        "ram_plus": ("xinyu1205/recognize-anything-plus-model", "ram_plus_swin_large_14m.pth"),
        "ram": ("xinyu1205/recognize_anything_model", "ram_swin_large_14m.pth"),
    }

    def __init__(self, weights: str | None = None, variant: str = "ram_plus", device: str = "auto",
                 image_size: int = 384, allow_download: bool | None = None, **_ignored):
        if variant not in self.CHECKPOINTS:
            raise ValueError(f"ram: variant must be one of {', '.join(self.CHECKPOINTS)}, got {variant!r}")
        self.weights = weights
        self.variant = variant
        self.device_str = device
        self.image_size = int(image_size)
        self.allow_download = allow_download
        self._loaded = False

    def load(self) -> None:
        """Import the `ram` package and load the checkpoint (idempotent)."""
        if self._loaded:
            return
        require_package("ram.models", self.name, self.install_hint)
        import ram.models as ram_models

        repo_id, filename = self.CHECKPOINTS[self.variant]
        path = resolve_weights(self.name, repo_id, self.weights, filename=filename, allow_download=self.allow_download)
        self.device = resolve_device(self.device_str)
        build = getattr(ram_models, self.variant)
        self.model = build(pretrained=str(path), image_size=self.image_size, vit="swin_l").to(self.device).eval()
        self._loaded = True

    def _pixels(self, image: np.ndarray):
        """(1, 3, S, S) float32 ImageNet-normalised tensor of an (H, W, 3) uint8 image, S = image_size."""
        import torch
        import torch.nn.functional as F

        t = torch.from_numpy(image).to(self.device).permute(2, 0, 1)[None].float().div_(255.0)
        t = F.interpolate(t, size=(self.image_size, self.image_size), mode="bicubic", align_corners=False,
                          antialias=True).clamp_(0, 1)
        mean = torch.tensor([0.485, 0.456, 0.406], device=self.device).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225], device=self.device).view(1, 3, 1, 1)
        return (t - mean) / std

    def predict(self, image: np.ndarray, labels: list[str] | None = None) -> list[str]:
        """The dataset labels followed by RAM's English tags for one (H, W, 3) uint8 image."""
        import torch

        self._ensure_loaded()
        image = check_image(image)
        with torch.inference_mode():
            tags_en = self.model.generate_tag(self._pixels(image))[0]
        first = tags_en[0] if isinstance(tags_en, (list, tuple)) else tags_en
        return clean_tags(list(labels or []) + str(first).split("|"))


def checkpoint_hint(variant: str = "ram_plus") -> str:
    """Where RAM checkpoints live, for messages."""
    repo, fn = RamTagger.CHECKPOINTS[variant]
    return str(Path(repo) / fn)
