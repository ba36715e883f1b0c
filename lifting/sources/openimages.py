"""OpenImages v6/v7 from the official CSVs, streamed row by row.

Files (options of `open_source("openimages", annotations=BOXES_CSV, images=DIR, ...)`):
    annotations          box CSV: ImageID, Source, LabelName, Confidence, XMin, XMax, YMin,
                         YMax, IsOccluded, IsTruncated, IsGroupOf, IsDepiction, IsInside
                         (coordinates normalised to [0, 1]; flags 1/0, -1 = unknown).
    class_descriptions   MID -> display name CSV (`/m/01g317,Person`; header optional).
    labels               image-level labels CSV: ImageID, Source, LabelName, Confidence.
                         Confidence 1 (verified positive) -> `ImageRecord.tags`
                         (normalised names), 0 (verified negative) -> extra["negative_tags"].
    image_list           optional CSV with an ImageID column (e.g. the
                         `*-images-with-rotation.csv` files): images without boxes, and
                         OriginalURL / License / Rotation into `extra`.
The image set is every ImageID seen in any of these files; an image is
`IMAGES/{ImageID}.jpg`. Boxes have no ids: `source_ann_id` is the box CSV data row
number (1 = first row after the header), so every object traces back to its line.
`category` is the normalised display name, `category_raw` and `category_id` the MID,
`attributes["display_name"]` the display name as written.

Image sizes are not in the CSVs and images are not opened while reading, so records
leave `width`/`height` None and keep normalised boxes: `bbox_xyxy` holds
[XMin, YMin, XMax, YMax] in [0, 1] and `attributes["bbox_normalized"]` is True. After
decoding, the pipeline calls `denormalize_boxes(record, width, height)` which converts
to pixel edges of the stored image and clears the flag.

Group-of boxes (`IsGroupOf`=1: one box around several instances) and depictions
(`IsDepiction`=1: drawings, toys, statues) are not lifted as single physical objects: they
become object-level errors `openimages_group_of` / `openimages_depiction` (options
`keep_group_of` / `keep_depictions` keep them as objects with the flag in `attributes`).
Other reasons: unknown_category (MID not in the class descriptions), bbox_malformed,
bbox_nonfinite, bbox_non_positive_size, bbox_normalized_out_of_range, ann_malformed
(wrong field count, bytes that are not UTF-8, a row the csv module refuses),
ann_missing_field (object); duplicate_image_id (image_list repeats), image_path_invalid /
image_path_outside_root (an ImageID such as "../x", see `Source.path_problem`),
image_missing... (check_files) (image).
"""
from __future__ import annotations

import csv
import math
import os
from typing import Iterator

from lifting import storage
from lifting.records import ErrorRecord, ImageRecord, Object2D
from lifting.sources import Group, Source, SourceConfigError, is_utf8_text
from lifting.sources.categories import CategoryMap, normalize_category

BOX_COLUMNS = ("ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax",
               "IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
FLAG_COLUMNS = ("IsOccluded", "IsTruncated", "IsGroupOf", "IsDepiction", "IsInside")
#: Payload layout of a spilled box row (a list, to keep the on-disk buckets small).
_P = {name: i for i, name in enumerate(("row", "LabelName", "XMin", "XMax", "YMin", "YMax", *FLAG_COLUMNS,
                                         "Source", "Confidence"))}
_EXTRA_IMAGE_COLUMNS = ("OriginalURL", "OriginalLandingURL", "License", "Author", "Title", "Rotation",
                        "Subset", "OriginalSize", "OriginalMD5")
#: Tolerance on normalised coordinates (float noise in the official files).
NORM_TOL = 1e-6


def read_class_descriptions(path) -> dict[str, str]:
    """MID -> display name from a class-descriptions CSV (with or without header)."""
    out: dict[str, str] = {}
    # undecodable bytes become U+FFFD: a display name is text to show, never a path
    with storage.open(path, "r", newline="", encoding="utf-8", errors="replace") as f:
        try:
            for row in csv.reader(f):
                if len(row) < 2 or row[0] in ("LabelName", "MID", "label_name"):
                    continue
                out.setdefault(row[0].strip(), row[1].strip())
        except csv.Error as e:
            raise SourceConfigError(f"openimages: {path} is not a readable CSV: {e}") from e
    return out


def denormalize_boxes(record: ImageRecord, width: int, height: int) -> ImageRecord:
    """Convert normalised OpenImages boxes of `record` to pixel edges of a W x H image.

    Sets record.width/height, multiplies bbox_xyxy of objects flagged
    `attributes["bbox_normalized"]` and removes the flag (in place; returns the record).
    """
    record.width, record.height = int(width), int(height)
    for o in record.objects:
        if o.attributes.pop("bbox_normalized", False):
            x0, y0, x1, y1 = o.bbox_xyxy
            o.bbox_xyxy = [x0 * width, y0 * height, x1 * width, y1 * height]
    return record


def _flag(v: str) -> int | None:
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return None


class OpenImagesSource(Source):
    """OpenImages CSVs (module docstring)."""

    name = "openimages"
    implicit_images = True

    def __init__(self, annotations=None, images=None, *, class_descriptions=None, labels=None,
                 image_list=None, keep_group_of: bool = False, keep_depictions: bool = False,
                 image_ext: str = ".jpg", **kw):
        super().__init__(annotations=annotations, images=images, **kw)
        if annotations is None and labels is None and image_list is None:
            raise SourceConfigError("openimages: give annotations= (box CSV), labels= or image_list=")
        if annotations is not None and class_descriptions is None:
            raise SourceConfigError("openimages: class_descriptions= (MID,name CSV) is required with boxes")
        self.class_descriptions = os.fspath(class_descriptions) if class_descriptions else None
        self.labels = os.fspath(labels) if labels else None
        self.image_list = os.fspath(image_list) if image_list else None
        self.keep_group_of = keep_group_of
        self.keep_depictions = keep_depictions
        self.image_ext = image_ext
        self.categories = CategoryMap({})

    def input_paths(self) -> list[str]:
        return [p for p in (self.annotations, self.class_descriptions, self.labels, self.image_list) if p]

    def prepare(self) -> None:
        if self.class_descriptions:
            self.categories = CategoryMap(read_class_descriptions(self.class_descriptions))

    def _rows(self, path: str, required: tuple) -> Iterator[tuple[int, dict | None, str]]:
        """(data row number, row dict or None when unusable, why) for every data row of a CSV.

        A row is unusable when its field count differs from the header's, when it holds
        bytes that are not UTF-8 (read with surrogateescape, so one bad row does not stop
        the file), or when the csv module refuses it (e.g. a field over its size limit).
        """
        with storage.open(path, "r", newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            try:
                fieldnames = reader.fieldnames or []
            except csv.Error as e:
                raise SourceConfigError(f"openimages: {path}: unreadable CSV header: {e}") from e
            missing = [c for c in required if c not in fieldnames]
            if missing:
                raise SourceConfigError(f"openimages: {path} lacks columns {missing}")
            n = len(fieldnames)
            i = 0
            while True:
                i += 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as e:
                    yield i, None, f"row {i}: {e}"
                    continue
                if None in row or any(v is None for v in row.values()):
                    yield i, None, f"row {i} has {len(row)} != {n} fields"
                elif not all(is_utf8_text(v) for v in row.values()):
                    yield i, None, f"row {i} is not valid UTF-8"
                else:
                    yield i, row, ""

    def iter_items(self) -> Iterator[tuple]:
        if self.image_list:
            for i, row, why in self._rows(self.image_list, ("ImageID",)):
                if row is None or not row["ImageID"]:
                    yield "error", "image", self.error("image_missing_field", "image", detail=why or f"row {i}")
                    continue
                extra = {k: row[k] for k in _EXTRA_IMAGE_COLUMNS if row.get(k)}
                yield "image", row["ImageID"], extra
        if self.annotations:
            for i, row, why in self._rows(self.annotations, BOX_COLUMNS):
                if row is None:
                    yield "error", "object", self.error("ann_malformed", "object", ann_id=i, detail=why)
                elif not row["ImageID"]:
                    yield "error", "object", self.error("ann_missing_field", "object", ann_id=i, detail="no ImageID")
                else:
                    yield "ann", row["ImageID"], [i, row["LabelName"], row["XMin"], row["XMax"], row["YMin"],
                                                  row["YMax"], *(row[c] for c in FLAG_COLUMNS), row["Source"],
                                                  row["Confidence"]]
        if self.labels:
            for i, row, why in self._rows(self.labels, ("ImageID", "LabelName", "Confidence")):
                if row is not None and row["ImageID"]:
                    yield "aux", row["ImageID"], [row["LabelName"], row["Confidence"]]

    def assemble(self, group: Group) -> Iterator[ImageRecord | ErrorRecord]:
        image_id = group.image_id
        for _, _dup in group.images[1:]:
            yield self.error("duplicate_image_id", "image", image_id=image_id,
                             detail="image_list repeats this ImageID; the first row is kept")
        bad = self.path_problem(f"{image_id}{self.image_ext}", "image")
        path = self.image_path(f"{image_id}{self.image_ext}") if bad is None else None
        problem = bad[0] if bad else self.file_problem(path, "image")
        if problem:
            yield self.error(problem, "image", image_id=image_id, detail=bad[1] if bad else path)
            for _, p in group.anns:
                yield self.error("parent_image_failed", "object", image_id=image_id, ann_id=p[0],
                                 detail=f"image failed: {problem}")
            return
        extra = dict(group.images[0][1]) if group.images else {}
        tags, negative, unknown = [], [], 0
        for _, (mid, conf) in group.aux:
            names = self.categories.lookup(mid)
            if names is None:
                unknown += 1
                continue
            c = _flag(conf)
            target = tags if c == 1 else negative if c == 0 else None
            if target is not None and names[0] not in target:
                target.append(names[0])
        if negative:
            extra["negative_tags"] = negative
        if unknown:
            extra["labels_unknown_mid"] = unknown
        rec = ImageRecord(key=self.key(image_id), source=self.name, image_id=image_id, image_path=path,
                          tags=tags, extra=extra)
        errors = []
        for _, p in group.anns:
            obj, reason, detail = self._object(p, rec)
            if obj is None:
                errors.append(self.error(reason, "object", image_id=image_id, ann_id=p[0], detail=detail))
            else:
                rec.objects.append(obj)
        yield rec
        yield from errors

    def _object(self, p: list, rec: ImageRecord):
        row = p[_P["row"]]
        names = self.categories.lookup(p[_P["LabelName"]])
        if names is None:
            return None, "unknown_category", f"LabelName={p[_P['LabelName']]!r}"
        try:
            x0, x1, y0, y1 = (float(p[_P[k]]) for k in ("XMin", "XMax", "YMin", "YMax"))
        except (TypeError, ValueError):
            return None, "bbox_malformed", f"row {row}: non-numeric coordinates"
        if not all(math.isfinite(v) for v in (x0, x1, y0, y1)):
            return None, "bbox_nonfinite", f"row {row}"
        if min(x0, x1, y0, y1) < -NORM_TOL or max(x0, x1, y0, y1) > 1 + NORM_TOL:
            return None, "bbox_normalized_out_of_range", f"row {row}: {x0},{x1},{y0},{y1} not in [0, 1]"
        if x1 <= x0 or y1 <= y0:
            return None, "bbox_non_positive_size", f"row {row}"
        flags = {c: _flag(p[_P[c]]) for c in FLAG_COLUMNS}
        if flags["IsGroupOf"] == 1 and not self.keep_group_of:
            return None, "openimages_group_of", f"row {row}: one box around a group of objects"
        if flags["IsDepiction"] == 1 and not self.keep_depictions:
            return None, "openimages_depiction", f"row {row}: a depiction, not a physical object"
        attrs = dict(flags, bbox_normalized=True, Source=p[_P["Source"]], display_name=names[1])
        try:
            attrs["Confidence"] = float(p[_P["Confidence"]])
        except (TypeError, ValueError):
            pass
        clip = [min(max(v, 0.0), 1.0) for v in (x0, y0, x1, y1)]
        return Object2D(object_id=f"{rec.key}-{row}", category=names[0], category_raw=p[_P["LabelName"]],
                        category_id=p[_P["LabelName"]], bbox_xyxy=clip, source_ann_id=row,
                        attributes=attrs), None, ""


__all__ = ["OpenImagesSource", "denormalize_boxes", "read_class_descriptions", "normalize_category"]
