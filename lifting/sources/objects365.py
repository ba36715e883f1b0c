"""Objects365 (v1/v2): COCO-format JSON, boxes only, images under `patchN/` folders.

The official JSON names files like `images/v1/patch8/objects365_v1_00420917.jpg`, while
downloads are unpacked in many layouts (`train/patch8/...`, a flat folder...). The image
path is resolved against the images folder by the first rule under which a probed file
exists, then that rule is used for every image (a few stats, never one per image):
    0. IMAGES/file_name
    1. IMAGES/patchN/basename   (the patch folder named in file_name)
    2. IMAGES/basename
With no hit among the first `PROBE_LIMIT` images, rule 0 is used.
Class names ("Sneakers", "Cabinet/shelf", "Moniter/TV") are normalised by
`lifting.sources.categories`; `isfake` / `isreflected` flags stay in `attributes`.
Everything else is as in `lifting.sources.coco` (the JSON is streamed when large).
"""
from __future__ import annotations

import os
import re

from lifting import storage
from lifting.sources.coco import CocoSource

PROBE_LIMIT = 20
_PATCH = re.compile(r"^patch\d+$")


def path_candidates(images_dir: str, file_name: str) -> list[str]:
    """Candidate absolute paths of an Objects365 file_name, in rule order (module docstring)."""
    parts = file_name.replace("\\", "/").split("/")
    base = parts[-1]
    patch = next((p for p in parts[:-1] if _PATCH.match(p)), None)
    out = [storage.normpath(storage.join(images_dir, file_name))]
    out.append(storage.join(images_dir, patch, base) if patch else None)
    out.append(storage.join(images_dir, base))
    return out


class Objects365Source(CocoSource):
    """Objects365 JSON + image root (options as `CocoSource`)."""

    name = "objects365"

    def __init__(self, annotations=None, images=None, **kw):
        kw.setdefault("check_mask_area", False)
        super().__init__(annotations=annotations, images=images, **kw)
        self._rule: int | None = None
        self._misses = 0

    def resolve_image_path(self, file_name: str) -> str:
        if self.images is None or os.path.isabs(file_name):
            return self.image_path(file_name)
        cands = path_candidates(self.images, file_name)
        if self._rule is not None:
            return cands[self._rule] or cands[0]
        for rule, p in enumerate(cands):
            if p is not None and storage.isfile(p):
                self._rule = rule
                return p
        self._misses += 1
        if self._misses >= PROBE_LIMIT:
            self._rule = 0
        return cands[0]
