"""COCO-format instances JSON (COCO, and the base of Objects365 and Omni3D readers).

Input: `{"images": [...], "annotations": [...], "categories": [...]}` in any key order.
Images: `id`, `file_name` (relative to the images folder), `width`, `height`; every other
field (license, coco_url, ...) goes to `ImageRecord.extra`. Annotations: `id`,
`image_id`, `category_id`, `bbox` [x, y, w, h] in pixel edges, optional `segmentation`
(polygon list, or RLE dict with list or string counts), `iscrowd`; other scalar fields go
to `Object2D.attributes`. Segmentation is kept exactly as given.

Files up to `in_memory_bytes` are read with `json.load`; larger ones are streamed with
ijson (C backend), one pass for `categories`, one for `images`, one for `annotations`,
so the key order does not matter and no whole list is ever held in memory.
Python's json writes NaN / Infinity as bare tokens, which ijson rejects: streamed files
pass through `NonFiniteToNull`, which turns such value tokens into null (then caught as
`bbox_malformed` etc.) - json.load of small files reads them as float nan (`bbox_nonfinite`).
Lone-surrogate escapes ("\\udcff"), which ijson's C backend refuses, become U+FFFD there;
json.load keeps them and the checks below refuse them (`image_path_invalid`, ids).
Both paths are bounded: a file nesting deeper than `json_depth.MAX_JSON_DEPTH` levels is
refused before the parser sees that level, and `images` / `annotations` / `categories` that
are present but not lists (an object keyed by id) are one SourceConfigError line, never an
input read as empty.

Reason codes (level): image_malformed, image_missing_field, image_bad_size,
duplicate_image_id, image_path_invalid / image_path_outside_root (file names that are not
valid UTF-8, hold NUL, or escape the images folder: see `Source.path_problem`),
duplicate_key (two ids with the same shard key, e.g. 7 and "7": lifting.sources.index),
image_missing / image_empty / image_unreadable (check_files) (image);
ann_malformed, ann_missing_field, ann_id_invalid (no id, or one that is not an integer /
integral float / non-empty string), unknown_image_id, duplicate_annotation_id (also 7, 7.0
and "7" in one file: they would share an object_id), duplicate_object_id (a guard: object ids
are unique in a record by construction), unknown_category, category_name_invalid (a
category whose name is blank), bbox_malformed, bbox_nonfinite, bbox_non_positive_size,
bbox_out_of_image, bbox_exceeds_image, mask_* (see lifting.masks), parent_image_failed
(object).
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, Iterator

from lifting import storage
from lifting.masks import validate_segmentation
from lifting.records import ErrorRecord, ImageRecord, Object2D
from lifting.sources import (Group, Source, SourceConfigError, check_bbox_xywh, is_number, is_utf8_text,
                             positive_int, safe_text)
from lifting.sources.categories import CategoryMap
from lifting.sources.json_depth import DepthGuard, JSONOverBudget, JSONTooDeep, check_depth

log = logging.getLogger(__name__)

#: Image / annotation keys consumed by the reader (the rest is passed through).
IMAGE_KEYS = {"id", "file_name", "width", "height"}
ANN_KEYS = {"id", "image_id", "category_id", "bbox", "segmentation", "iscrowd"}


def _valid_id(v) -> bool:
    return (isinstance(v, str) and v != "" and is_utf8_text(v)) or (isinstance(v, int) and not isinstance(v, bool))


def ann_id_of(v):
    """The id of an annotation as lift3d keeps it: an int (integral floats such as 7.0 become
    7), a non-empty UTF-8 string, or None when it has no usable id (missing, bool, 7.5, ...)."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v if _valid_id(v) else None


def _json_scalar(v) -> bool:
    return v is None or isinstance(v, (str, bool, int, float))


def _passthrough(d: dict, skip) -> dict:
    """The scalar fields of `d` not in `skip`, strings made UTF-8 safe (extra / attributes)."""
    return {k: (safe_text(v) if isinstance(v, str) else v) for k, v in d.items()
            if k not in skip and isinstance(k, str) and is_utf8_text(k) and _json_scalar(v)}


class CocoSource(Source):
    """COCO instances JSON + image folder (options: see `Source`, plus `check_mask_area`)."""

    name = "coco"
    image_keys = IMAGE_KEYS
    ann_keys = ANN_KEYS
    #: every annotation must carry a usable id (`ann_id_invalid` otherwise): it is the only
    #: link from an index row or an error back to the input (`source_ann_id`)
    requires_ann_id = True

    def __init__(self, annotations=None, images=None, *, check_mask_area: bool = True, **kw):
        super().__init__(annotations=annotations, images=images, **kw)
        if self.annotations is None:
            raise SourceConfigError(f"{self.name}: annotations= (the instances JSON) is required")
        self.check_mask_area = bool(check_mask_area)
        self.categories: CategoryMap | None = None
        self._loaded: dict | None = None

    # -- reading --------------------------------------------------------------------------
    def _small(self) -> bool:
        return self.input_bytes() <= self.in_memory_bytes

    def _load_small(self) -> dict:
        if self._loaded is None:
            try:
                raw = storage.read_bytes(self.annotations)
                check_depth(raw)
                # json.loads keeps only the last of a repeated key: a file with two
                # "annotations" lists would lose the first silently, while the streaming reader
                # reads both; when a top-level name occurs twice, repeated lists are joined
                repeated = any(raw.count(b'"%s"' % k.encode()) > 1 for k in TOP_LISTS)
                data = json.loads(raw, object_pairs_hook=_join_repeated_lists) if repeated else json.loads(raw)
            except JSONOverBudget as e:
                raise SourceConfigError(f"{self.name}: {self.annotations}: JSON {e}; {_budget_hint(e)}") from e
            except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                raise SourceConfigError(f"{self.name}: {self.annotations} is not valid JSON: {e}") from e
            if not isinstance(data, dict):
                raise SourceConfigError(f"{self.name}: {self.annotations} is not a COCO-format object")
            for prefix in TOP_LISTS:
                if prefix in data and not isinstance(data[prefix], list):
                    raise _not_a_list(self, prefix, data[prefix])
            self._loaded = data
        return self._loaded

    def _stream(self, prefix: str) -> Iterator[Any]:
        if self._small():
            v = self._load_small().get(prefix, [])
            yield from (v if isinstance(v, list) else [])
            return
        import ijson

        n = 0
        backend = ijson
        while True:
            with storage.open(self.annotations, "rb") as raw:
                f = NonFiniteToNull(raw)
                try:
                    for k, item in enumerate(backend.items(f, f"{prefix}.item", use_float=True), 1):
                        if k > n:  # after a switch of backend: the items already given are skipped
                            n = k
                            yield item
                    break
                except JSONOverBudget as e:
                    raise SourceConfigError(f"{self.name}: {self.annotations}: JSON {e}; {_budget_hint(e)}") from e
                except (ijson.JSONError, UnicodeDecodeError) as e:
                    if backend is ijson and "integer overflow" in str(e):
                        # an integer beyond 64 bits, which json.load reads: the pure-Python backend
                        # reads it too (one reader, one behaviour), for this pass only
                        import ijson.backends.python as backend
                        continue
                    raise SourceConfigError(f"{self.name}: {self.annotations}: JSON error in '{prefix}': {e}") from e
        if n == 0:  # nothing under PREFIX.item: absent, an empty list, or not a list at all
            kind = self._top_kind(prefix)
            if kind not in (None, "start_array"):
                raise _not_a_list(self, prefix, {"start_map": {}}.get(kind, kind))

    def _top_kind(self, prefix: str) -> str | None:
        """The ijson event that opens the top-level value `prefix` ('start_array', 'start_map',
        'string', ...) or None when the document has no such key (a second pass, made only
        when a list came out empty)."""
        import ijson

        for backend in (ijson, None):
            if backend is None:
                import ijson.backends.python as backend  # integers beyond 64 bits (see _stream)
            try:
                with storage.open(self.annotations, "rb") as raw:
                    for path, event, _ in backend.parse(NonFiniteToNull(raw), use_float=True):
                        if path == prefix and event != "map_key":
                            return event
                return None
            except ijson.JSONError as e:
                if "integer overflow" not in str(e):
                    raise SourceConfigError(f"{self.name}: {self.annotations}: JSON error: {e}") from e
        return None

    def prepare(self) -> None:
        raw: dict = {}
        for c in self._stream("categories"):
            if not isinstance(c, dict) or not _valid_id(c.get("id")) or not isinstance(c.get("name"), str):
                log.warning("%s: ignoring malformed category %r", self.name, c)
                continue
            if c["id"] in raw:
                log.warning("%s: duplicate category id %r, keeping the first", self.name, c["id"])
                continue
            raw[c["id"]] = safe_text(c["name"])
        self.categories = CategoryMap(raw)

    def iter_items(self) -> Iterator[tuple]:
        for img in self._stream("images"):
            if not isinstance(img, dict):
                yield "error", "image", self.error("image_malformed", "image", detail=repr(img)[:200])
            elif not _valid_id(img.get("id")):
                yield "error", "image", self.error("image_missing_field", "image",
                                                   detail=f"image without a valid id: {repr(img)[:200]}")
            else:
                yield "image", img["id"], img
        for ann in self._stream("annotations"):
            if not isinstance(ann, dict):
                yield "error", "object", self.error("ann_malformed", "object", detail=repr(ann)[:200])
            elif not _valid_id(ann.get("image_id")):
                yield "error", "object", self.error("ann_missing_field", "object", ann_id=ann.get("id"),
                                                    detail="annotation without a valid image_id")
            else:
                yield "ann", ann["image_id"], ann
        self._loaded = None

    def ann_id(self, payload: dict):
        """Duplicate-detection key of an annotation: the text of its id, so that 7, 7.0 and "7"
        (which would give one object_id) are duplicates of each other."""
        v = ann_id_of(payload.get("id"))
        return None if v is None else str(v)

    # -- hooks for COCO-format variants ---------------------------------------------------
    def file_name_of(self, img: dict) -> str | None:
        v = img.get("file_name")
        return v if isinstance(v, str) and v else None

    def resolve_image_path(self, file_name: str) -> str:
        return self.image_path(file_name)

    def image_fields(self, img: dict, width: int, height: int) -> tuple[dict, str | None]:
        """Extra ImageRecord fields (K, depth...) of a valid image, or ({}, reason)."""
        return {}, None

    def object_bbox(self, ann: dict, width: int, height: int) -> tuple[list[float] | None, str | None]:
        return check_bbox_xywh(ann.get("bbox"), width, height, self.bbox_tolerance)

    def object_fields(self, ann: dict, image: ImageRecord) -> tuple[dict, str | None]:
        """Extra Object2D fields (gt_box3d...) of an annotation, or ({}, reason)."""
        return {}, None

    # -- assembling -------------------------------------------------------------------------
    def _image_record(self, img: dict) -> tuple[ImageRecord | None, str | None, str]:
        image_id = img["id"]
        fn = self.file_name_of(img)
        if fn is None:
            return None, "image_missing_field", "no file_name"
        bad = self.path_problem(fn, "image")
        if bad:
            return None, bad[0], bad[1]
        w, h = positive_int(img.get("width")), positive_int(img.get("height"))
        if w is None or h is None:
            return None, "image_bad_size", f"width={img.get('width')!r} height={img.get('height')!r}"
        path = self.resolve_image_path(fn)
        problem = self.file_problem(path, "image")
        if problem:
            return None, problem, path
        fields, reason = self.image_fields(img, w, h)
        if reason:
            return None, reason, fields.get("_detail", "")
        extra = _passthrough(img, self.image_keys)
        extra["file_name"] = fn
        rec = ImageRecord(key=self.key(image_id), source=self.name, image_id=image_id, image_path=path,
                          width=w, height=h, extra=extra, **fields)
        return rec, None, ""

    def assemble(self, group: Group) -> Iterator[ImageRecord | ErrorRecord]:
        image_id = group.image_id
        if not group.images:
            for _, ann in group.anns:
                yield self.error("unknown_image_id", "object", image_id=image_id, ann_id=ann.get("id"),
                                 detail=f"no image with id {image_id!r}")
            return
        for _, dup in group.images[1:]:
            yield self.error("duplicate_image_id", "image", image_id=image_id,
                             detail=f"a later image entry repeats id {image_id!r} "
                                    f"(file_name={dup.get('file_name')!r}); the first is kept")
        rec, reason, detail = self._image_record(group.images[0][1])
        if rec is None:
            yield self.error(reason, "image", image_id=image_id, detail=detail)
            for _, ann in group.anns:
                yield self.error("parent_image_failed", "object", image_id=image_id, ann_id=ann.get("id"),
                                 detail=f"image failed: {reason}")
            return
        errors: list[ErrorRecord] = []
        object_ids: set[str] = set()
        for idx, (seq, ann) in enumerate(group.anns):
            obj, reason, detail = self._object(ann, rec, idx, seq in group.dup_ann_seqs)
            if obj is not None and obj.object_id in object_ids:  # by construction, whatever the ids
                obj, reason, detail = None, "duplicate_object_id", f"object_id {obj.object_id!r} seen before"
            if obj is None:
                errors.append(self.error(reason, "object", image_id=image_id, ann_id=ann.get("id"), detail=detail))
            else:
                object_ids.add(obj.object_id)
                rec.objects.append(obj)
        yield rec
        yield from errors

    def _object(self, ann: dict, rec: ImageRecord, idx: int, is_dup: bool):
        ann_id = ann_id_of(ann.get("id"))
        if ann_id is None and self.requires_ann_id:
            return None, "ann_id_invalid", f"id={ann.get('id')!r} is not an integer or a non-empty string"
        if is_dup:
            return None, "duplicate_annotation_id", f"annotation id {ann_id!r} seen before"
        if "category_id" not in ann:
            return None, "ann_missing_field", "no category_id"
        cat = self.categories.lookup(ann["category_id"]) if _valid_id(ann["category_id"]) else None
        if cat is None:
            return None, "unknown_category", f"category_id={ann['category_id']!r}"
        if not cat[0].strip():
            return None, "category_name_invalid", f"category_id={ann['category_id']!r} has the name {cat[1]!r}"
        bbox, reason = self.object_bbox(ann, rec.width, rec.height)
        if reason:
            return None, reason, f"bbox={ann.get('bbox')!r}"[:300]
        seg = ann.get("segmentation")
        if seg is not None and seg != []:
            reason = validate_segmentation(seg, rec.height, rec.width, check_area=self.check_mask_area)
            if reason:
                return None, reason, "segmentation"
        else:
            seg = None
        crowd = ann.get("iscrowd", 0)
        if not (is_number(crowd) or crowd is None):
            return None, "ann_malformed", f"iscrowd={crowd!r}"
        fields, reason = self.object_fields(ann, rec)
        if reason:
            return None, reason, fields.get("_detail", "")
        attrs = _passthrough(ann, self.ann_keys)
        obj = Object2D(
            object_id=f"{rec.key}-{ann_id if ann_id is not None else idx}",
            category=cat[0], category_raw=cat[1], category_id=ann["category_id"], bbox_xyxy=bbox,
            segmentation=seg, source_ann_id=ann_id, iscrowd=bool(crowd), attributes=attrs, **fields)
        return obj, None, ""


#: Top-level members of a COCO-format document that must be lists.
TOP_LISTS = ("images", "annotations", "categories")


def _budget_hint(e: JSONOverBudget) -> str:
    return ("no COCO-format file nests that deep" if isinstance(e, JSONTooDeep)
            else "no image or annotation record is that large (a parser would build it whole in memory)")


def _join_repeated_lists(pairs: list) -> dict:
    """json object hook: a repeated `images` / `annotations` / `categories` key whose values
    are lists joins them in file order (what the streaming reader yields); any other repeated
    key keeps its last value (as json.loads and ijson both do)."""
    out: dict = {}
    for k, v in pairs:
        if k in out and k in TOP_LISTS and isinstance(out[k], list) and isinstance(v, list):
            out[k] = out[k] + v
        else:
            out[k] = v
    return out


def _not_a_list(src, prefix: str, value) -> SourceConfigError:
    """The one-line error for a top-level member that is not a list (e.g. `annotations` as an
    object keyed by id): read as nothing, its entries would vanish with balanced accounting."""
    kind = "an object (keyed by id?)" if isinstance(value, dict) else f"a {type(value).__name__}"
    return SourceConfigError(f"{src.name}: {src.annotations}: '{prefix}' is {kind}, not a list as COCO "
                             f"format requires; write it as a list of {prefix}")


class NonFiniteToNull:
    """Binary file wrapper replacing bare NaN / Infinity / -Infinity JSON values by null.

    Streams in 64 KB chunks; each emitted piece ends just before a ',' so that no value
    token is split. A value token is one that follows ':', ',' or '[' and precedes ',',
    ']' or '}' (whitespace allowed); the same text inside a string would need those
    delimiters around it too, which file names and category names practically never have.
    """

    _TOKEN = re.compile(rb"([:,\[]\s*)-?(?:NaN|Infinity)(?=\s*(?:[,\]}]|$))")
    #: \uD800-\uDFFF escapes that are not a high+low pair: ijson's C backend raises on them
    #: (json.load accepts them), so they become \uFFFD; a pair never holds a ',' and is never split.
    _LONE = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
                       rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}")

    def __init__(self, f, chunk: int = 1 << 16):
        self.f = f
        self.chunk = chunk
        self.tail = b""
        self.out = b""
        self.eof = False
        self.started = False
        self.guard = DepthGuard()

    def _clean(self, data: bytes) -> bytes:
        # the substitutions only where their tokens can occur (a substring test is ~50x faster
        # than a regex pass, and most chunks hold neither)
        if b"NaN" in data or b"Infinity" in data:
            data = self._TOKEN.sub(rb"\1null", data)
        if b"\\u" in data:
            data = self._LONE.sub(rb"\\ufffd", data)
        return data

    def read(self, n: int = -1) -> bytes:
        n = self.chunk if n is None or n < 0 else n
        while len(self.out) < n and not self.eof:
            data = self.tail + self.f.read(self.chunk)
            if not self.started:  # a UTF-8 byte order mark, which json.loads of bytes skips too
                self.started = True
                if data.startswith(b"\xef\xbb\xbf"):
                    data = data[3:]
            if len(data) == len(self.tail):
                self.eof = True
                self.out += self._clean(data)
                self.tail = b""
                break
            cut = data.rfind(b",")
            if cut <= 0:
                self.tail = data
                continue
            self.out += self._clean(data[:cut])
            self.tail = data[cut:]
        piece, self.out = self.out[:n], self.out[n:]
        self.guard.feed(piece)  # JSONTooDeep before the parser sees a level beyond the limit
        return piece


def image_file_exists(path: str) -> bool:
    """Cheap existence check (stat only) used by path-layout probes."""
    return storage.isfile(path)
