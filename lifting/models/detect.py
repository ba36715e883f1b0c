"""Open-vocabulary 2D detection (OWLv2, Grounding DINO through transformers), NMS and de-duplication.

Boxes are pixel-edge (x0, y0, x1, y1) in the input image; `Detection.label` is the prompt
that produced the box (not the prompt template). Class-aware NMS is hand-written in numpy:
torchvision's `nms` is unusable on these machines (DESIGN.md) and ~20 lines of numpy do it.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from lifting.models.base import Detection, OpenVocabDetector, check_boxes, check_image, resolve_device, resolve_dtype
from lifting.models.weights import resolve_weights

log = logging.getLogger(__name__)


# -- box utilities --------------------------------------------------------------------------
def iou_matrix(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> np.ndarray:
    """(N, M) IoU between (N, 4) and (M, 4) pixel-edge boxes (empty boxes have IoU 0)."""
    a, b = check_boxes(a_xyxy), check_boxes(b_xyxy)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = ix * iy
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms_indices(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_thresh: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, in decreasing score order.

    A box is dropped when its IoU with an already kept, higher-scoring box is > iou_thresh.
    """
    b = check_boxes(boxes_xyxy)
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    if len(order) == 0:
        return order
    iou = iou_matrix(b[order], b[order])
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_thresh
    return order[np.asarray(keep, dtype=np.int64)]


def nms(detections: list[Detection], iou_thresh: float = 0.5, class_aware: bool = True) -> list[Detection]:
    """Detections surviving NMS (per label when class_aware), sorted by decreasing score."""
    if not detections:
        return []
    boxes = np.array([d.bbox_xyxy for d in detections], dtype=np.float64)
    scores = np.array([d.score for d in detections], dtype=np.float64)
    if class_aware:
        labels = sorted({d.label for d in detections})
        keep = np.concatenate([
            idx[nms_indices(boxes[idx], scores[idx], iou_thresh)]
            for idx in (np.flatnonzero([d.label == lab for d in detections]) for lab in labels)
        ])
    else:
        keep = nms_indices(boxes, scores, iou_thresh)
    return sorted((detections[i] for i in keep), key=lambda d: -d.score)


def deduplicate(detections: list[Detection], existing_boxes_xyxy, iou_thresh: float = 0.5,
                existing_labels: list[str] | None = None) -> list[Detection]:
    """Detections that do not duplicate a box the dataset already has.

    A detection is dropped when its IoU with any existing (M, 4) pixel-edge box is
    >= iou_thresh; with `existing_labels` (M,), only existing boxes of the same label count.
    """
    existing = check_boxes(existing_boxes_xyxy)
    if not detections or len(existing) == 0:
        return list(detections)
    boxes = np.array([d.bbox_xyxy for d in detections], dtype=np.float64)
    iou = iou_matrix(boxes, existing)
    if existing_labels is not None:
        if len(existing_labels) != len(existing):
            raise ValueError("existing_labels must have one label per existing box")
        same = np.array([[d.label == lab for lab in existing_labels] for d in detections], dtype=bool)
        iou = np.where(same, iou, 0.0)
    return [d for d, m in zip(detections, iou.max(axis=1)) if m < iou_thresh]


def _clean_prompts(prompts: list[str]) -> list[str]:
    out = []
    for p in prompts:
        p = " ".join(str(p).strip().split())
        if p and p not in out:
            out.append(p)
    return out


def _finish(boxes: np.ndarray, scores: np.ndarray, labels: list[str], width: int, height: int,
            nms_iou: float | None, max_detections: int, min_box_px: float) -> list[Detection]:
    """Clip (N, 4) boxes to the W x H image, drop tiny ones, NMS per label, keep the best `max_detections`."""
    dets = []
    for b, s, lab in zip(boxes, scores, labels):
        x0, x1 = np.clip([b[0], b[2]], 0.0, width)
        y0, y1 = np.clip([b[1], b[3]], 0.0, height)
        if x1 <= x0 or y1 <= y0 or x1 - x0 < min_box_px or y1 - y0 < min_box_px:  # e.g. boxes in the padding
            continue
        dets.append(Detection((float(x0), float(y0), float(x1), float(y1)), lab, float(s)))
    if nms_iou is not None:
        dets = nms(dets, nms_iou, class_aware=True)
    else:
        dets.sort(key=lambda d: -d.score)
    return dets[:max_detections]


class _HFDetector(OpenVocabDetector):
    def __init__(self, weights: str | None = None, device: str = "auto", dtype: str = "auto",
                 score_threshold: float = 0.3, nms_iou: float | None = 0.5, max_detections: int = 100,
                 min_box_px: float = 2.0, allow_download: bool | None = None):
        self.weights = weights
        self.device_str, self.dtype_str = device, dtype
        self.score_threshold = float(score_threshold)
        self.nms_iou = nms_iou
        self.max_detections = int(max_detections)
        self.min_box_px = float(min_box_px)
        self.allow_download = allow_download
        self._loaded = False

    def _resolve(self):
        self.device = resolve_device(self.device_str)
        self.torch_dtype = resolve_dtype(self.device, self.dtype_str)
        return resolve_weights(self.name, self.repo_id, self.weights, allow_download=self.allow_download)


class Owlv2Detector(_HFDetector):
    """OWLv2 (Owlv2ForObjectDetection + the slow Owlv2ImageProcessor, which pads to a square).

    Each prompt p becomes the text query `prompt_template.format(p)`; a box's label is the
    prompt with the highest score. Options: score_threshold (0.3), nms_iou (0.5),
    max_detections (100), prompt_template ("a photo of a {}").
    """

    name = "owlv2"
    repo_id = "google/owlv2-base-patch16-ensemble"

    def __init__(self, prompt_template: str = "a photo of a {}", score_threshold: float = 0.3, **kw):
        super().__init__(score_threshold=score_threshold, **kw)
        self.prompt_template = prompt_template

    def load(self) -> None:
        """Resolve weights; load the model, tokenizer and slow image processor (idempotent)."""
        if self._loaded:
            return
        from transformers import AutoTokenizer, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

        from lifting.models.depth import _dtype_kw

        path = self._resolve()
        self.model = Owlv2ForObjectDetection.from_pretrained(str(path), **_dtype_kw(self.torch_dtype)).to(self.device).eval()
        self.processor = Owlv2Processor(image_processor=Owlv2ImageProcessor.from_pretrained(str(path)),
                                        tokenizer=AutoTokenizer.from_pretrained(str(path)))
        self.max_text_len = int(self.model.config.text_config.max_position_embeddings)
        self._loaded = True

    def predict(self, image: np.ndarray, prompts: list[str]) -> list[Detection]:
        """Detections (pixel-edge xyxy of the input image) for the prompts in one (H, W, 3) uint8 image."""
        import torch

        self._ensure_loaded()
        image = check_image(image)
        H, W = image.shape[:2]
        prompts = _clean_prompts(prompts)
        if not prompts:
            return []
        queries = [self.prompt_template.format(p) for p in prompts]
        inputs = self.processor(text=[queries], images=image, return_tensors="pt", padding="max_length",
                                max_length=self.max_text_len, truncation=True)
        inputs = {k: (v.to(self.device, self.torch_dtype) if v.is_floating_point() else v.to(self.device))
                  for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.model(**inputs)
        side = max(H, W)  # boxes are relative to the padded square (bottom/right padding)
        out.logits, out.pred_boxes = out.logits.float(), out.pred_boxes.float()
        res = self.processor.image_processor.post_process_object_detection(
            out, threshold=self.score_threshold, target_sizes=torch.tensor([[side, side]]))[0]
        return _finish(res["boxes"].cpu().numpy(), res["scores"].cpu().numpy(),
                       [prompts[int(i)] for i in res["labels"].cpu()], W, H,
                       self.nms_iou, self.max_detections, self.min_box_px)


class GroundingDinoDetector(_HFDetector):
    """Grounding DINO (GroundingDinoForObjectDetection, slow GroundingDinoImageProcessor, BERT tokenizer).

    Prompts are joined as "p1 . p2 . ... ." (lower case) in chunks that fit the text length;
    each prompt's score for a box is the maximum token probability over the prompt's tokens,
    and the box takes the best prompt when that score is >= score_threshold (the usual
    box_threshold, 0.35).
    """

    name = "grounding-dino"
    repo_id = "IDEA-Research/grounding-dino-base"

    def __init__(self, size: str = "base", score_threshold: float = 0.35, **kw):
        super().__init__(score_threshold=score_threshold, **kw)
        if size not in ("tiny", "base"):
            raise ValueError(f"grounding-dino: size must be tiny or base, got {size!r}")
        self.repo_id = f"IDEA-Research/grounding-dino-{size}"

    def load(self) -> None:
        """Resolve weights; load the model, tokenizer and slow image processor (idempotent)."""
        if self._loaded:
            return
        from transformers import AutoTokenizer, GroundingDinoForObjectDetection, GroundingDinoImageProcessor

        from lifting.models.depth import _dtype_kw

        path = self._resolve()
        self.model = GroundingDinoForObjectDetection.from_pretrained(
            str(path), **_dtype_kw(self.torch_dtype)).to(self.device).eval()
        self.image_processor = GroundingDinoImageProcessor.from_pretrained(str(path))
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.max_text_len = int(self.model.config.max_text_len)
        self._loaded = True

    def _chunks(self, prompts: list[str]) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """Token ids ([CLS] p1 . p2 . ... [SEP]) and each prompt's token span, in chunks of <= max_text_len."""
        tok = self.tokenizer
        dot = tok.convert_tokens_to_ids(".")
        chunks, ids, spans = [], [tok.cls_token_id], []
        for p in prompts:
            pid = tok(p.lower(), add_special_tokens=False)["input_ids"][: self.max_text_len - 3]
            if len(ids) + len(pid) + 2 > self.max_text_len and spans:
                chunks.append((ids + [tok.sep_token_id], spans))
                ids, spans = [tok.cls_token_id], []
            spans.append((len(ids), len(ids) + len(pid)))
            ids = ids + pid + [dot]
        chunks.append((ids + [tok.sep_token_id], spans))
        return chunks

    def predict(self, image: np.ndarray, prompts: list[str]) -> list[Detection]:
        """Detections (pixel-edge xyxy of the input image) for the prompts in one (H, W, 3) uint8 image."""
        import torch

        self._ensure_loaded()
        image = check_image(image)
        H, W = image.shape[:2]
        prompts = _clean_prompts(prompts)
        if not prompts:
            return []
        pix = self.image_processor(images=image, return_tensors="pt")
        pv = pix["pixel_values"].to(self.device, self.torch_dtype)
        pm = pix["pixel_mask"].to(self.device)
        all_boxes, all_scores, all_labels = [], [], []
        start = 0
        for ids, spans in self._chunks(prompts):
            input_ids = torch.tensor([ids], device=self.device)
            with torch.inference_mode():
                out = self.model(pixel_values=pv, pixel_mask=pm, input_ids=input_ids,
                                 attention_mask=torch.ones_like(input_ids), token_type_ids=torch.zeros_like(input_ids))
            prob = out.logits[0].float().sigmoid()  # (Q, max_text_len) token probabilities
            per_prompt = torch.stack([prob[:, a:b].max(dim=1).values for a, b in spans], dim=1)  # (Q, P)
            score, best = per_prompt.max(dim=1)
            keep = score >= self.score_threshold
            cx, cy, w, h = out.pred_boxes[0].float()[keep].unbind(-1)  # normalised to the image
            boxes = torch.stack([(cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H], dim=-1)
            all_boxes.append(boxes.cpu().numpy())
            all_scores.append(score[keep].cpu().numpy())
            all_labels += [prompts[start + int(i)] for i in best[keep].cpu()]
            start += len(spans)
        return _finish(np.concatenate(all_boxes), np.concatenate(all_scores), all_labels, W, H,
                       self.nms_iou, self.max_detections, self.min_box_px)


# -- tiny random checkpoints (tests, demos) -------------------------------------------------
TINY_WORDS = ["a", "photo", "of", "cat", "dog", "person", "chair", "table", "dining", "car", "tv", "bottle"]


def _clip_bpe_files(folder: Path, words: list[str]) -> None:
    """A minimal CLIP BPE vocabulary (vocab.json + merges.txt) that spells `words` as single tokens."""
    # id 0 is an ordinary token as in CLIP's vocabulary: OWL treats queries whose first id is 0 as padding
    vocab: dict[str, int] = {"!": 0, "<|startoftext|>": 1, "<|endoftext|>": 2}
    merges: list[str] = []
    for ch in sorted(set("".join(words))):
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    for w in words:
        cur = list(w[:-1]) + [w[-1] + "</w>"]
        while len(cur) > 1:
            a, b = cur[0], cur[1]
            if f"{a} {b}" not in merges:
                merges.append(f"{a} {b}")
            vocab.setdefault(a + b, len(vocab))
            cur = [a + b] + cur[2:]
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")


def tiny_random_checkpoint(backend: str, path, seed: int = 0) -> Path:
    """Save a tiny random-initialised OWLv2 or Grounding DINO (+ tokenizer and slow image processor) into `path`.

    backend: "owlv2" | "grounding-dino". The tokenizer knows TINY_WORDS. Returns the folder.
    """
    import torch
    from transformers import BertConfig, BertTokenizer, CLIPTokenizer, GroundingDinoConfig, \
        GroundingDinoForObjectDetection, GroundingDinoImageProcessor, Owlv2Config, Owlv2ForObjectDetection, \
        Owlv2ImageProcessor, SwinConfig

    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if backend == "owlv2":
        _clip_bpe_files(path, TINY_WORDS)
        tok = CLIPTokenizer(str(path / "vocab.json"), str(path / "merges.txt"))
        cfg = Owlv2Config(
            text_config=dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=2, max_position_embeddings=16, bos_token_id=1, eos_token_id=2,
                             pad_token_id=2),
            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               image_size=64, patch_size=16),
            projection_dim=32)
        model = Owlv2ForObjectDetection(cfg)
        with torch.no_grad():  # spread the logits so that some boxes pass a threshold
            for p in model.parameters():
                p.normal_(0.0, 0.2)
        ip = Owlv2ImageProcessor(size={"height": 64, "width": 64})
    elif backend == "grounding-dino":
        words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "."] + TINY_WORDS
        (path / "vocab.txt").write_text("\n".join(words) + "\n")
        tok = BertTokenizer(str(path / "vocab.txt"))
        bb = SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64,
                        out_features=["stage2", "stage3", "stage4"])
        tc = BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
        cfg = GroundingDinoConfig(backbone_config=bb, text_config=tc, d_model=32, encoder_layers=1, decoder_layers=1,
                                  encoder_ffn_dim=32, decoder_ffn_dim=32, encoder_attention_heads=2,
                                  decoder_attention_heads=2, num_queries=20, num_feature_levels=4, encoder_n_points=2,
                                  decoder_n_points=2, max_text_len=32)
        model = GroundingDinoForObjectDetection(cfg)
        ip = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    else:
        raise ValueError(f"no tiny checkpoint for detector backend {backend!r}")
    model.save_pretrained(str(path))
    tok.save_pretrained(str(path))
    ip.save_pretrained(str(path))
    return path
