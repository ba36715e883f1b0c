"""Box-prompted instance segmentation: SAM through transformers (default) or the official package.

`sam` uses transformers' SamModel + the slow SamImageProcessor (no torchvision): the image
is encoded once and all box prompts of the image are decoded in batches of
`max_boxes_per_pass`. `sam-official` uses the `segment-anything` package (which imports
torchvision, hence optional and guarded). Datasets with their own masks use the
`annotation` backend, which is no model at all (`get_segmenter` returns None).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from lifting.models.base import BoxSegmenter, check_boxes, check_image, require_package, resolve_device, resolve_dtype
from lifting.models.weights import resolve_weights

log = logging.getLogger(__name__)

SAM_REPOS = {"base": "facebook/sam-vit-base", "large": "facebook/sam-vit-large", "huge": "facebook/sam-vit-huge"}
SAM_OFFICIAL_URLS = {
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
}


def clip_boxes(boxes_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """(N, 4) pixel-edge boxes clipped to a W x H image, with x1 >= x0 + 1 and y1 >= y0 + 1 pixel."""
    b = check_boxes(boxes_xyxy).copy()
    b[:, [0, 2]] = np.clip(b[:, [0, 2]], 0.0, width)
    b[:, [1, 3]] = np.clip(b[:, [1, 3]], 0.0, height)
    b[:, 2] = np.maximum(b[:, 2], np.minimum(b[:, 0] + 1.0, width))
    b[:, 3] = np.maximum(b[:, 3], np.minimum(b[:, 1] + 1.0, height))
    b[:, 0] = np.minimum(b[:, 0], b[:, 2] - 1.0).clip(0.0)
    b[:, 1] = np.minimum(b[:, 1], b[:, 3] - 1.0).clip(0.0)
    return b


class SamSegmenter(BoxSegmenter):
    """SAM (ViT-B/L/H, or any SamModel checkpoint such as SAM-HQ ports) via transformers.

    Options: size "base" | "large" | "huge" (picks the Hugging Face repository), weights
    (local folder), device, dtype, max_boxes_per_pass, mask_threshold (logit threshold, 0).
    """

    name = "sam"

    def __init__(self, size: str = "huge", weights: str | None = None, device: str = "auto", dtype: str = "auto",
                 max_boxes_per_pass: int = 64, mask_threshold: float = 0.0, allow_download: bool | None = None):
        if size not in SAM_REPOS:
            raise ValueError(f"sam: size must be one of {', '.join(SAM_REPOS)}, got {size!r}")
        self.repo_id = SAM_REPOS[size]
        self.weights = weights
        self.device_str, self.dtype_str = device, dtype
        self.max_boxes_per_pass = int(max_boxes_per_pass)
        self.mask_threshold = float(mask_threshold)
        self.allow_download = allow_download
        self._loaded = False

    def load(self) -> None:
        """Resolve weights, load SamModel and the slow SamImageProcessor (idempotent)."""
        if self._loaded:
            return
        from transformers import SamImageProcessor, SamModel, SamProcessor

        from lifting.models.depth import _dtype_kw

        self.device = resolve_device(self.device_str)
        self.torch_dtype = resolve_dtype(self.device, self.dtype_str)
        path = resolve_weights(self.name, self.repo_id, self.weights, allow_download=self.allow_download)
        self.model = SamModel.from_pretrained(str(path), **_dtype_kw(self.torch_dtype)).to(self.device).eval()
        if (Path(path) / "preprocessor_config.json").is_file():
            ip = SamImageProcessor.from_pretrained(str(path))
        else:
            ip = SamImageProcessor()
        self.processor = SamProcessor(ip)
        self._loaded = True

    def predict(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Masks (N, H, W) bool for the (N, 4) pixel-edge boxes of one (H, W, 3) uint8 image."""
        return self.predict_with_scores(image, boxes_xyxy)[0]

    def predict_with_scores(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(masks (N, H, W) bool, predicted mask IoU (N,) float32) for the boxes of one image."""
        import torch

        self._ensure_loaded()
        image = check_image(image)
        H, W = image.shape[:2]
        boxes = clip_boxes(boxes_xyxy, W, H)
        n = len(boxes)
        if n == 0:
            return np.zeros((0, H, W), dtype=bool), np.zeros((0,), dtype=np.float32)
        inputs = self.processor(images=image, return_tensors="pt")
        masks = np.zeros((n, H, W), dtype=bool)
        scores = np.zeros((n,), dtype=np.float32)
        with torch.inference_mode():
            emb = self.model.get_image_embeddings(inputs["pixel_values"].to(self.device, self.torch_dtype))
            for s in range(0, n, self.max_boxes_per_pass):
                chunk = boxes[s:s + self.max_boxes_per_pass]
                ib = self._scale_boxes(chunk, inputs)  # as SamProcessor does: to the resized frame
                out = self.model(image_embeddings=emb, input_boxes=ib.to(self.device, self.torch_dtype),
                                 multimask_output=False)
                up = self.processor.image_processor.post_process_masks(
                    out.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"],
                    mask_threshold=self.mask_threshold, binarize=True)[0]  # (n, 1, H, W)
                masks[s:s + len(chunk)] = up[:, 0].numpy().astype(bool)
                scores[s:s + len(chunk)] = out.iou_scores[0, :, 0].float().cpu().numpy()
        return masks, scores

    @staticmethod
    def _scale_boxes(boxes: np.ndarray, inputs):
        """(1, n, 4) float32 tensor of boxes in the resized (longest side = target) input frame."""
        import torch

        oh, ow = (int(v) for v in inputs["original_sizes"][0])
        rh, rw = (int(v) for v in inputs["reshaped_input_sizes"][0])
        sx, sy = rw / ow, rh / oh
        b = torch.as_tensor(boxes, dtype=torch.float32).clone()
        b[:, [0, 2]] *= sx
        b[:, [1, 3]] *= sy
        return b[None]


class SamOfficialSegmenter(BoxSegmenter):
    """SAM through Meta's `segment-anything` package (optional: it imports torchvision).

    weights: path of the official checkpoint (sam_vit_h_4b8939.pth etc.); model_type
    vit_h | vit_l | vit_b (guessed from the file name when not given).
    """

    name = "sam-official"
    install_hint = "pip install 'segment-anything' (needs a torchvision matching your torch)"

    def __init__(self, weights: str | None = None, model_type: str | None = None, device: str = "auto",
                 mask_threshold: float = 0.0, **_ignored):
        self.weights = weights
        self.model_type = model_type
        self.device_str = device
        self.mask_threshold = mask_threshold
        self._loaded = False

    def load(self) -> None:
        """Import segment_anything, load the checkpoint from a local file."""
        if self._loaded:
            return
        require_package("segment_anything", self.name, self.install_hint)
        from segment_anything import SamPredictor, sam_model_registry

        mt = self.model_type or next((k for k in SAM_OFFICIAL_URLS if self.weights and k in Path(self.weights).name), "vit_h")
        path = resolve_weights(self.name, None, self.weights, filename=Path(SAM_OFFICIAL_URLS[mt]).name,
                               url=SAM_OFFICIAL_URLS[mt], allow_download=False)
        self.device = resolve_device(self.device_str)
        sam = sam_model_registry[mt](checkpoint=str(path)).to(self.device).eval()
        self.predictor = SamPredictor(sam)
        self._loaded = True

    def predict(self, image: np.ndarray, boxes_xyxy: np.ndarray) -> np.ndarray:
        """Masks (N, H, W) bool for the (N, 4) pixel-edge boxes of one (H, W, 3) uint8 image."""
        import torch

        self._ensure_loaded()
        image = check_image(image)
        H, W = image.shape[:2]
        boxes = clip_boxes(boxes_xyxy, W, H)
        if len(boxes) == 0:
            return np.zeros((0, H, W), dtype=bool)
        with torch.inference_mode():
            self.predictor.set_image(image)
            tb = self.predictor.transform.apply_boxes_torch(torch.as_tensor(boxes, device=self.device), (H, W))
            m, _, _ = self.predictor.predict_torch(None, None, boxes=tb, multimask_output=False, return_logits=True)
        return (m[:, 0] > self.mask_threshold).cpu().numpy()


def tiny_random_checkpoint(path, seed: int = 0, image_size: int = 128) -> Path:
    """Save a tiny random-initialised SamModel (+ a matching slow image processor) into `path`.

    Same architecture classes as SAM ViT-B/L/H with a 2-layer 32-wide image encoder on
    `image_size`-pixel inputs; for tests and demos. Returns the folder.
    """
    import torch
    from transformers import SamConfig, SamImageProcessor, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, \
        SamVisionConfig

    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vc = SamVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, output_channels=16,
                         image_size=image_size, patch_size=16, global_attn_indexes=[1], window_size=4, num_pos_feats=8)
    pc = SamPromptEncoderConfig(hidden_size=16, image_size=image_size, patch_size=16, mask_input_channels=4)
    mc = SamMaskDecoderConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_dim=32,
                              iou_head_hidden_dim=16)
    model = SamModel(SamConfig(vision_config=vc, prompt_encoder_config=pc, mask_decoder_config=mc))
    model.save_pretrained(str(path))
    m = image_size // 4
    SamImageProcessor(size={"longest_edge": image_size}, pad_size={"height": image_size, "width": image_size},
                      mask_size={"longest_edge": m}, mask_pad_size={"height": m, "width": m}).save_pretrained(str(path))
    json.loads((path / "preprocessor_config.json").read_text())  # written and readable
    return path
