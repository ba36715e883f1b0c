"""The per-image PNG: photo with wireframes | bird's-eye view | objects and QA pairs.

Objects are numbered the same way (#1, #2, ...) in the three parts, so a QA answer, a
footprint and a wireframe can be told apart at a glance.
"""
from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from lifting.boxes import DEFAULT_GRAVITY
from lifting.camera import scale_K
from lifting.evaluate import record_box
from lifting.viz.bev import render_bev
from lifting.viz.wireframe import REJECTED_COLOR, annotate, category_color, font

log = logging.getLogger(__name__)

TEXT = (30, 30, 30)
MUTED = (110, 110, 110)


def decode_photo(jpg: bytes | None, record: dict) -> Image.Image:
    """The stored photo as RGB, or a grey placeholder of the record's size when absent/undecodable."""
    if jpg:
        try:
            return Image.open(io.BytesIO(jpg)).convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            log.warning("cannot decode image of %s: %s", record.get("key"), e)
    return Image.new("RGB", (int(record.get("width") or 640), int(record.get("height") or 480)), (200, 200, 200))


def _wrap(text: str, fnt, width_px: int, draw: ImageDraw.ImageDraw) -> list[str]:
    lines: list[str] = []
    for para in str(text).split("\n"):
        cur = ""
        for word in para.split(" "):
            cand = word if not cur else cur + " " + word
            if draw.textlength(cand, font=fnt) <= width_px or not cur:
                cur = cand
            else:
                lines.append(cur)
                cur = word
        lines.append(cur)
    return lines


def render_text_panel(record: dict, questions: list[dict], size: tuple[int, int]) -> Image.Image:
    """Objects (kept with dimensions, rejected with reason) and QA pairs as text, (W, H) RGB."""
    w, h = size
    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    f_head, f_body = font(15), font(12)
    y = 8
    line_h = 15

    def put(text: str, color=TEXT, fnt=f_body, indent: int = 8) -> bool:
        nonlocal y
        for ln in _wrap(text, fnt, w - indent - 8, draw):
            if y + line_h > h - 4:
                return False
            draw.text((indent, y), ln, fill=color, font=fnt)
            y += line_h
        return True

    put(str(record.get("key", "")), TEXT, f_head)
    y += 2
    status = record.get("status", "lifted")
    put(f"{record.get('source', '?')} · {record.get('width')}x{record.get('height')} px · K: {record.get('K_source', '?')}"
        f" · depth: {record.get('depth_source', '?')} · {status}" + (f" ({record.get('reason')})" if record.get("reason") else ""),
        MUTED)
    y += 4
    for o in record.get("objects") or []:
        box = record_box(o) if o.get("status", "kept") == "kept" else None
        if box is None:
            ok = put(f"#{o['_index']} {o.get('category', '?')} rejected: {o.get('reason') or 'no box'}", REJECTED_COLOR)
        else:
            q = o.get("quality") or {}
            extra = f" · proj IoU {q['proj_iou']:.2f}" if isinstance(q.get("proj_iou"), (int, float)) else ""
            ok = put(f"#{o['_index']} {o.get('category', '?')} {box.dimensions[0]:.2f}x{box.dimensions[1]:.2f}x"
                     f"{box.dimensions[2]:.2f} m · z {box.center_cam[2]:.2f} m{extra}", category_color(str(o.get('category', '?'))))
        if not ok:
            break
    y += 6
    if not questions:
        put("(no QA pairs for this image)", MUTED)
    for n, q in enumerate(questions):
        if y + 3 * line_h > h:
            put(f"... {len(questions) - n} more QA pairs", MUTED)
            break
        put(f"[{q.get('family', '?')} / {q.get('form', '?')}]", MUTED)
        put("Q: " + str(q.get("question", "")), TEXT, indent=14)
        put("A: " + str(q.get("answer_text", "")), (20, 90, 20), indent=14)
        y += 3
    return img


def render_panel(record: dict, jpg: bytes | None, questions: list[dict], max_height: int = 540,
                 text_width: int = 460) -> Image.Image:
    """The per-image PNG (RGB): photo + wireframes, bird's-eye view, objects and QA text.

    Args:
        record: image record (schemas/image_record.schema.json).
        jpg: the stored photo bytes or None.
        questions: QA question dicts of this image (schemas/qa_sample.schema.json items).
        max_height: the photo is scaled (down or up) to this many pixels high, so labels
            stay legible on small images and panels stay small for large ones.
    """
    photo = decode_photo(jpg, record)
    W, H = photo.size
    s = max_height / H
    size = (max(1, round(W * s)), max(1, round(H * s)))
    if size != (W, H):
        photo = photo.resize(size, Image.BILINEAR)
    objects = []
    for i, o in enumerate(record.get("objects") or []):
        o = dict(o, _index=i + 1)
        if o.get("bbox_xyxy"):
            o["bbox_xyxy"] = [float(v) * (size[0] / W if k % 2 == 0 else size[1] / H) for k, v in enumerate(o["bbox_xyxy"])]
        objects.append(o)
    K = record.get("K")
    K_img = scale_K(np.asarray(K, dtype=np.float64), (W, H), size) if K is not None else None
    if K_img is not None:
        photo = annotate(photo, objects, K_img)
    g = record.get("gravity_cam") or DEFAULT_GRAVITY
    boxes = [(o["_index"], str(o.get("category", "?")), record_box(o) if o.get("status", "kept") == "kept" else None)
             for o in objects]
    panel_h = max(size[1], 320)
    bev = render_bev(boxes, np.asarray(K, dtype=np.float64) if K is not None else None, (W, H), g, size=panel_h)
    text = render_text_panel(dict(record, objects=objects), questions, (text_width, panel_h))
    out = Image.new("RGB", (size[0] + panel_h + text_width + 8, panel_h), (255, 255, 255))
    out.paste(photo, (0, 0))
    out.paste(bev, (size[0] + 4, 0))
    out.paste(text, (size[0] + panel_h + 8, 0))
    return out
