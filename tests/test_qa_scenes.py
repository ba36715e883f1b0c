"""Synthetic image records with known 3D boxes for the QA tests (helpers + their own checks).

Records are built from gravity-frame boxes (x right, y down, z forward, metres) with a
tilted camera, so "above" (along gravity) differs from the image's y axis.
"""
from __future__ import annotations

import math
import random

import numpy as np

from lifting.boxes import Box3D, gravity_frame
from lifting.camera import K_from_fov
from lifting.resources import validation_error

CATEGORIES = ["chair", "table", "lamp", "sofa", "cup", "plant", "book", "tv"]
W, H = 640, 480


def gravity_from_tilt(pitch_deg: float, roll_deg: float) -> list[float]:
    """'Down' in the camera frame of a camera pitched (about x) and rolled (about z)."""
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    Rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    Rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    g = Rz @ Rx @ np.array([0.0, 1.0, 0.0])
    return [float(v) for v in g / np.linalg.norm(g)]


def make_object(oid: str, category: str, p_grav, dims, yaw: float, gravity_cam, status: str = "kept") -> dict:
    """One image-record object from a gravity-frame centre (metres), dims (w, h, l) and yaw."""
    G = gravity_frame(gravity_cam)
    c_cam = np.asarray(p_grav, dtype=np.float64) @ G.T
    box = Box3D.from_gravity(c_cam, dims, yaw, gravity_cam)
    return {
        "object_id": oid, "category": category, "bbox_xyxy": [0.0, 0.0, 10.0, 10.0],
        "status": status, "reason": None if status == "kept" else "low_proj_iou",
        "box3d": box.to_omni3d(),
    }


def make_record(key: str, objects: list[dict], gravity_cam=(0.0, 1.0, 0.0)) -> dict:
    """An image record (schemas/image_record.schema.json) holding `objects`."""
    return {
        "schema_version": 1, "key": key, "source": "synthetic", "image_id": key, "width": W, "height": H,
        "K": K_from_fov(W, H, 60.0).tolist(), "K_source": "dataset", "depth_source": "sensor",
        "gravity_cam": [float(v) for v in gravity_cam], "gravity_source": "dataset",
        "status": "lifted", "reason": None, "objects": objects,
    }


def random_record(seed: int, n_objects: int = 7, n_rejected: int = 1, tilt: bool = True) -> dict:
    """A random room-like scene: objects on the floor (1.4 m below the camera) or on top of
    others, categories drawn with repeats, a tilted camera, plus rejected objects."""
    rng = random.Random(seed)
    g = gravity_from_tilt(rng.uniform(-20, 20), rng.uniform(-8, 8)) if tilt else [0.0, 1.0, 0.0]
    objs = []
    for i in range(n_objects + n_rejected):
        w, h, l = rng.uniform(0.2, 1.8), rng.uniform(0.1, 1.8), rng.uniform(0.2, 1.8)
        base = 1.4 if rng.random() < 0.7 else rng.uniform(0.3, 1.0)  # floor or a raised surface
        z = rng.uniform(1.5, 8.0)
        p = [rng.uniform(-0.5, 0.5) * z, base - h / 2, z]  # inside a ~53 degree horizontal field of view
        status = "kept" if i < n_objects else "rejected"
        objs.append(make_object(f"{seed}-{i}", rng.choice(CATEGORIES[:5]), p, [w, h, l], rng.uniform(-3, 3), g, status))
    rng.shuffle(objs)
    return make_record(f"synthetic_{seed}", objs, g)


def test_random_record_is_a_valid_image_record():
    for s in range(5):
        rec = random_record(s)
        assert validation_error(rec, "image_record") is None


def test_make_object_places_the_centre_in_the_gravity_frame():
    g = gravity_from_tilt(15.0, 5.0)
    o = make_object("a", "cup", [0.5, 1.0, 3.0], [0.1, 0.2, 0.1], 0.3, g)
    back = np.asarray(o["box3d"]["center_cam"]) @ gravity_frame(g)
    assert np.allclose(back, [0.5, 1.0, 3.0])
