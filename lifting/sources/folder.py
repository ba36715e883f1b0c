"""A plain folder of images (recursive) for the tagging + open-vocabulary detection path.

Every file under `images=ROOT` (recursively, symlinked folders not followed) whose
extension is in `image_io.IMAGE_EXTENSIONS` (case-insensitive: jpg, jpeg, png, webp,
bmp, tif, tiff) is one input image, in sorted (deterministic) order of its POSIX relative
path. `image_id` is that relative path and the key is `make_key("images", rel_path)`;
keys are unique for distinct paths (`make_key` adds a hash of the exact text when it has to
replace characters, so `猫.jpg` and `犬.jpg`, or `a/b.jpg` and `a-b.jpg`, get distinct keys);
two entries with one key would keep the first and report `duplicate_key`. Records have no objects and width/height None: nothing is
decoded here; `image_io.read_image` applies EXIF orientation when the pipeline decodes.
Zero-byte files are `image_empty`, unreadable ones (permissions, broken links)
`image_unreadable`/`image_missing` - checked always, as the walk has stat'ed them anyway.
File names that are not valid UTF-8 (bytes on disk) are `image_path_invalid`. Hidden files
(a name starting with a dot, e.g. macOS `._x.jpg`) with an image extension are not read but
counted: `image_hidden`, so the accounting shows every file that looked like an image.
"""
from __future__ import annotations

import os
from typing import Iterator

from lifting import storage
from lifting.records import ErrorRecord, ImageRecord
from lifting.sources import Group, Source, SourceConfigError
from lifting.sources.image_io import IMAGE_EXTENSIONS


def is_hidden(rel: str) -> bool:
    """Whether the file of relative path `rel` is hidden (its name starts with a dot)."""
    return rel.rsplit("/", 1)[-1].startswith(".")


def walk_images(root: str, extensions=IMAGE_EXTENSIONS, hidden: bool = False) -> Iterator[str]:
    """POSIX paths relative to `root` of image files, sorted, recursive (streaming walk);
    hidden files (`is_hidden`) only with `hidden=True`."""
    exts = tuple(e.lower() for e in extensions)
    if storage.is_url(root):  # object stores list every key under the prefix at once
        prefix = root.rstrip("/") + "/"
        rels = (f[len(prefix):] for f in storage.walk_files(root) if f.startswith(prefix))
        yield from sorted(r for r in rels if r.lower().endswith(exts) and (hidden or not is_hidden(r)))
        return

    def rec(rel: str) -> Iterator[str]:
        path = os.path.join(root, rel) if rel else root
        try:
            # sort by the name as it appears in a relative path ("a/" for a folder), so the
            # whole walk is in sorted order of the relative path strings
            entries = sorted(os.scandir(path), key=lambda e: e.name + "/" if e.is_dir(follow_symlinks=False) else e.name)
        except OSError:
            return
        for e in entries:
            r = f"{rel}/{e.name}" if rel else e.name
            if e.is_dir(follow_symlinks=False):
                yield from rec(r)
            elif e.name.lower().endswith(exts) and (hidden or not e.name.startswith(".")):
                yield r

    yield from rec("")


class FolderSource(Source):
    """Plain image folder (module docstring). `annotations` is unused."""

    name = "images"

    def __init__(self, annotations=None, images=None, **kw):
        kw.setdefault("check_files", True)
        super().__init__(annotations=None, images=images, **kw)
        if self.images is None or not storage.isdir(self.images):
            raise SourceConfigError(f"images: {images!r} is not a folder")

    def input_bytes(self) -> int:
        """Spill-size estimate: ~200 bytes per file, so huge folders are grouped on disk."""
        return 200 * sum(1 for _ in walk_images(self.images, hidden=True))

    def iter_items(self) -> Iterator[tuple]:
        for rel in walk_images(self.images, hidden=True):
            if is_hidden(rel):  # macOS `._x.jpg` resource forks, editors' backups: counted, not read
                yield "error", "image", self.error("image_hidden", "image", image_id=rel,
                                                  detail=f"{rel} is a hidden file; not read as an image")
            else:
                yield "image", self.key(rel), {"rel": rel}

    def assemble(self, group: Group) -> Iterator[ImageRecord | ErrorRecord]:
        key = group.image_id
        first = group.images[0][1]["rel"]
        for _, dup in group.images[1:]:
            yield self.error("duplicate_key", "image", image_id=dup["rel"],
                             detail=f"{dup['rel']} maps to key {key} like {first}; the first is kept")
        bad = self.path_problem(first, "image")  # e.g. a file name that is not UTF-8
        if bad:
            yield self.error(bad[0], "image", image_id=first, detail=bad[1])
            return
        path = self.image_path(first)
        problem = self.file_problem(path, "image")
        if problem:
            yield self.error(problem, "image", image_id=first, detail=path)
            return
        yield ImageRecord(key=key, source=self.name, image_id=first, image_path=path)
