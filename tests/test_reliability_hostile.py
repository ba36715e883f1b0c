"""Hostile inputs, round 2 (issue 19): one record must never end a run, nothing may be lost,
stale or mislabelled silently.

Part 1 is one `lift3d lift` run (sensor depth, the real lifting core) over an Omni3D-style
corpus where each case breaks one copy of a synthetic scene: huge polygon coordinates (the
native rasteriser segfaulted), tiny focal lengths (PiB allocations), depth decompression
bombs, images whose size differs from the JSON (EXIF-rotated too), annotation id twins,
blank category names. The run runs in a subprocess, so a crash shows as its exit code, and
its peak RSS is read from the kernel. Part 2 covers whole-file mistakes (deep nesting,
`annotations` keyed by id) and the output folder (lock, ownership, stale shards, repaired
inputs). Units below: the reasons named in RELIABILITY.md.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_reliability_corpus import H, W, Corpus, Entry, _bomb_png

# -- part 1: per-record cases in one run -------------------------------------------------------


def _poly(e: Entry, coords) -> None:
    e.anns[0]["segmentation"] = [list(map(float, coords))]


def _focal(e: Entry, f: float) -> None:
    e.img["K"][0][0] = e.img["K"][1][1] = f


def _depth_bomb(e: Entry, w: int, h: int) -> None:
    _bomb_png(e.depth, w, h)


def _resize_image(e: Entry, w: int, h: int) -> None:
    Image.open(e.image).resize((w, h)).save(e.image, quality=95)


def _exif_raw_size(e: Entry, orientation: int = 6) -> None:
    """Stored pixels W x H (the JSON's size) with an EXIF orientation: displayed H x W for the
    transposing ones (5-8), W x H for 3 (180 degrees)."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.open(e.image).save(e.image, quality=95, exif=exif)


def _as_png(e: Entry, w: int, h: int) -> None:
    p = e.image.with_suffix(".png")
    Image.open(e.image).resize((w, h)).save(p)
    e.img["file_name"] = p.name


def _rename(e: Entry, name: str) -> None:
    os.rename(e.image, e.image.parent / name)
    e.img["file_name"] = name


def _depth_file(e: Entry, ext: str, data: bytes) -> None:
    """Replace the entry's depth map by `data` in a file of extension `ext` (the reader
    chooses PNG/TIFF, PGM or .npy by the extension, and reads the header before the data)."""
    p = e.depth.with_suffix("." + ext)
    p.write_bytes(data)
    e.img["depth_file"] = f"depth/{p.name}"


def _tiff_header(w: int, h: int) -> bytes:
    """A little-endian TIFF whose one IFD declares a w x h 32-bit float image with 8 bytes of
    data (a decompression bomb when w x h is large)."""
    import struct

    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 32), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 8),
            (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, 8), (339, 3, 1, 3)]
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 16) + b"\0" * 8 + ifd


def _npy_header(shape: tuple) -> bytes:
    """The header of a float32 .npy file of `shape`, without its data."""
    import io

    f = io.BytesIO()
    np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return f.getvalue()


def _npy_objects() -> bytes:
    import io

    f = io.BytesIO()
    a = np.empty((H, W), dtype=object)
    a[:] = 1.0
    np.save(f, a, allow_pickle=True)
    return f.getvalue()


def _ann_id(e: Entry, i: int, v) -> None:
    e.anns[i]["id"] = v


def _twin_ids(e: Entry, kind: str) -> None:
    a, b = e.anns[0], e.anns[1]
    if kind == "int_str":
        b["id"] = str(a["id"])
    elif kind == "int_float":
        b["id"] = float(a["id"])
    else:
        a["id"], b["id"] = 77.0, "77"


def _blank_category(c: Corpus, e: Entry, name: str) -> None:
    cid = 9000 + len(c.doc["categories"])
    c.doc["categories"].append({"id": cid, "name": name})
    e.anns[0]["category_id"] = cid


# name -> (mutation(corpus, entry), kind, reasons); kinds as in test_reliability_corpus:
# "failed" = image-level error, "dropped" = object-level error of the first annotation,
# "lifted" = the image is in a shard
BIG = 1e12
CASES = {
    # A: native rasteriser (pycocotools segfaulted on these)
    "poly_huge_coords": (lambda c, e: _poly(e, [0, 0, BIG, 0, BIG, BIG]), "dropped", {"mask_polygon_out_of_range"}),
    "poly_huge_negative": (lambda c, e: _poly(e, [-BIG, -BIG, 10, 0, 10, 10]), "dropped",
                           {"mask_polygon_out_of_range"}),
    "poly_1e300": (lambda c, e: _poly(e, [1e300, 1, 2, 3, 4, 5]), "dropped", {"mask_polygon_out_of_range"}),
    "poly_int64_max": (lambda c, e: _poly(e, [2 ** 63 - 1, 0, 5, 5, 0, 5]), "dropped", {"mask_polygon_out_of_range"}),
    "poly_far_outside_only": (lambda c, e: _poly(e, [BIG, BIG, BIG + 5, BIG, BIG, BIG + 5]), "dropped",
                              {"mask_empty"}),
    "poly_zigzag_budget": (lambda c, e: _poly(e, [0, 0, 2 * W, 2 * H] * 20_000), "dropped",
                           {"mask_polygon_too_complex"}),
    "poly_second_of_two_huge": (lambda c, e: e.anns[0].update(segmentation=[[1, 1, 20, 1, 20, 20], [0, 0, BIG, 0, 5, 5]]),
                                "dropped", {"mask_polygon_out_of_range"}),
    # A: tiny focal lengths (points ~1e6 m out, PiB allocations)
    "focal_1e-4": (lambda c, e: _focal(e, 1e-4), "failed", {"bad_intrinsics_fov"}),
    "focal_1e-9": (lambda c, e: _focal(e, 1e-9), "failed", {"bad_intrinsics_fov"}),
    "focal_0_5": (lambda c, e: _focal(e, 0.5), "failed", {"bad_intrinsics_fov"}),
    "focal_fx_only_tiny": (lambda c, e: e.img["K"][0].__setitem__(0, 1e-3), "failed", {"bad_intrinsics_fov"}),
    "focal_fy_only_tiny": (lambda c, e: e.img["K"][1].__setitem__(1, 1e-3), "failed", {"bad_intrinsics_fov"}),
    # A: depth decompression bombs and size budgets
    "depth_bomb_900mp": (lambda c, e: _depth_bomb(e, 30_000, 30_000), "failed", {"depth_too_large"}),
    "depth_bomb_2gp": (lambda c, e: _depth_bomb(e, 50_000, 40_000), "failed", {"depth_too_large"}),
    "depth_bomb_36mp": (lambda c, e: _depth_bomb(e, 6_000, 6_000), "failed", {"depth_size_mismatch"}),
    "depth_larger_than_image": (lambda c, e: Image.fromarray(np.full((H * 2, W * 2), 2000, np.uint16)).save(e.depth),
                                "failed", {"depth_size_mismatch"}),
    # B: the image file's size differs from the JSON
    "image_smaller_than_json": (lambda c, e: _resize_image(e, W // 2, H // 2), "failed", {"image_size_mismatch"}),
    "image_larger_than_json": (lambda c, e: _resize_image(e, W * 2, H * 2), "failed", {"image_size_mismatch"}),
    "image_one_pixel_off": (lambda c, e: _resize_image(e, W + 1, H), "failed", {"image_size_mismatch"}),
    "image_exif_json_raw_size": (lambda c, e: _exif_raw_size(e), "failed", {"image_size_mismatch"}),
    # B: annotation ids
    "ann_id_float_integral": (lambda c, e: _ann_id(e, 0, float(e.anns[0]["id"])), "lifted", None),
    "ann_id_float_fraction": (lambda c, e: _ann_id(e, 0, 7.5), "dropped", {"ann_id_invalid"}),
    "ann_id_missing": (lambda c, e: e.anns[0].pop("id"), "dropped", {"ann_id_invalid"}),
    "ann_id_bool": (lambda c, e: _ann_id(e, 0, True), "dropped", {"ann_id_invalid"}),
    "ann_id_empty_string": (lambda c, e: _ann_id(e, 0, ""), "dropped", {"ann_id_invalid"}),
    "ann_id_list": (lambda c, e: _ann_id(e, 0, [1]), "dropped", {"ann_id_invalid"}),
    "ann_id_twin_int_str": (lambda c, e: _twin_ids(e, "int_str"), "twin", {"duplicate_annotation_id"}),
    "ann_id_twin_int_float": (lambda c, e: _twin_ids(e, "int_float"), "twin", {"duplicate_annotation_id"}),
    "ann_id_twin_float_str": (lambda c, e: _twin_ids(e, "float_str"), "twin", {"duplicate_annotation_id"}),
    # B: one bad category must not lose the whole image
    "category_blank": (lambda c, e: _blank_category(c, e, ""), "dropped", {"category_name_invalid"}),
    "category_spaces": (lambda c, e: _blank_category(c, e, "   "), "dropped", {"category_name_invalid"}),
    "category_underscores": (lambda c, e: _blank_category(c, e, "__"), "dropped", {"category_name_invalid"}),
    # -- round 2, more of each class ------------------------------------------------------------
    # A: polygons: huge coordinates of each sign on each axis, beyond the extended image by one
    # pixel, entirely outside (near: rasterised to nothing; far: never rasterised), too complex
    "poly_huge_plus_x": (lambda c, e: _poly(e, [1, 1, BIG, 1, 20, 20]), "dropped", {"mask_polygon_out_of_range"}),
    "poly_huge_minus_x": (lambda c, e: _poly(e, [-BIG, 1, 20, 1, 20, 20]), "dropped", {"mask_polygon_out_of_range"}),
    "poly_huge_plus_y": (lambda c, e: _poly(e, [1, 1, 20, BIG, 20, 20]), "dropped", {"mask_polygon_out_of_range"}),
    "poly_huge_minus_y": (lambda c, e: _poly(e, [1, -BIG, 20, 1, 20, 20]), "dropped", {"mask_polygon_out_of_range"}),
    "poly_one_px_past_2w": (lambda c, e: _poly(e, [1, 1, 2 * W + 1, 1, 20, 20]), "dropped",
                            {"mask_polygon_out_of_range"}),
    "poly_one_px_past_minus_h": (lambda c, e: _poly(e, [1, -H - 1, 20, 1, 20, 20]), "dropped",
                                 {"mask_polygon_out_of_range"}),
    "poly_int_beyond_64_bits": (lambda c, e: e.anns[0].update(segmentation=[[10 ** 30, 1, 20, 1, 20, 20]]), "dropped",
                                {"mask_polygon_out_of_range"}),
    "poly_near_outside_only": (lambda c, e: _poly(e, [-100, -100, -50, -100, -50, -50]), "dropped", {"mask_empty"}),
    "poly_far_negative_outside_only": (lambda c, e: _poly(e, [-BIG, -BIG, -BIG + 5, -BIG, -BIG, -BIG + 5]), "dropped",
                                       {"mask_empty"}),
    "poly_far_right_same_rows": (lambda c, e: _poly(e, [BIG, 10, BIG + 5, 10, BIG, 20]), "dropped", {"mask_empty"}),
    "poly_too_complex_split_in_five": (lambda c, e: e.anns[0].update(segmentation=[[0, 0, 2 * W, 2 * H] * 4_000] * 5),
                                       "dropped", {"mask_polygon_too_complex"}),
    "poly_too_complex_negative_zigzag": (lambda c, e: _poly(e, [-W, -H, 2 * W, 2 * H] * 12_000), "dropped",
                                         {"mask_polygon_too_complex"}),
    # A: focal lengths and principal points (validate_K with the image size, at read)
    "focal_zero": (lambda c, e: _focal(e, 0.0), "failed", {"bad_intrinsics_focal"}),
    "focal_negative": (lambda c, e: _focal(e, -148.0), "failed", {"bad_intrinsics_focal"}),
    "focal_just_too_small": (lambda c, e: _focal(e, 3.0), "failed", {"bad_intrinsics_fov"}),
    "focal_denormal": (lambda c, e: _focal(e, 5e-324), "failed", {"bad_intrinsics_fov"}),
    "principal_point_far_right": (lambda c, e: e.img["K"][0].__setitem__(2, 1e9), "failed",
                                  {"bad_intrinsics_principal_point"}),
    "principal_point_far_up": (lambda c, e: e.img["K"][1].__setitem__(2, -1e9), "failed",
                               {"bad_intrinsics_principal_point"}),
    "principal_point_edge_steep_ray": (lambda c, e: (e.img["K"][0].__setitem__(2, 2 * W), _focal(e, 10.0)), "failed",
                                       {"bad_intrinsics_fov"}),
    "K_not_3x3": (lambda c, e: e.img.update(K=[[1e-6, 0, 80], [0, 1e-6, 60]]), "failed", {"bad_intrinsics_shape"}),
    # A: depth files: bombs and size mismatches in every format the reader takes
    "depth_png_transposed": (lambda c, e: Image.fromarray(np.full((W, H), 2000, np.uint16)).save(e.depth), "failed",
                             {"depth_size_mismatch"}),
    "depth_png_one_row_short": (lambda c, e: Image.fromarray(np.full((H - 1, W), 2000, np.uint16)).save(e.depth),
                                "failed", {"depth_size_mismatch"}),
    "depth_tiff_bomb": (lambda c, e: _depth_file(e, "tif", _tiff_header(100_000, 100_000)), "failed",
                        {"depth_too_large"}),
    "depth_tiff_wrong_size": (lambda c, e: _depth_file(e, "tif", _tiff_header(W * 3, H * 3)), "failed",
                              {"depth_size_mismatch"}),
    "depth_npy_bomb": (lambda c, e: _depth_file(e, "npy", _npy_header((100_000, 100_000))), "failed",
                       {"depth_size_mismatch"}),
    "depth_npy_3d_bomb": (lambda c, e: _depth_file(e, "npy", _npy_header((1_000_000, 1_000, 3))), "failed",
                          {"depth_too_large"}),
    "depth_npy_header_only": (lambda c, e: _depth_file(e, "npy", _npy_header((H, W))), "failed",
                              {"depth_unreadable"}),
    "depth_npy_pickled_objects": (lambda c, e: _depth_file(e, "npy", _npy_objects()), "failed", {"depth_unreadable"}),
    "depth_pgm_bomb": (lambda c, e: _depth_file(e, "pgm", b"P5\n100000 100000\n65535\n" + b"\0" * 64), "failed",
                       {"depth_size_mismatch"}),
    "depth_pgm_short_data": (lambda c, e: _depth_file(e, "pgm", f"P5\n{W} {H}\n65535\n".encode() + b"\0" * 64),
                             "failed", {"depth_unreadable"}),
    # B: the image file's size differs from the JSON (EXIF transposing orientations too)
    "image_transposed_no_exif": (lambda c, e: Image.open(e.image).transpose(Image.Transpose.TRANSPOSE).save(
        e.image, quality=95), "failed", {"image_size_mismatch"}),
    "image_png_smaller_than_json": (lambda c, e: _as_png(e, W - 8, H), "failed", {"image_size_mismatch"}),
    "image_exif_8_json_raw_size": (lambda c, e: _exif_raw_size(e, 8), "failed", {"image_size_mismatch"}),
    "image_exif_5_json_raw_size": (lambda c, e: _exif_raw_size(e, 5), "failed", {"image_size_mismatch"}),
    "image_exif_7_json_raw_size": (lambda c, e: _exif_raw_size(e, 7), "failed", {"image_size_mismatch"}),
    "image_exif_3_same_size": (lambda c, e: _exif_raw_size(e, 3), "lifted", None),
    # B: annotation id forms
    "ann_id_beyond_64_bits": (lambda c, e: _ann_id(e, 0, 2 ** 70), "lifted", None),
    "ann_id_negative": (lambda c, e: _ann_id(e, 0, -5), "lifted", None),
    "ann_id_cjk_string": (lambda c, e: _ann_id(e, 0, "猫-1"), "lifted", None),
    "ann_id_float_1e20": (lambda c, e: _ann_id(e, 0, 1e20), "lifted", None),
    "ann_id_leading_zero_vs_int": (lambda c, e: (_ann_id(e, 0, 7), _ann_id(e, 1, "07")), "lifted", None),
    "ann_id_null": (lambda c, e: _ann_id(e, 0, None), "dropped", {"ann_id_invalid"}),
    "ann_id_dict": (lambda c, e: _ann_id(e, 0, {"id": 1}), "dropped", {"ann_id_invalid"}),
    "ann_id_false": (lambda c, e: _ann_id(e, 0, False), "dropped", {"ann_id_invalid"}),
    "ann_id_twin_zero_negzero": (lambda c, e: (_ann_id(e, 0, 0), _ann_id(e, 1, -0.0)), "twin",
                                 {"duplicate_annotation_id"}),
    "ann_id_twin_1e20_str": (lambda c, e: (_ann_id(e, 0, 3e20), _ann_id(e, 1, str(3 * 10 ** 20))), "twin",
                             {"duplicate_annotation_id"}),
    "ann_id_twin_bigint_str": (lambda c, e: (_ann_id(e, 0, 2 ** 71), _ann_id(e, 1, str(2 ** 71))), "twin",
                               {"duplicate_annotation_id"}),
    # B: category names that normalise to blank (whitespace of every kind); names that are not text
    "category_tab_newline": (lambda c, e: _blank_category(c, e, "\t\n\r"), "dropped", {"category_name_invalid"}),
    "category_ideographic_space": (lambda c, e: _blank_category(c, e, "\u3000"), "dropped", {"category_name_invalid"}),
    "category_nbsp": (lambda c, e: _blank_category(c, e, "\u00a0\u2028"), "dropped", {"category_name_invalid"}),
    "category_separators": (lambda c, e: _blank_category(c, e, "\x1c\x1d\x1e\x1f"), "dropped",
                            {"category_name_invalid"}),
    "category_underscore_space_mix": (lambda c, e: _blank_category(c, e, " _ _\t"), "dropped",
                                      {"category_name_invalid"}),
    "category_name_number": (lambda c, e: _blank_category(c, e, 5), "dropped", {"unknown_category"}),
    "category_name_null": (lambda c, e: _blank_category(c, e, None), "dropped", {"unknown_category"}),
    # B: Unicode file names resolved exactly (NFC and NFD are two files on Linux)
    "file_name_nfc": (lambda c, e: _rename(e, "caf\u00e9.jpg"), "lifted", None),
    "file_name_nfd": (lambda c, e: _rename(e, "cafe\u0301.jpg"), "lifted", None),
    "file_name_emoji_cjk": (lambda c, e: _rename(e, "😀猫 犬.jpg"), "lifted", None),
    # names of control / format characters only (nothing visible) normalise to blank
    "category_control_chars": (lambda c, e: _blank_category(c, e, "\x01\x02"), "dropped", {"category_name_invalid"}),
    "category_zero_width_space": (lambda c, e: _blank_category(c, e, "\u200b"), "dropped", {"category_name_invalid"}),
}


@pytest.fixture(scope="module")
def hostile_corpus(tmp_path_factory):
    """The corpus: two controls, then one broken copy of scene 0 per case (one file set)."""
    from lifting.records import make_key

    root = tmp_path_factory.mktemp("hostile")
    c = Corpus(root)
    controls = [make_key("omni3d", c.add(n, i).img["id"]) for i, n in enumerate(("ok_a", "ok_b"))]
    targets = {}
    for name, (mutate, _, _) in CASES.items():
        e = c.add(name, 0)
        mutate(c, e)
        targets[name] = (make_key("omni3d", e.img["id"]), e.anns[0].get("id"), [a.get("id") for a in e.anns])
    ann_path = root / "annotations.json"
    ann_path.write_text(json.dumps(c.doc))
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    return {"root": root, "corpus": c, "ann": ann_path, "doc": c.doc, "targets": targets, "controls": controls,
            "files": files}


#: The two planning paths: records in the driver's memory, and through a Parquet index
#: (--plan-in-memory-mb 0; the JSON is still parsed with json.loads below the source's
#: in_memory_bytes: the streamed ijson reader is compared with it by
#: `test_both_readers_give_the_same_outcomes`).
PATHS = {"in_memory": [], "index_plan": ["--plan-in-memory-mb", "0"]}


@pytest.fixture(scope="module", params=list(PATHS))
def hostile_run(hostile_corpus, request):
    """Run `lift3d lift` once over the corpus in a subprocess (a segfault would be its exit
    code); returns what the tests need, with the child's peak RSS."""
    from lifting.repository import iter_repository

    root, c = hostile_corpus["root"], hostile_corpus["corpus"]
    out = root / f"out_{request.param}"
    code = ("import resource, sys\nfrom pipelines import cli\n"
            "rc = cli.main(sys.argv[1:])\n"
            "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)\nsys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code, "lift", "--source", "omni3d", "--annotations",
                           str(hostile_corpus["ann"]), "--images", str(c.images), "--out", str(out),
                           "--depth-model", "sensor", "--samples-per-shard", "16", "--workers", "1", "--no-progress",
                           *PATHS[request.param]],
                          capture_output=True, text=True, timeout=900, env={**os.environ})
    repo = out / "repository"
    rss = [int(x.split()[1]) for x in proc.stdout.splitlines() if x.startswith("MAXRSS_KB")]
    run = {**hostile_corpus, "path": request.param, "proc": proc, "rss_kb": rss[0] if rss else None, "repo": repo,
           "out": out}
    if proc.returncode == 0:
        run["errors"] = [json.loads(x) for x in (repo / "errors" / "errors.jsonl").read_text().splitlines()]
        run["samples"] = {r["key"]: r for r, _ in iter_repository(repo)}
        run["stats"] = json.loads((repo / "stats.json").read_text())
    return run


def test_the_run_completes_within_the_memory_budget(hostile_run):
    p = hostile_run["proc"]
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr[-2000:]}"
    assert hostile_run["rss_kb"] is not None and hostile_run["rss_kb"] < 1.5 * 1024 * 1024, hostile_run["rss_kb"]
    # the good images of the same run are lifted, with every object
    for key in hostile_run["controls"]:
        assert key in hostile_run["samples"] and not [e for e in hostile_run["errors"] if e["key"] == key]
    # nothing was written outside --out: the corpus folder holds what it held before the run
    root, out = hostile_run["root"], hostile_run["out"]
    now = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.relative_to(root).parts[0].startswith("out_"))
    assert now == hostile_run["files"]


@pytest.mark.parametrize("name", list(CASES))
def test_case_outcome(hostile_run, name):
    _, kind, reasons = CASES[name]
    key, ann0, ids = hostile_run["targets"][name]
    errs = hostile_run["errors"]
    if kind == "failed":  # exactly one image-level error with the case's reason, nothing in a shard
        got = [e["reason"] for e in errs if e["key"] == key and e["level"] == "image"]
        assert len(got) == 1 and set(got) == reasons, f"{name}: {got or 'no image-level error'}; expected {reasons}"
        assert key not in hostile_run["samples"]
        return
    if kind == "lifted":  # in a shard with every annotation as an object, no error
        assert key in hostile_run["samples"], [e for e in errs if e["key"] == key]
        assert not [e for e in errs if e["key"] == key]
        rec = hostile_run["samples"][key]
        assert sorted(str(o["source_ann_id"]) for o in rec["objects"]) == sorted(str(int(i) if isinstance(i, float)
                                                                                      else i) for i in ids)
        return
    got = Counter(e["reason"] for e in errs if e["key"] == key and e["level"] == "object")
    assert set(got) == reasons and sum(got.values()) == 1, f"{name}: {dict(got)}; expected one of {reasons}"
    # the rest of the image is not lost, and its objects are traceable and unique
    rec = hostile_run["samples"].get(key)
    assert rec is not None, f"{name}: the image was lost with its one bad annotation"
    oids = [o["object_id"] for o in rec["objects"]]
    assert len(oids) == len(set(oids)) == len(ids) - 1
    assert all(o["source_ann_id"] is not None for o in rec["objects"])


def test_every_annotation_is_accounted_for_and_index_rows_are_traceable(hostile_run):
    import pyarrow.parquet as pq

    st = hostile_run["stats"]
    acc = st["objects_accounting"]
    assert st["balanced"] and acc["balanced"] and acc["in"] == len(hostile_run["doc"]["annotations"])
    im = st["images"]
    assert im["in"] == len(hostile_run["doc"]["images"]) == im["lifted"] + im["rejected"] + im["failed"]
    assert acc["in"] == acc["kept"] + acc["rejected"] + acc["of_failed_images"] + acc["dropped_at_read"]
    n_failed = sum(1 for k, r, _ in CASES.values() if r == "failed")
    assert im["failed"] == n_failed == sum(st["images_failed_by_reason"].values())
    rows = pq.read_table(hostile_run["repo"] / "index" / "objects.parquet").to_pylist()
    assert all(r["source_ann_id"] is not None for r in rows)
    per_key = Counter((r["key"], r["object_id"]) for r in rows)
    assert max(per_key.values()) == 1


def test_both_readers_give_the_same_outcomes(hostile_corpus):
    """json.loads (files under in_memory_bytes) and the streamed ijson reader (larger files)
    give the corpus the same records, object ids and read-time reasons."""
    from lifting.sources import open_source

    got = []
    for b in (1 << 30, 0):
        src = open_source("omni3d", annotations=hostile_corpus["ann"], images=hostile_corpus["corpus"].images,
                          in_memory_bytes=b)
        recs = list(src.iter_records())
        got.append((sorted((r.key, sorted(o.object_id for o in r.objects)) for r in recs if hasattr(r, "objects")),
                    sorted((str(r.key), r.level, r.reason, str(r.source_ann_id)) for r in recs if not hasattr(r, "objects")),
                    src.stats()))
    assert got[0] == got[1]
    assert got[0][2]["accounting_ok"] and got[0][2]["annotations_in"] == len(hostile_corpus["doc"]["annotations"])


# -- part 2: whole files and output folders ---------------------------------------------------


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from lifting.synthetic import SceneConfig, write_dataset

    d = tmp_path_factory.mktemp("scenes")
    ann = write_dataset(d, n_scenes=3, seed=5, config=SceneConfig(width=W, height=H))
    return ann, d / "images"


def _lift(ann, images, out, *more, capsys=None):
    from pipelines import cli

    return cli.main(["lift", "--source", "omni3d", "--annotations", str(ann), "--images", str(images), "--out",
                     str(out), "--depth-model", "sensor", "--workers", "1", "--no-progress",
                     "--samples-per-shard", "1", *more])


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lift3d lift: error:"), err
    return err[0]


def _nested(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def _outcome(p: Path, images: Path, tmp_path: Path, streamed: bool, capsys) -> tuple[int, str]:
    """(exit code, its one error line) of `lift3d lift` on annotation file `p` (in-memory JSON
    path), or of reading it with the streaming (ijson) reader when `streamed`."""
    if not streamed:
        rc = _lift(p, images, tmp_path / "out")
        return rc, (_one_line_error(capsys) if rc else "")
    return streamed_outcome(p, images)


def streamed_outcome(ann, images) -> tuple[int, str]:
    """(2, the error's one line) when the streaming (ijson) reader refuses annotation file
    `ann` as a whole (SourceConfigError), else (0, "") after reading every record."""
    from lifting.sources import SourceConfigError, open_source

    try:
        list(open_source("omni3d", annotations=ann, images=images, in_memory_bytes=0).iter_records())
    except SourceConfigError as e:
        assert "\n" not in str(e)
        return 2, str(e)
    return 0, ""


@pytest.mark.parametrize("where", ["top", "annotation", "string_brackets_ok"])
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("streamed", [False, True])
def test_deep_nesting_is_one_line_before_parsing(scenes, tmp_path, capsys, where, kind, streamed):
    ann, images = scenes
    doc = json.loads(Path(ann).read_text())
    deep = _nested(100_000, kind)
    if where == "top":
        text = json.dumps(doc)[:-1] + ', "extra": ' + deep + "}"
    elif where == "annotation":
        doc["annotations"].append({"id": 1, "image_id": doc["images"][0]["id"], "seg": "DEEP"})
        text = json.dumps(doc).replace('"DEEP"', deep)
    else:  # brackets inside strings do not count
        doc["info"] = {"note": "[" * 100_000 + '\\"{' * 1000}
        text = json.dumps(doc)
    p = tmp_path / "a.json"
    p.write_text(text)
    rc, line = _outcome(p, images, tmp_path, streamed, capsys)
    if where == "string_brackets_ok":
        assert rc == 0
        return
    assert rc == 2 and "nesting deeper than 64 levels" in line, line


@pytest.mark.parametrize("member", ["annotations", "images", "categories"])
@pytest.mark.parametrize("streamed", [False, True])
def test_top_level_members_that_are_not_lists_are_refused(scenes, tmp_path, capsys, member, streamed):
    ann, images = scenes
    doc = json.loads(Path(ann).read_text())
    doc[member] = {str(x["id"]): x for x in doc[member]}  # keyed by id
    p = tmp_path / "a.json"
    p.write_text(json.dumps(doc))
    rc, line = _outcome(p, images, tmp_path, streamed, capsys)
    assert rc == 2 and f"'{member}' is an object" in line and "not a list" in line, line
    assert not (tmp_path / "out" / "repository" / "stats.json").exists()


def test_depth_pixel_budget_is_checked_from_the_header(tmp_path):
    from lifting.sources.depth_io import read_depth
    from lifting.sources.image_io import InputError

    for w, h, reason in ((6_000, 6_000, "depth_too_large"), (30_000, 30_000, "depth_too_large")):
        p = tmp_path / f"d{w}.png"
        _bomb_png(p, w, h)
        with pytest.raises(InputError) as e:
            read_depth(p)
        assert e.value.reason == reason
        with pytest.raises(InputError) as e:
            read_depth(p, expected_size=(w, h), max_pixels=None)  # no budget: the file is still bad
        assert e.value.reason in ("depth_unreadable", "depth_too_large")


def test_non_ascii_file_names_get_distinct_stable_keys(tmp_path):
    from lifting.records import make_key

    names = ["猫.jpg", "犬.jpg", "\u00e9.jpg", "e\u0301.jpg", "a/b.jpg", "a-b.jpg", "a b.jpg", "😀.jpg", "ß.jpg", "ss.jpg"]
    keys = [make_key("images", n) for n in names]
    assert len(set(keys)) == len(names)
    assert keys == [make_key("images", n) for n in names]  # stable
    import re

    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)
    assert make_key("coco", 123) == "coco_123"  # safe ids keep their plain key

    root = tmp_path / "photos"
    root.mkdir()
    for n in ("猫.jpg", "犬.jpg", ".hidden.jpg", "._mac.jpg"):
        Image.new("RGB", (8, 6)).save(root / n, format="JPEG")
    from lifting.sources import open_source

    src = open_source("images", images=root)
    recs = list(src.iter_records())
    assert sorted(r.image_id for r in recs if hasattr(r, "objects")) == ["犬.jpg", "猫.jpg"]
    assert Counter(r.reason for r in recs if not hasattr(r, "objects")) == {"image_hidden": 2}
    assert src.stats()["images_in"] == 4 and src.stats()["accounting_ok"]


def _shards(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "repository").glob("shard-*.tar"))


def test_overwrite_with_fewer_units_removes_stale_shards(scenes, tmp_path):
    ann, images = scenes
    out = tmp_path / "out"
    assert _lift(ann, images, out) == 0 and len(_shards(out)) == 3
    assert _lift(ann, images, out, "--limit", "1", "--overwrite") == 0
    manifest = json.loads((out / "repository" / "manifest.json").read_text())
    assert _shards(out) == [s["name"] for s in manifest["shards"]] == ["shard-000000.tar"]
    parts = {p.name[:12] for p in (out / "repository" / "_parts").glob("shard-*")}
    assert parts == {"shard-000000"}


def test_unrelated_output_folder_is_refused_and_untouched(scenes, tmp_path, capsys):
    ann, images = scenes
    out = tmp_path / "mine"
    (out / "repository").mkdir(parents=True)
    files = {"repository/notes.tmp-1": b"draft", "repository/manifest.json": b'{"mine": 1}',
             "repository/errors.jsonl": b"x\n"}
    for rel, data in files.items():
        (out / rel).write_bytes(data)
    for more in ([], ["--overwrite"]):
        assert _lift(ann, images, out, *more) == 2
        assert "not a lift3d output" in _one_line_error(capsys)
    assert {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files


def test_a_second_run_into_a_locked_output_is_refused(scenes, tmp_path, capsys):
    import fcntl

    ann, images = scenes
    out = tmp_path / "out"
    assert _lift(ann, images, out) == 0
    before = {p.name: p.read_bytes() for p in (out / "repository").glob("*.json")}
    fd = os.open(out / "repository" / "_parts" / "_lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a run in progress holds it
    try:
        assert _lift(ann, images, out, "--overwrite", "--samples-per-shard", "2") == 2
        assert "another lift3d run is writing to" in _one_line_error(capsys)
    finally:
        os.close(fd)
    assert {p.name: p.read_bytes() for p in (out / "repository").glob("*.json")} == before
    assert _lift(ann, images, out) == 0  # released: the next run goes on


def test_lock_is_released_when_the_holder_is_killed(scenes, tmp_path):
    ann, images = scenes
    out = tmp_path / "out"
    assert _lift(ann, images, out) == 0
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time\n"
                               "fd = os.open(sys.argv[1], os.O_RDWR); fcntl.flock(fd, fcntl.LOCK_EX)\n"
                               "print('held', flush=True); time.sleep(600)\n",
                               str(out / "repository" / "_parts" / "_lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    assert _lift(ann, images, out) == 0


@pytest.mark.parametrize("how", ["truncated", "missing", "zero_bytes", "depth_truncated"])
def test_a_repaired_input_is_retried_on_rerun(scenes, tmp_path, how):
    """The same command after the user repaired a broken image (or depth map) lifts it, and
    gives the bytes of a run that never saw it broken."""
    import shutil

    ann, images = scenes
    work = tmp_path / "images"
    shutil.copytree(images, work)
    doc = json.loads(Path(ann).read_text())
    victim = work / (doc["images"][1]["depth_file"] if how.startswith("depth") else doc["images"][1]["file_name"])
    good = victim.read_bytes()
    if how.endswith("truncated"):
        victim.write_bytes(good[: len(good) // 3])
    elif how == "missing":
        victim.unlink()
    else:
        victim.write_bytes(b"")
    out, ref = tmp_path / "out", tmp_path / "ref"
    assert _lift(ann, work, out) == 0
    st = json.loads((out / "repository" / "stats.json").read_text())
    assert st["images"]["failed"] == 1
    victim.write_bytes(good)
    assert _lift(ann, work, out) == 0
    assert _lift(ann, work, ref) == 0
    st = json.loads((out / "repository" / "stats.json").read_text())
    assert st["images"]["failed"] == 0 and st["images"]["lifted"] + st["images"]["rejected"] == 3
    a, b = (json.loads((d / "repository" / "stats.json").read_text()) for d in (out, ref))
    assert a == b
    a, b = (json.loads((d / "repository" / "manifest.json").read_text())["shards"] for d in (out, ref))
    assert a == b
    assert _shards(out) == _shards(ref)
    for s in _shards(ref):
        assert (out / "repository" / s).read_bytes() == (ref / "repository" / s).read_bytes()


def test_unchanged_failures_are_not_redone(scenes, tmp_path):
    import shutil

    ann, images = scenes
    work = tmp_path / "images"
    shutil.copytree(images, work)
    doc = json.loads(Path(ann).read_text())
    (work / doc["images"][0]["file_name"]).write_bytes(b"broken")
    out = tmp_path / "out"
    assert _lift(ann, work, out) == 0
    marks = {p: p.stat().st_mtime_ns for p in (out / "repository" / "_parts").glob("*.stats.json")}
    assert _lift(ann, work, out) == 0
    assert {p: p.stat().st_mtime_ns for p in marks} == marks  # nothing rewritten
