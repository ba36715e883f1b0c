"""Bad-input corpus through the real `lift3d lift` pipeline (issue 11, item 1).

The corpus is generated here at run time (no binary blobs in the repository): two
synthetic RGB-D scenes (`lifting.synthetic.write_dataset`, sensor depth, Omni3D-style
JSON) are copied once per case into one annotation file, and each copy is broken in one
way - image bytes, depth map, intrinsics, JSON structure, annotations, file names. One
`lift3d lift` run (the real lifting core, sensor depth, one worker) processes all cases
together. For every case the test states the outcome a trusted pipeline must give:
    ("failed", {reasons})   the image is an image-level entry of errors/errors.jsonl
    ("dropped", {reasons})  the broken annotation is an object-level entry of errors.jsonl
    ("lifted", None)        a valid but unusual input (CMYK, 16-bit, palette, EXIF-rotated,
                            RGBA, Unicode name): lifted, and the stored JPEG decodes to the
                            record's size with the pixels `lifting.sources.image_io` reads
and the run as a whole must complete with the accounting identity of stats.json.
A case that reveals a bug is marked `xfail(strict=True)` with the bug in the reason (none
today: the pipeline bugs this corpus found are fixed, see RELIABILITY.md).

Path policy tested here (lifting.sources.Source.path_problem): a file name that escapes
the images folder (`../../etc/passwd`, `/etc/passwd`) is `image_path_outside_root` (or
`depth_path_outside_root`); one that is not valid UTF-8 or holds NUL is `image_path_invalid`.
"""
from __future__ import annotations

import copy
import io
import json
import os
import shutil
import struct
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

W, H = 160, 120
MARK = "corpus-marker"


@dataclass
class Entry:
    """One image entry of the corpus: its JSON dicts and its files."""

    img: dict
    anns: list[dict]
    image: Path
    depth: Path


class Corpus:
    """Builds one Omni3D-style document; every case gets fresh ids and its own file copies."""

    def __init__(self, root: Path):
        from lifting.synthetic import SceneConfig, write_dataset

        self.base_dir = root / "base"
        ann = write_dataset(self.base_dir, n_scenes=2, seed=3, config=SceneConfig(width=W, height=H))
        self.base = json.loads(ann.read_text())
        self.images = root / "images"
        (self.images / "depth").mkdir(parents=True)
        self.doc = {"images": [], "annotations": [], "categories": self.base["categories"]}
        self.next_img, self.next_ann = 100, 10000

    def add(self, name: str, scene: int = 0, fmt: str = "jpg") -> Entry:
        b = self.base["images"][scene]
        src = self.base_dir / "images" / b["file_name"]
        fn = f"{name}.{fmt}"
        if fmt == "jpg":
            shutil.copy(src, self.images / fn)
        else:
            Image.open(src).save(self.images / fn)
        shutil.copy(self.base_dir / "images" / b["depth_file"], self.images / "depth" / f"{name}.png")
        img = {**copy.deepcopy(b), "id": self.next_img, "file_name": fn, "depth_file": f"depth/{name}.png"}
        self.next_img += 1
        anns = []
        for a in self.base["annotations"]:
            if a["image_id"] == b["id"]:
                anns.append({**copy.deepcopy(a), "id": self.next_ann, "image_id": img["id"]})
                self.next_ann += 1
        self.doc["images"].append(img)
        self.doc["annotations"].extend(anns)
        return Entry(img, anns, self.images / fn, self.images / "depth" / f"{name}.png")


def _bomb_png(path: Path, w: int, h: int) -> None:
    """A valid PNG header declaring w x h pixels with almost no data (a decompression bomb)."""
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
                     + chunk(b"IEND", b""))


def _truncate(p: Path, frac: float = 0.5) -> None:
    p.write_bytes(p.read_bytes()[: int(p.stat().st_size * frac)])


def _flip_bytes(p: Path) -> None:
    """Corrupt the middle of a PNG's compressed data (CRC and zlib stream both break)."""
    b = bytearray(p.read_bytes())
    mid = len(b) // 2
    for i in range(mid, mid + 64):
        b[i] ^= 0xA5
    p.write_bytes(bytes(b))


def _exif_rotated(e: Entry) -> None:
    """Store the pixels rotated with EXIF orientation 6, so that the *displayed* image is the scene."""
    im = Image.open(e.image)
    raw = im.transpose(Image.Transpose.ROTATE_90)  # displayed = raw rotated 90 deg clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    raw.save(e.image, quality=95, exif=exif)


def _gray16(e: Entry) -> None:
    a = np.asarray(Image.open(e.image).convert("L")).astype(np.uint16) * 257
    p = e.image.with_suffix(".g16.png")
    Image.fromarray(a).save(p)
    e.img["file_name"] = p.name


def _palette(e: Entry) -> None:
    p = e.image.with_suffix(".png")
    Image.open(e.image).convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(p)
    e.img["file_name"] = p.name


def _rgba(e: Entry) -> None:
    p = e.image.with_suffix(".png")
    im = Image.open(e.image).convert("RGBA")
    im.putalpha(255)
    im.save(p)
    e.img["file_name"] = p.name


def _depth_float_tiff(e: Entry) -> None:
    a = np.full((H, W), np.nan, np.float32)
    a[::2] = np.inf
    a[::3] = -1.0
    p = e.depth.with_suffix(".tif")
    Image.fromarray(a, mode="F").save(p)
    e.img["depth_file"] = f"depth/{p.name}"


def _non_utf8_name(e: Entry) -> None:
    name = f"{e.image.stem}-\udcff\udcfe.jpg"  # bytes 0xff 0xfe on disk: not UTF-8
    os.rename(e.image, os.path.join(os.fsencode(str(e.image.parent)), os.fsencode(name)))
    e.img["file_name"] = name


def _unicode_name(e: Entry) -> None:
    name = "été 画像 (1).jpg"
    os.rename(e.image, e.image.parent / name)
    e.img["file_name"] = name


def _first(e: Entry, **kw) -> None:
    e.anns[0].update(kw)


# name -> (mutation(corpus, entry), expected outcome, xfail reason or None)
# The mutation receives the corpus (to add entries) and a fresh entry built from scene 0.
CASES: dict[str, tuple[Callable, tuple, str | None]] = {
    # -- image bytes ---------------------------------------------------------------------------
    "jpeg_truncated": (lambda c, e: _truncate(e.image), ("failed", {"image_truncated"}), None),
    "jpeg_not_an_image": (lambda c, e: e.image.write_text("hello, not an image"),
                          ("failed", {"image_unreadable", "image_unreadable_at_write"}), None),
    "png_truncated": (lambda c, e: _truncate(e.image), ("failed", {"image_truncated", "image_unreadable_at_write"}),
                      None),
    "png_corrupt_data": (lambda c, e: _flip_bytes(e.image),
                         ("failed", {"image_truncated", "image_unreadable", "image_unreadable_at_write"}), None),
    "image_zero_bytes": (lambda c, e: e.image.write_bytes(b""),
                         ("failed", {"image_empty", "image_unreadable_at_write"}), None),
    "image_file_missing": (lambda c, e: e.image.unlink(), ("failed", {"image_missing", "image_missing_at_write"}),
                           None),
    "image_bomb_declared_in_json": (lambda c, e: e.img.update(width=200_000, height=100_000),
                                    ("failed", {"image_too_large", "depth_size_mismatch", "bad_intrinsics_fov"}), None),
    "image_is_a_directory": (lambda c, e: (e.image.unlink(), e.image.mkdir()),
                             ("failed", {"image_unreadable", "image_missing_at_write"}), None),
    # -- valid but unusual images: lifted, stored as displayed -----------------------------------
    "image_cmyk_jpeg": (lambda c, e: Image.open(e.image).convert("CMYK").save(e.image, quality=95), ("lifted", None),
                        None),
    "image_gray16_png": (lambda c, e: _gray16(e), ("lifted", None), None),
    "image_palette_png": (lambda c, e: _palette(e), ("lifted", None), None),
    "image_rgba_png": (lambda c, e: _rgba(e), ("lifted", None), None),
    "image_grey_jpeg": (lambda c, e: Image.open(e.image).convert("L").save(e.image, quality=95), ("lifted", None),
                        None),
    "image_exif_rotated": (lambda c, e: _exif_rotated(e), ("lifted", None), None),
    "file_name_unicode": (lambda c, e: _unicode_name(e), ("lifted", None), None),
    # -- depth maps --------------------------------------------------------------------------------
    "depth_all_zero": (lambda c, e: Image.fromarray(np.zeros((H, W), np.uint16)).save(e.depth),
                       ("failed", {"depth_bad_values", "depth_all_invalid"}), None),
    "depth_float_nan_inf_negative": (lambda c, e: _depth_float_tiff(e), ("failed", {"depth_bad_format"}), None),
    "depth_wrong_size": (lambda c, e: Image.fromarray(np.full((H // 2, W // 2), 2000, np.uint16)).save(e.depth),
                         ("failed", {"depth_size_mismatch"}), None),
    "depth_rgb_not_single_channel": (lambda c, e: Image.new("RGB", (W, H), (9, 9, 9)).save(e.depth),
                                     ("failed", {"depth_bad_format"}), None),
    "depth_truncated": (lambda c, e: _truncate(e.depth, 0.3), ("failed", {"depth_unreadable"}), None),
    "depth_zero_bytes": (lambda c, e: e.depth.write_bytes(b""), ("failed", {"depth_empty"}), None),
    "depth_file_missing": (lambda c, e: e.depth.unlink(), ("failed", {"depth_missing"}), None),
    "depth_scale_negative": (lambda c, e: e.img.update(depth_scale=-1000), ("failed", {"depth_bad_scale"}), None),
    "depth_encoding_unknown": (lambda c, e: e.img.update(depth_encoding="exr"), ("failed", {"depth_bad_encoding"}),
                               None),
    "depth_file_traversal": (lambda c, e: e.img.update(depth_file="../../../../etc/passwd"),
                             ("failed", {"depth_path_outside_root"}), None),
    # -- intrinsics --------------------------------------------------------------------------------
    "K_zero_focal": (lambda c, e: e.img["K"][0].__setitem__(0, 0.0), ("failed", {"bad_intrinsics_focal"}), None),
    "K_negative_focal": (lambda c, e: e.img["K"][1].__setitem__(1, -200.0), ("failed", {"bad_intrinsics_focal"}),
                         None),
    "K_nan": (lambda c, e: e.img["K"][0].__setitem__(2, float("nan")), ("failed", {"bad_intrinsics_nonfinite"}),
              None),
    "K_wrong_shape": (lambda c, e: e.img.update(K=[[1, 0], [0, 1]]), ("failed", {"bad_intrinsics_shape"}), None),
    # -- JSON structure ------------------------------------------------------------------------------
    "image_bad_size": (lambda c, e: e.img.update(width="wide"), ("failed", {"image_bad_size"}), None),
    "image_without_file_name": (lambda c, e: e.img.pop("file_name"), ("failed", {"image_missing_field"}), None),
    "duplicate_image_id": (lambda c, e: c.doc["images"].append(dict(e.img, file_name="other.jpg")),
                           ("failed", {"duplicate_image_id"}), None),
    "ids_with_the_same_key": (lambda c, e: _same_key(c, e), ("failed", {"duplicate_key"}), None),
    # -- annotations -----------------------------------------------------------------------------------
    "ann_duplicate_id": (lambda c, e: _dup_ann(c, e), ("dropped", {"duplicate_annotation_id"}), None),
    "ann_unknown_category": (lambda c, e: _first(e, category_id=4242), ("dropped", {"unknown_category"}), None),
    "ann_unknown_image": (lambda c, e: _first(e, image_id=999_999), ("dropped", {"unknown_image_id"}), None),
    "ann_bbox_outside_image": (lambda c, e: _first(e, bbox=[W + 10, 5, 20, 20]), ("dropped", {"bbox_out_of_image"}),
                               None),
    "ann_bbox_exceeds_image": (lambda c, e: _first(e, bbox=[W - 10, 5, 60, 20]), ("dropped", {"bbox_exceeds_image"}),
                               None),
    "ann_bbox_nan": (lambda c, e: _first(e, bbox=[5, float("nan"), 20, 20]), ("dropped", {"bbox_nonfinite"}), None),
    "ann_bbox_negative_size": (lambda c, e: _first(e, bbox=[5, 5, -20, 20]), ("dropped", {"bbox_non_positive_size"}),
                               None),
    "ann_bbox_not_numbers": (lambda c, e: _first(e, bbox=["a", None, 1, 2]), ("dropped", {"bbox_malformed"}), None),
    "ann_polygon_two_points": (lambda c, e: _first(e, segmentation=[[1, 1, 30, 30]]),
                               ("dropped", {"mask_polygon_too_few_points"}), None),
    "ann_rle_size_mismatch": (lambda c, e: e.anns[0]["segmentation"].update(size=[H * 2, W]),
                              ("dropped", {"mask_rle_size_mismatch"}), None),
    "ann_rle_counts_overrun": (lambda c, e: e.anns[0].update(segmentation={"size": [H, W], "counts": [10, W * H]}),
                               ("dropped", {"mask_rle_counts_mismatch"}), None),
    "ann_rle_garbage_string": (lambda c, e: e.anns[0].update(segmentation={"size": [H, W], "counts": "\x7f\x01~"}),
                               ("dropped", {"mask_malformed"}), None),
    "ann_gt_box_invalid": (lambda c, e: _first(e, dimensions=[0.5, -1.0, 0.5]), ("dropped", {"gt_box3d_invalid"}),
                           None),
    # -- file names ------------------------------------------------------------------------------------
    "file_name_traversal": (lambda c, e: e.img.update(file_name="../../../../etc/passwd"),
                            ("failed", {"image_path_outside_root"}), None),
    "file_name_absolute": (lambda c, e: e.img.update(file_name="/etc/passwd"), ("failed", {"image_path_outside_root"}),
                           None),
    "file_name_not_utf8": (lambda c, e: _non_utf8_name(e), ("failed", {"image_path_invalid"}), None),
    "file_name_nul": (lambda c, e: e.img.update(file_name="a\x00b.jpg"), ("failed", {"image_path_invalid"}), None),
}

#: Entries without an image id (reported with key None): matched by reason and a marker in the detail.
KEYLESS = {
    "image_not_an_object": (lambda c: c.doc["images"].append(f"{MARK}-not-an-object"), "image_malformed"),
    "image_without_id": (lambda c: c.doc["images"].append({"file_name": f"{MARK}-noid.jpg", "width": W, "height": H}),
                         "image_missing_field"),
    "ann_not_an_object": (lambda c: c.doc["annotations"].append([f"{MARK}-ann", 1, 2]), "ann_malformed"),
}


def _same_key(c: Corpus, e: Entry) -> None:
    """A second image whose id is the string form of this one's: both map to key omni3d_<id>."""
    other = c.add("same_key_twin", scene=1)
    other.img["id"] = str(e.img["id"])
    for a in other.anns:
        a["image_id"] = other.img["id"]


def _dup_ann(c: Corpus, e: Entry) -> None:
    """The second annotation repeats the first one's id (COCO ids must be unique)."""
    e.anns[1]["id"] = e.anns[0]["id"]


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    """Build the corpus, run `lift3d lift` once over it; returns what the tests need."""
    from lifting.records import make_key
    from lifting.repository import iter_repository
    from pipelines import cli

    root = tmp_path_factory.mktemp("corpus")
    c = Corpus(root)
    c.add("ok_a", 0)
    c.add("ok_b", 1)
    targets = {}
    for name, (mutate, expect, _) in CASES.items():
        fmt = "png" if name.startswith("png_") else "jpg"
        e = c.add(name, 0, fmt)
        ann0 = e.anns[0]["id"]
        mutate(c, e)
        key = make_key("omni3d", e.img["id"])
        if name == "ann_unknown_image":
            key = make_key("omni3d", 999_999)
        targets[name] = (key, str(ann0), e.image)
    for mutate, _ in KEYLESS.values():
        mutate(c)
    ann_path = root / "annotations.json"
    ann_path.write_text(json.dumps(c.doc))  # NaN written as a bare token, as Python's json does
    out = root / "out"
    rc = cli.main(["lift", "--source", "omni3d", "--annotations", str(ann_path), "--images", str(c.images),
                   "--out", str(out), "--depth-model", "sensor", "--samples-per-shard", "16", "--workers", "1",
                   "--no-progress"])
    repo = out / "repository"
    errors = [json.loads(x) for x in (repo / "errors" / "errors.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (repo / "rejected" / "rejected.jsonl").read_text().splitlines()]
    samples = {r["key"]: (r, jpg) for r, jpg in iter_repository(repo)}
    names = {make_key("omni3d", i["id"]): i["file_name"] for i in c.doc["images"]
             if isinstance(i, dict) and "id" in i and isinstance(i.get("file_name"), str)}
    return {"rc": rc, "doc": c.doc, "doc_file_names": names, "images": c.images, "repo": repo, "targets": targets, "errors": errors,
            "rejected": rejected, "samples": samples, "stats": json.loads((repo / "stats.json").read_text())}


def _params():
    out = []
    for name, (_, _, xf) in CASES.items():
        marks = [pytest.mark.xfail(strict=True, reason=xf)] if xf else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _params())
def test_case_outcome(corpus_run, name):
    """Each broken input ends as its named reason; each odd-but-valid one is lifted and stored right."""
    _, (kind, reasons), _ = CASES[name]
    key, ann0, _ = corpus_run["targets"][name]
    errs = corpus_run["errors"]
    if kind == "failed":
        got = {e["reason"] for e in errs if e["key"] == key and e["level"] == "image"}
        assert got & reasons, f"{name}: image-level reasons {got or 'none'}; expected one of {reasons}"
        if name not in ("duplicate_image_id", "ids_with_the_same_key"):
            assert key not in corpus_run["samples"], f"{name}: a broken image was written to a shard"
    elif kind == "dropped":
        got = {e["reason"] for e in errs if e["key"] == key and e["level"] == "object" and e["source_ann_id"] == ann0}
        assert got & reasons, f"{name}: object-level reasons {got or 'none'}; expected one of {reasons}"
    else:
        assert key in corpus_run["samples"], f"{name}: not lifted; errors {[e for e in errs if e['key'] == key]}"
        _check_stored_image(corpus_run, key, corpus_run["images"] / corpus_run["doc_file_names"][key])


def _check_stored_image(run, key, source_path):
    """The shard's JPEG is an RGB (or, for a grey input, greyscale) JPEG of the record's size
    with the pixels `lifting.sources.image_io.read_image` decodes from the input file."""
    from lifting.sources.image_io import read_image

    rec, jpg = run["samples"][key]
    im = Image.open(io.BytesIO(jpg))
    ref = read_image(source_path)
    grey = bool((ref[..., 0] == ref[..., 1]).all() and (ref[..., 1] == ref[..., 2]).all())
    assert im.format == "JPEG" and im.mode in (("RGB", "L") if grey else ("RGB",)), f"stored {im.format} {im.mode}"
    assert im.size == (rec["width"], rec["height"]) == (W, H)
    diff = np.abs(np.asarray(im.convert("RGB"), dtype=np.int16) - ref.astype(np.int16)).mean()
    assert diff < 6.0, f"stored pixels differ from the decoded input by {diff:.1f} grey levels on average"


@pytest.mark.parametrize("name", list(KEYLESS))
def test_keyless_case_outcome(corpus_run, name):
    _, reason = KEYLESS[name]
    hits = [e for e in corpus_run["errors"] if e["reason"] == reason and MARK in (e.get("detail") or "")]
    assert len(hits) == 1, f"{name}: {hits}"


def test_corpus_is_large_enough_and_the_run_completes(corpus_run):
    assert corpus_run["rc"] == 0
    assert len(CASES) + len(KEYLESS) >= 30
    assert corpus_run["stats"]["images"]["lifted"] >= 2  # the clean controls went through


def test_every_image_lands_in_exactly_one_outcome(corpus_run):
    """images in = lifted + rejected + failed, and it equals the image entries of the input."""
    st, doc = corpus_run["stats"], corpus_run["doc"]
    im = st["images"]
    assert st["balanced"] and im["in"] == im["lifted"] + im["rejected"] + im["failed"]
    assert im["in"] == len(doc["images"])
    outcomes = (len(corpus_run["samples"]) + sum(r["level"] == "image" for r in corpus_run["rejected"])
                + sum(e["level"] == "image" for e in corpus_run["errors"]))
    assert outcomes == len(doc["images"])
    assert im["failed"] == sum(st["images_failed_by_reason"].values())
    assert im["lifted"] == st["samples"] == len(corpus_run["samples"])


def test_every_annotation_is_accounted_for(corpus_run):
    """Each input annotation is an index row (kept/rejected), an object-level error, or belongs
    to an image that failed inside the pipeline (listed in errors with a stage after read)."""
    import pyarrow.parquet as pq

    doc, errs = corpus_run["doc"], corpus_run["errors"]
    failed_late = {e["key"] for e in errs if e["level"] == "image" and e.get("stage") != "read"}
    from lifting.records import make_key

    want = Counter()
    for a in doc["annotations"]:
        want[str(a.get("id")) if isinstance(a, dict) else "None"] += 1
    got = Counter()
    idx = pq.read_table(corpus_run["repo"] / "index" / "objects.parquet").to_pylist()
    for r in idx:
        got[r["source_ann_id"]] += 1
    dropped = set()
    for e in errs:
        if e["level"] == "object":
            got[str(e["source_ann_id"])] += 1
            dropped.add((e["key"], str(e["source_ann_id"])))
    for a in doc["annotations"]:  # objects that passed reading, of images that failed later
        if isinstance(a, dict) and make_key("omni3d", a["image_id"]) in failed_late:
            if (make_key("omni3d", a["image_id"]), str(a["id"])) not in dropped:
                got[str(a["id"])] += 1
    assert got == want, (got - want, want - got)
    st = corpus_run["stats"]
    assert st["objects"]["total"] == len(idx) == st["objects"]["kept"] + st["objects"]["rejected"]


def test_stats_json_alone_accounts_for_every_annotation(corpus_run):
    """stats.json states: annotations in = kept + rejected + dropped at read + objects of images
    that failed inside the pipeline (by the image's reason, matching errors.jsonl)."""
    from lifting.records import make_key

    st, doc = corpus_run["stats"], corpus_run["doc"]
    objects_in = st["objects"]["total"] + sum(st["objects_dropped_at_read_by_reason"].values())
    objects_in += sum(v for k, v in st.items() if k.startswith("objects_of_failed_images") and isinstance(v, int))
    assert objects_in == len(doc["annotations"])
    acc = st["objects_accounting"]
    assert acc["balanced"] and acc["in"] == len(doc["annotations"])
    assert acc["in"] == acc["kept"] + acc["rejected"] + acc["of_failed_images"] + acc["dropped_at_read"]
    # by reason: the annotations (not dropped at read) of each image that failed after reading
    late = {e["key"]: e["reason"] for e in corpus_run["errors"] if e["level"] == "image" and e["stage"] != "read"}
    dropped = {str(e["source_ann_id"]) for e in corpus_run["errors"] if e["level"] == "object"}
    want = Counter()
    for a in doc["annotations"]:
        if isinstance(a, dict) and make_key("omni3d", a["image_id"]) in late and str(a["id"]) not in dropped:
            want[late[make_key("omni3d", a["image_id"])]] += 1
    assert st["objects_of_failed_images_by_reason"] == dict(want) and sum(want.values()) == acc["of_failed_images"]
    assert {"image_truncated", "depth_bad_values"} <= want.keys()  # a write-stage and a depth-stage failure


def test_whole_file_failures_are_one_line_user_errors(tmp_path, capsys):
    """Annotation files that cannot be read at all stop the run before any work, in one line."""
    from pipelines import cli

    (tmp_path / "images").mkdir()
    bad = {"truncated.json": b'{"images": [{"id": 1, "file_na', "list.json": b"[1, 2, 3]",
           "latin1.json": b'{"images": [{"id": 1, "file_name": "caf\xe9.jpg"}]}', "empty.json": b""}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
        out = tmp_path / f"out-{name}"
        rc = cli.main(["lift", "--source", "omni3d", "--annotations", str(tmp_path / name), "--images",
                       str(tmp_path / "images"), "--out", str(out), "--depth-model", "sensor", "--workers", "1",
                       "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and name in err[0], (name, err)
        assert not list(out.rglob("shard-*.tar"))


def test_decompression_bomb_at_write_is_a_named_failure(tmp_path):
    from pipelines.sinks import ImageResult
    from pipelines.transforms import load_jpg

    p = tmp_path / "bomb.png"
    _bomb_png(p, 30_000, 30_000)
    data, reason = load_jpg(ImageResult("k", "lifted", image_path=str(p)), (W, H))
    assert data is None and reason in ("image_too_large", "image_unreadable_at_write")


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    """The library decoder refuses huge declared sizes from the header (no pixel allocated)."""
    from lifting.sources.image_io import InputError, read_image

    for w, h, limit in ((30_000, 30_000, None), (5_000, 4_000, 12_000_000)):
        p = tmp_path / f"bomb{w}.png"
        _bomb_png(p, w, h)
        with pytest.raises(InputError) as e:
            read_image(p, **({"max_pixels": limit} if limit else {}))
        assert e.value.reason == "image_too_large"


def test_source_config_errors_are_one_line_user_errors(tmp_path, capsys):
    """A bad OpenImages file set (lifting.sources.SourceConfigError) stops `lift3d lift` in one line."""
    from lifting.sources.openimages import BOX_COLUMNS
    from pipelines import cli

    (tmp_path / "images").mkdir()
    ok_boxes = ",".join(BOX_COLUMNS) + "\nimg1,x,/m/a,1,0.1,0.5,0.1,0.5,0,0,0,0,0\n"
    cases = {"no_classes": {"train-annotations-bbox.csv": ok_boxes},
             "bad_header": {"train-annotations-bbox.csv": "ImageID,XMin\nimg1,0.1\n",
                            "class-descriptions-boxable.csv": "/m/a,Apple\n"}}
    for name, files in cases.items():
        d = tmp_path / name
        d.mkdir()
        for fn, text in files.items():
            (d / fn).write_text(text)
        rc = cli.main(["lift", "--source", "openimages", "--annotations", str(d), "--images", str(tmp_path / "images"),
                       "--out", str(tmp_path / f"out-{name}"), "--workers", "1", "--no-progress"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and err[0].startswith("lift3d lift: error: openimages:"), (name, err)
        assert not (tmp_path / f"out-{name}").exists()


def test_openimages_end_to_end_with_a_depth_model(tmp_path):
    """OpenImages CSVs (normalised boxes, no image sizes) through `lift3d lift` with a tiny random
    Depth Anything V2: boxes become pixel boxes of each decoded image (three sizes), and
    stats.json accounts for every CSV row."""
    import pyarrow.parquet as pq

    from lifting.models.depth import tiny_random_checkpoint
    from lifting.repository import iter_repository
    from lifting.sources.openimages import BOX_COLUMNS
    from pipelines import cli

    rng = np.random.default_rng(0)
    imgs = tmp_path / "images"
    imgs.mkdir()
    sizes = {"0000aaaa": (160, 120), "0000bbbb": (96, 128), "0000cccc": (200, 150)}
    for iid, (w, h) in sizes.items():
        a = np.zeros((h, w, 3), np.uint8)
        a[:] = rng.integers(60, 200, 3)
        a[h // 4: h // 2, w // 5: w // 2] = rng.integers(0, 255, 3)  # a block to look at
        Image.fromarray(a).save(imgs / f"{iid}.jpg", quality=95)
    rows, boxes = [], {}
    for iid in sizes:
        for mid, box, group in (("/m/a", (0.2, 0.5, 0.25, 0.5), 0), ("/m/b", (0.55, 0.9, 0.3, 0.8), 0),
                                ("/m/a", (0.0, 1.0, 0.0, 1.0), 1)):  # the last one: a group-of box
            rows.append(f"{iid},xclick,{mid},1,{box[0]},{box[1]},{box[2]},{box[3]},0,0,{group},0,0")
            boxes[str(len(rows))] = (iid, box)
    rows.append("0000dddd,xclick,/m/a,1,0.1,0.2,0.1,0.2,0,0,0,0,0")  # its image file is missing (fails at decode)
    ann = tmp_path / "oi"
    ann.mkdir()
    (ann / "validation-annotations-bbox.csv").write_text(",".join(BOX_COLUMNS) + "\n" + "\n".join(rows) + "\n")
    (ann / "oidv7-class-descriptions-boxable.csv").write_text("LabelName,DisplayName\n/m/a,Apple\n/m/b,Bowl\n")
    ckpt = tiny_random_checkpoint("depth-anything-v2", tmp_path / "ckpt")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lift: {prior_ratio: null}\n")  # random depth: keep boxes of any metric size
    out = tmp_path / "out"
    rc = cli.main(["lift", "--source", "openimages", "--annotations", str(ann), "--images", str(imgs), "--out",
                   str(out), "--depth-model", "depth-anything-v2", "--depth-weights", str(ckpt),
                   "--depth-input-size", "56", "--config", str(cfg), "--workers", "1", "--no-progress"])
    assert rc == 0
    repo = out / "repository"
    st = json.loads((repo / "stats.json").read_text())
    acc = st["objects_accounting"]
    assert st["images"]["in"] == 4 and st["images_failed_by_reason"] == {"image_missing": 1} and st["balanced"]
    assert acc["balanced"] and acc["in"] == len(rows) and acc["dropped_at_read"] == 3  # the group-of boxes
    assert st["objects_of_failed_images_by_reason"] == {"image_missing": 1} and acc["of_failed_images"] == 1
    idx = pq.read_table(repo / "index" / "objects.parquet").to_pylist()
    assert len(idx) == 6 and acc["kept"] + acc["rejected"] == 6
    for r in idx:  # pixel edges of the decoded image, from the normalised CSV box
        iid, (x0, x1, y0, y1) = boxes[r["source_ann_id"]]
        w, h = sizes[iid]
        assert r["bbox_xyxy"] == pytest.approx([x0 * w, y0 * h, x1 * w, y1 * h], abs=1e-6)
    lifted = list(iter_repository(repo))
    assert len(lifted) == st["images"]["lifted"] >= 1
    for rec, jpg in lifted:
        w, h = sizes[str(rec["image_id"])]
        assert (rec["width"], rec["height"]) == (w, h) == Image.open(io.BytesIO(jpg)).size
        assert all("bbox_normalized" not in (o.get("attributes") or {}) for o in rec["objects"])


# -- the same policies in the other readers (source level: these need a depth model to lift) -------

def test_openimages_bad_rows_and_image_ids_are_named(tmp_path):
    from lifting.sources import open_source
    from lifting.sources.openimages import BOX_COLUMNS

    rows = [b"img1,x,/m/a,1,0.1,0.5,0.1,0.5,0,0,0,0,0",          # valid
            b"img1,x,/m/a,1,0.1,0.5,0.1",                          # too few fields
            b"img1,x,/m/\xff\xfe,1,0.1,0.5,0.1,0.5,0,0,0,0,0",    # not UTF-8
            b"img1,x,/m/a,1,abc,0.5,0.1,0.5,0,0,0,0,0",            # not a number
            b"img1,x,/m/a,1,0.1,1.5,0.1,0.5,0,0,0,0,0",            # outside [0, 1]
            b"img1,x,/m/zz,1,0.1,0.5,0.1,0.5,0,0,0,0,0",           # unknown MID
            b"img1,x,/m/a,1,nan,0.5,0.1,0.5,0,0,0,0,0",            # NaN
            b",x,/m/a,1,0.1,0.5,0.1,0.5,0,0,0,0,0",                # no ImageID
            b"../../etc/passwd,x,/m/a,1,0.1,0.5,0.1,0.5,0,0,0,0,0",  # traversal
            b'img1,x,/m/a,1,"' + b"9" * 200_000 + b'",0.5,0.1,0.5,0,0,0,0,0']  # field over the csv limit
    (tmp_path / "boxes.csv").write_bytes(",".join(BOX_COLUMNS).encode() + b"\n" + b"\n".join(rows) + b"\n")
    (tmp_path / "classes.csv").write_bytes(b"/m/a,Apple\n/m/b,Caf\xe9\n")
    src = open_source("openimages", annotations=tmp_path / "boxes.csv", images=tmp_path,
                      class_descriptions=tmp_path / "classes.csv")
    recs = list(src.iter_records())
    reasons = Counter(r.reason for r in recs if not hasattr(r, "objects"))
    assert reasons == Counter({"ann_malformed": 3, "bbox_malformed": 1, "bbox_normalized_out_of_range": 1,
                               "unknown_category": 1, "bbox_nonfinite": 1, "ann_missing_field": 1,
                               "image_path_outside_root": 1, "parent_image_failed": 1})
    assert src.stats()["accounting_ok"]


def test_folder_source_refuses_non_utf8_file_names(tmp_path):
    from lifting.sources import open_source

    Image.new("RGB", (8, 8)).save(tmp_path / "ok.jpg")
    Image.new("RGB", (8, 8)).save(os.path.join(os.fsencode(str(tmp_path)), b"bad\xff.jpg"))
    src = open_source("images", images=tmp_path)
    recs = list(src.iter_records())
    assert sorted(getattr(r, "reason", "ok") for r in recs) == ["image_path_invalid", "ok"]
    for r in recs:
        json.dumps(r.to_dict(), ensure_ascii=False).encode("utf-8")  # writable as UTF-8 JSON


@pytest.mark.parametrize("streamed", [False, True])
def test_key_collisions_and_odd_text_in_both_grouping_paths(tmp_path, streamed):
    """ids 7 and "7" share key coco_7: the second is `duplicate_key`; lone surrogates in a file
    name or a passthrough field never reach a record (in memory and through on-disk buckets)."""
    from lifting.sources import open_source

    for n in ("a.jpg", "b.jpg", "c.jpg"):
        Image.new("RGB", (W, H)).save(tmp_path / n)
    doc = {"images": [{"id": 7, "file_name": "a.jpg", "width": W, "height": H, "note": "x\udcff"},
                      {"id": "7", "file_name": "b.jpg", "width": W, "height": H},
                      {"id": 8, "file_name": "c\udcff.jpg", "width": W, "height": H}],
           "annotations": [{"id": 1, "image_id": "7", "category_id": 1, "bbox": [1, 1, 5, 5]}],
           "categories": [{"id": 1, "name": "chair\udcfe"}]}
    (tmp_path / "a.json").write_text(json.dumps(doc))
    opts = {"in_memory_bytes": 0, "buckets": 4} if streamed else {}
    src = open_source("coco", annotations=tmp_path / "a.json", images=tmp_path, **opts)
    recs = list(src.iter_records())
    errs = sorted((r.level, r.reason) for r in recs if not hasattr(r, "objects"))
    # json.load keeps the lone surrogate (refused by name); ijson's path sees U+FFFD instead (a
    # valid name whose file does not exist, failed later as image_missing*)
    want = [("image", "duplicate_key"), ("object", "parent_image_failed")]
    assert errs == sorted(want + ([] if streamed else [("image", "image_path_invalid")]))
    assert [o.category for r in recs if hasattr(r, "objects") for o in r.objects] == []
    assert src.stats()["accounting_ok"] and src.stats()["images_in"] == 3
    for r in recs:
        json.dumps(r.to_dict(), ensure_ascii=False).encode("utf-8")
