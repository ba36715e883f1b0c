"""Synthetic RGB-D scenes with exact ground truth (lifting/synthetic.py).

The scenes are the ground truth of every later fidelity test, so their own geometry is
checked here against the camera and box code and against independent decoders
(PIL, pycocotools). Scenes are rendered at 320 x 240 to keep the suite fast.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from lifting.boxes import project_box, yaw_of
from lifting.camera import backproject, pixel_grid, validate_K
from lifting.synthetic import (
    CATEGORIES,
    NoiseConfig,
    SceneConfig,
    apply_noise,
    generate_scene,
    scene_annotations,
    write_dataset,
)

W, H = 320, 240
SMALL = SceneConfig(width=W, height=H)
CUBOIDS = SceneConfig(width=W, height=H, categories=("cabinet", "box", "sofa", "table"))
ROUND = SceneConfig(width=W, height=H, categories=("trash can", "ball", "chair"))


@pytest.fixture(scope="module")
def scenes():
    """Default, cuboid-only and non-box-only scenes (deterministic seeds)."""
    out = [generate_scene(s, SMALL) for s in (0, 1, 2)]
    out += [generate_scene(s, CUBOIDS) for s in (10, 11, 12, 13)]
    out += [generate_scene(s, ROUND) for s in (20, 21)]
    return out


# ----------------------------------------------------------------------------- determinism
def test_deterministic_for_a_seed(scenes):
    a, b = scenes[0], generate_scene(0, SMALL)
    for name in ("rgb", "depth", "depth_noisy", "instance_map", "K", "gravity_cam"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.camera_height == b.camera_height
    assert [(o.category, o.bbox_xyxy) for o in a.objects] == [(o.category, o.bbox_xyxy) for o in b.objects]
    for oa, ob in zip(a.objects, b.objects):
        np.testing.assert_array_equal(oa.box.R_cam, ob.box.R_cam)
        np.testing.assert_array_equal(oa.box.center_cam, ob.box.center_cam)
    c = scenes[1]
    assert not np.array_equal(a.depth, c.depth)


def test_scene_arrays_and_camera(scenes):
    for s in scenes:
        assert s.rgb.shape == (H, W, 3) and s.rgb.dtype == np.uint8
        assert s.depth.shape == (H, W) and s.depth.dtype == np.float32
        assert s.instance_map.shape == (H, W)
        assert np.all(np.isfinite(s.depth)) and np.all(s.depth > 0)
        assert validate_K(s.K, W, H) is None
        assert 55.0 <= math.degrees(2 * math.atan(W / 2 / s.K[0, 0])) <= 70.0
        assert np.linalg.norm(s.gravity_cam) == pytest.approx(1.0, abs=1e-12)
        assert 1.2 <= s.camera_height <= 1.7
        ids = {o.instance_id for o in s.objects}
        assert set(np.unique(s.instance_map)) <= ids | {0}
        assert s.rgb.std() > 10  # textured, not flat
        for o in s.objects:
            assert o.visible_pixels == int(s.mask(o.instance_id).sum())
            assert o.visible_pixels <= o.amodal_pixels


def test_pitch_and_roll_match_the_configured_ranges(scenes):
    for s in scenes:
        # looking down by `pitch` and rolled by `roll`, "down" in the camera frame is
        # [sin(roll) cos(pitch), cos(roll) cos(pitch), sin(pitch)]: forward-leaning
        g = s.gravity_cam
        pitch = math.degrees(math.asin(g[2]))
        roll = math.degrees(math.atan2(g[0], g[1]))
        assert 5.0 - 1e-6 <= pitch <= 25.0 + 1e-6
        assert abs(roll) <= 5.0 + 1e-6
        assert g[1] > 0.8  # camera roughly upright


# ----------------------------------------------------------------------------- GT boxes
def test_gt_boxes_are_gravity_aligned_and_stand_on_the_floor(scenes):
    for s in scenes:
        g = s.gravity_cam
        for o in s.objects:
            box = o.box
            np.testing.assert_allclose(np.abs(box.up_axis @ g), 1.0, atol=1e-12)
            np.testing.assert_allclose(box.R_cam.T @ box.R_cam, np.eye(3), atol=1e-12)
            assert np.linalg.det(box.R_cam) == pytest.approx(1.0)
            assert math.cos(yaw_of(box.R_cam, g) - box.yaw) == pytest.approx(1.0, abs=1e-12)
            bottom = box.center_cam + g * box.dimensions[1] / 2
            assert bottom @ g == pytest.approx(s.camera_height, abs=1e-9)
            assert o.category in CATEGORIES
            if o.shape in ("cylinder", "sphere"):
                assert box.dimensions[0] == pytest.approx(box.dimensions[2])
            if o.shape == "sphere":
                assert box.dimensions[0] == pytest.approx(box.dimensions[1])


def test_backprojected_masks_lie_inside_their_gt_boxes_for_every_shape(scenes):
    shapes = set()
    for s in scenes:
        xyz = backproject(s.depth, s.K)
        for o in s.objects:
            m = s.mask(o.instance_id)
            if not m.any():
                continue
            shapes.add(o.shape)
            pts = xyz[m]
            inside = o.box.contains(pts, tol=1e-3)
            assert inside.all(), f"{o.category}: {np.sum(~inside)} of {len(pts)} points outside its box"
            # and the box is tight: some visible point reaches one of its faces
            excess = np.abs(o.box.to_local(pts)) - o.box.dimensions / 2
            assert excess.max() > -0.02 * o.box.dimensions.max()
    assert shapes == {"cuboid", "cylinder", "sphere", "chair"}


def test_projected_gt_boxes_reproduce_mask_boxes_for_whole_cuboids(scenes):
    n = 0
    for s in scenes:
        for o in s.objects:
            if o.shape != "cuboid" or o.visible_pixels != o.amodal_pixels or o.truncation > 0 or not o.visible_pixels:
                continue
            proj = project_box(o.box, s.K, (W, H))
            np.testing.assert_allclose(proj, o.bbox_xyxy, atol=1.0, err_msg=o.category)
            n += 1
    assert n >= 6


def test_mask_boxes_are_inside_projected_gt_boxes_for_all_shapes(scenes):
    """Cylinders, spheres and chairs do not fill their boxes: the box corners project beyond
    the silhouette, so for them the mask box is only contained in the projected box (the
    equality above holds for whole cuboids only). A pixel is in the mask when its centre is,
    so the mask box may exceed the projection by at most half a pixel."""
    n_strict = 0
    for s in scenes:
        for o in s.objects:
            if not o.visible_pixels:
                continue
            proj = np.array(project_box(o.box, s.K, (W, H)))
            m = np.array(o.bbox_xyxy)
            assert np.all(m[:2] >= proj[:2] - 0.5 - 1e-6) and np.all(m[2:] <= proj[2:] + 0.5 + 1e-6), o.category
            if o.shape in ("cylinder", "sphere") and o.truncation == 0 and o.visible_pixels == o.amodal_pixels:
                # the amodal silhouette is strictly smaller than the projected box
                n_strict += (proj[2] - proj[0]) * (proj[3] - proj[1]) > 1.05 * (m[2] - m[0]) * (m[3] - m[1])
    assert n_strict >= 1


def test_mask_bbox_matches_the_mask(scenes):
    for s in scenes:
        for o in s.objects:
            if not o.visible_pixels:
                assert o.bbox_xyxy is None
                continue
            rows, cols = np.nonzero(s.mask(o.instance_id))
            assert o.bbox_xyxy == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_floor_points_fit_the_gravity_plane(scenes):
    for s in scenes:
        xyz = backproject(s.depth, s.K).reshape(-1, 3).astype(np.float64)
        u, v = pixel_grid(H, W)
        rays = np.stack([(u - s.K[0, 2]) / s.K[0, 0], (v - s.K[1, 2]) / s.K[1, 1], np.ones_like(u)], -1)
        below_horizon = (rays.reshape(-1, 3) @ s.gravity_cam) > 0.05
        # walls are >= 3.5 m sideways and >= 7 m ahead: nothing but floor and objects within 3 m
        floor = (s.instance_map.ravel() == 0) & below_horizon & (s.depth.ravel() < 3.0)
        assert floor.sum() > 500
        p = xyz[floor]
        # least-squares plane by SVD, compared with n . x = camera_height, n = gravity_cam
        centroid = p.mean(axis=0)
        normal = np.linalg.svd(p - centroid, full_matrices=False)[2][-1]
        normal *= np.sign(normal @ s.gravity_cam)
        assert math.degrees(math.acos(min(1.0, normal @ s.gravity_cam))) < 0.01
        residual = p @ s.gravity_cam - s.camera_height
        assert np.abs(residual).max() < 1e-4


def test_objects_occlude_only_from_the_front():
    """occlusion=True yields partly visible objects, and each is hidden by a nearer object."""
    cfg = SceneConfig(width=W, height=H, occlusion=True)
    partly = 0
    for seed in range(3):
        s = generate_scene(seed, cfg)
        for o in s.objects:
            if not 0 < o.visibility < 0.97 or o.truncation > 0:
                continue
            partly += 1
            m = s.mask(o.instance_id)
            ring = ndimage.binary_dilation(m) & ~m
            others = ring & (s.instance_map > 0)
            assert others.any(), f"{o.category} is hidden but touches no other object"
            # the neighbouring object pixels are nearer than the object's own visible pixels
            assert np.median(s.depth[others]) < np.median(s.depth[m])
    assert partly >= 2


# ----------------------------------------------------------------------------- noise
@pytest.fixture(scope="module")
def exact_depth(scenes):
    return scenes[0].depth


def test_noise_defaults_off_and_realistic_config(scenes):
    s = scenes[0]
    np.testing.assert_array_equal(s.depth_noisy, s.depth)
    noisy = generate_scene(0, SMALL, NoiseConfig.realistic())
    np.testing.assert_array_equal(noisy.depth, s.depth)  # the exact depth is unchanged
    np.testing.assert_array_equal(noisy.instance_map, s.instance_map)
    assert not np.array_equal(noisy.depth_noisy, s.depth)
    assert 0.02 < np.mean(noisy.depth_noisy == 0) < 0.08
    valid = noisy.depth_noisy > 0
    rel = noisy.depth_noisy[valid] / s.depth[valid] - 1
    assert 0.005 < np.median(np.abs(rel)) < 0.02


def test_relative_gaussian_noise(exact_depth):
    z = exact_depth
    out = apply_noise(z, NoiseConfig(rel_sigma=0.02), np.random.default_rng(1))
    rel = out.astype(np.float64) / z - 1
    assert rel.std() == pytest.approx(0.02, rel=0.03)
    assert abs(rel.mean()) < 5e-4
    assert np.all(out > 0)


def test_quantisation(exact_depth):
    z = exact_depth.astype(np.float64)
    q = 0.0025
    out = apply_noise(exact_depth, NoiseConfig(quant_coeff=q), np.random.default_rng(2)).astype(np.float64)
    step = q * z * z
    assert np.all(np.abs(out - z) <= step / 2 * (1 + 1e-5) + 1e-6)
    k = out / step
    np.testing.assert_allclose(k, np.round(k), atol=1e-3)  # multiples of the local step
    # rounding error uniform over +-step/2: mean |error| = step / 4
    assert np.mean(np.abs(out - z) / step) == pytest.approx(0.25, abs=0.02)


@pytest.mark.parametrize("fraction", [0.02, 0.1])
def test_missing_pixels_in_blobs(exact_depth, fraction):
    out = apply_noise(exact_depth, NoiseConfig(missing_fraction=fraction), np.random.default_rng(3))
    missing = out == 0
    assert missing.mean() == pytest.approx(fraction, rel=0.25)
    np.testing.assert_array_equal(out[~missing], exact_depth[~missing])
    # holes are 3x3 blobs: opening with a 3x3 square keeps every missing pixel (blobs at the
    # image border are cut, so the two outer rows/columns are not checked)
    opened = ndimage.binary_opening(missing, structure=np.ones((3, 3)))
    inner = np.s_[2:-2, 2:-2]
    assert np.array_equal(opened[inner] | ~missing[inner], np.ones_like(opened[inner]))


def test_flying_pixels_only_on_discontinuities(exact_depth):
    z = exact_depth.astype(np.float64)
    out = apply_noise(exact_depth, NoiseConfig(flying_pixels=True), np.random.default_rng(4)).astype(np.float64)
    changed = np.abs(out - z) > 1e-6
    pad = np.pad(z, 1, mode="edge")
    nb = np.stack([pad[1:-1, 2:], pad[1:-1, :-2], pad[2:, 1:-1], pad[:-2, 1:-1]])
    # a pixel is on a discontinuity when some 4-neighbour differs by more than 5 %
    jump = np.any(np.abs(nb - z) > 0.05 * z, axis=0)
    assert changed.sum() > 100
    assert not np.any(changed & ~jump), "flying pixels away from depth discontinuities"
    # the flying value lies between the two sides of the edge
    assert np.all(out[changed] >= nb.min(axis=0)[changed] - 1e-6)
    assert np.all(out[changed] <= nb.max(axis=0)[changed] + 1e-6)
    # most pixels next to a strong jump (> 20 %) do fly
    strong = np.any(np.abs(nb - z) > 0.2 * z, axis=0)
    assert changed[strong].mean() > 0.8


# ----------------------------------------------------------------------------- dataset files
def test_write_dataset_round_trip(tmp_path):
    from PIL import Image
    from pycocotools import mask as mask_utils

    n, seed = 2, 5
    path = write_dataset(tmp_path, n_scenes=n, seed=seed, config=SMALL)
    doc = json.loads(path.read_text())
    assert path == tmp_path / "annotations.json"
    assert [c["name"] for c in doc["categories"]] == CATEGORIES
    cat_name = {c["id"]: c["name"] for c in doc["categories"]}
    assert len(doc["images"]) == n
    ann_ids = [a["id"] for a in doc["annotations"]]
    assert len(set(ann_ids)) == len(ann_ids)
    for i, img in enumerate(doc["images"]):
        scene = generate_scene(seed * 100003 + i, SMALL)  # documented seeding
        assert (img["width"], img["height"]) == (W, H)
        np.testing.assert_allclose(img["K"], scene.K)
        np.testing.assert_allclose(img["gravity_cam"], scene.gravity_cam)
        assert img["depth_scale"] == 1000
        rgb = np.asarray(Image.open(tmp_path / "images" / img["file_name"]).convert("RGB"))
        assert rgb.shape == (H, W, 3)
        assert np.abs(rgb.astype(float) - scene.rgb).mean() < 3.0  # JPEG q95
        dimg = Image.open(tmp_path / "images" / img["depth_file"])
        d = np.asarray(dimg)
        assert d.dtype == np.uint16, dimg.mode
        assert np.abs(d / img["depth_scale"] - scene.depth).max() <= 1e-3
        anns = [a for a in doc["annotations"] if a["image_id"] == img["id"]]
        visible = [o for o in scene.objects if o.visible_pixels > 0]
        assert len(anns) == len(visible)
        for a, o in zip(anns, visible):
            assert cat_name[a["category_id"]] == a["category_name"] == o.category
            m = mask_utils.decode(a["segmentation"]).astype(bool)
            np.testing.assert_array_equal(m, scene.mask(o.instance_id))
            x, y, w, h = a["bbox"]
            assert (x, y, x + w, y + h) == o.bbox_xyxy
            assert a["area"] == o.visible_pixels == mask_utils.area(a["segmentation"])
            np.testing.assert_allclose(a["center_cam"], o.box.center_cam)
            np.testing.assert_allclose(a["dimensions"], o.box.dimensions)
            np.testing.assert_allclose(a["R_cam"], o.box.R_cam)
            np.testing.assert_allclose(a["bbox3D_cam"], o.box.corners())
            assert a["bbox2D_proj"] == pytest.approx(list(project_box(o.box, scene.K, (W, H))))


def test_written_dataset_loads_with_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    path = write_dataset(tmp_path, n_scenes=1, seed=1, config=SMALL, noise=NoiseConfig(missing_fraction=0.05),
                         include_gravity=False)
    coco = COCO(str(path))
    img = coco.loadImgs(coco.getImgIds())[0]
    assert "gravity_cam" not in img
    scene = generate_scene(100003, SMALL, NoiseConfig(missing_fraction=0.05))
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[img["id"]])):
        m = coco.annToMask(ann).astype(bool)
        assert m.sum() == ann["area"]
        ids = np.unique(scene.instance_map[m])
        assert len(ids) == 1 and scene.objects[ids[0] - 1].category == ann["category_name"]
    from PIL import Image

    d = np.asarray(Image.open(path.parent / "images" / img["depth_file"]))
    assert np.array_equal(d == 0, scene.depth_noisy == 0)  # holes stay holes
    assert (d == 0).mean() > 0.02


def test_scene_annotations_ids_and_options(scenes):
    s = scenes[1]
    image, anns = scene_annotations(s, 7, "a.jpg", "depth/a.png", 100, include_gravity=False, depth_scale=5000.0)
    assert image["id"] == 7 and image["depth_scale"] == 5000.0 and "gravity_cam" not in image
    assert all(a["image_id"] == 7 and a["id"] >= 100 for a in anns)
    for a in anns:
        assert 0 < a["visibility"] <= 1 and 0 <= a["truncation"] < 1
