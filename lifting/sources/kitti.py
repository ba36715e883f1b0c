"""KITTI 3D object detection, in its native layout -> image records with GT 3D boxes.

    SPLIT/image_2/NNNNNN.png     left colour camera (camera 2), ~1242x375
    SPLIT/label_2/NNNNNN.txt     type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry
    SPLIT/calib/NNNNNN.txt       P0..P3 (3x4), R0_rect (3x3), Tr_velo_to_cam (3x4), ...
    SPLIT/velodyne/NNNNNN.bin    float32 x, y, z, reflectance (LiDAR frame)
    SPLIT/disparity/NNNNNN_left_disparity.png (or NNNNNN.png)  dense stereo disparity,
                                 uint16 / 256 = pixels (an estimate, not ground truth)

`--annotations SPLIT` (the folder holding label_2/ and calib/), `--images` defaults to
SPLIT/image_2. Option `sensor_depth`: `velodyne` (default; the sweep projected into
image_2, sparse: a few % of the pixels) or `disparity` (dense stereo). Test splits without
label_2/ give frames without objects.

Conventions (the KITTI devkit's readme):
- Labels live in the *rectified camera-0* frame; image_2 is seen by camera 2, whose
  projection is P2 = K2 [I | t]: a point maps to camera 2's frame as X + t,
  t = K2^-1 P2[:, 3] (~6 cm along x). Boxes and points are moved into that frame, so
  that K = K2 and the image agree exactly (the project's camera frame is the image's).
- (x, y, z) is the **bottom centre** of the box (y points down), h w l its height, width
  and length; the length runs along the object's x axis, rotated by ry about y:
  x_axis = (cos ry, 0, -sin ry). In the project's [w, h, l] order that is
  [l_kitti, h, w_kitti] with the box x axis along the length.
- LiDAR -> camera 2: X = R0_rect Tr_velo_to_cam [x y z 1] + t.
- Disparity -> depth: z = fx * B / d with fx * B = P2[0, 3] - P3[0, 3] (B ~ 0.54 m).
- `DontCare` regions are not objects: counted as `ignored_category`.
- Gravity is not given: the cameras are mounted level, and the lifter estimates the road
  plane (option `gravity="planes"` takes the dataset's planes/NNNNNN.txt road plane).
"""
from __future__ import annotations

import math
import os
from typing import Iterator

import numpy as np

from lifting.records import ErrorRecord
from lifting.sources import SourceConfigError, is_float_text
from lifting.sources.image_io import image_size
from lifting.sources.real3d import Frame, GTObject3D, Real3DSource, gt_box_dict, require_dir

IGNORED = {"DontCare"}


def read_calib(path: str) -> dict[str, np.ndarray]:
    """KITTI calib file -> {name: (rows, cols) float64}: P0..P3 (3, 4), R0_rect (3, 3),
    Tr_velo_to_cam / Tr_imu_to_velo (3, 4). Raises ValueError on a malformed file."""
    shapes = {"R0_rect": (3, 3), "R_rect": (3, 3)}
    out = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            if ":" not in line:
                continue
            name, vals = line.split(":", 1)
            nums = [float(v) for v in vals.split()]
            name = name.strip()
            shape = shapes.get(name, (3, 4))
            if len(nums) != shape[0] * shape[1]:
                raise ValueError(f"{path}: {name} has {len(nums)} numbers, expected {shape[0] * shape[1]}")
            out[name] = np.asarray(nums, dtype=np.float64).reshape(shape)
    for need in ("P2", "R0_rect", "Tr_velo_to_cam"):
        if need not in out:
            raise ValueError(f"{path}: no {need}")
    return out


def camera2(calib: dict) -> tuple[np.ndarray, np.ndarray]:
    """(K (3, 3), t (3,)) of camera 2: P2 = K [I | t]."""
    P2 = calib["P2"]
    K = P2[:, :3].copy()
    return K, np.linalg.solve(K, P2[:, 3])


def velo_to_cam2(calib: dict) -> np.ndarray:
    """(4, 4) LiDAR frame -> camera-2 frame (metres)."""
    _, t = camera2(calib)
    R0 = np.eye(4)
    R0[:3, :3] = calib["R0_rect"]
    Tr = np.vstack([calib["Tr_velo_to_cam"], [0.0, 0.0, 0.0, 1.0]])
    T2 = np.eye(4)
    T2[:3, 3] = t
    return T2 @ R0 @ Tr


def parse_label_line(line: str, t: np.ndarray) -> GTObject3D | None:
    """One label_2 line -> GTObject3D in the camera-2 frame (None for blank lines).

    Raises ValueError for a line that is not 15 (or 16, with a score) fields."""
    f = line.split()
    if not f:
        return None
    if len(f) not in (15, 16):
        raise ValueError(f"{len(f)} fields")
    typ = f[0]
    trunc, occ, alpha = float(f[1]), int(float(f[2])), float(f[3])
    bbox = [float(v) for v in f[4:8]]
    h, w, l_, x, y, z, ry = (float(v) for v in f[8:15])
    attrs = {"truncated": trunc, "occluded": occ, "alpha": alpha}
    if typ in IGNORED:
        return GTObject3D(ann_id="", category_raw=typ, bbox_xyxy=bbox, gt_box3d=None, attributes=attrs,
                          ignore="ignored_category")
    center = np.array([x, y - h / 2.0, z]) + t  # bottom centre -> centre, camera 0 -> camera 2
    box = gt_box_dict(center, (l_, h, w), (math.cos(ry), 0.0, -math.sin(ry)), (0.0, 1.0, 0.0))
    return GTObject3D(ann_id="", category_raw=typ, bbox_xyxy=bbox, gt_box3d=box, attributes=attrs)


def road_plane_gravity(path: str) -> list[float] | None:
    """Gravity ("down", camera frame) from a KITTI planes/NNNNNN.txt road plane (a b c d,
    normal pointing up), or None when the file is unusable."""
    try:
        with open(path, encoding="utf-8") as f:
            nums = [float(v) for line in f for v in line.split() if is_float_text(v)]
    except OSError:
        return None
    if len(nums) < 4:
        return None
    n = -np.asarray(nums[-4:-1])
    norm = np.linalg.norm(n)
    return (n / norm).tolist() if norm > 0 and n[1] > 0 else None


class KittiSource(Real3DSource):
    """KITTI object layout (module docstring); options: sensor_depth, gravity ("estimate" | "planes")."""

    name = "kitti"
    depth_kinds = ("velodyne", "disparity")

    def __init__(self, annotations=None, images=None, *, gravity: str = "estimate", **kw):
        super().__init__(annotations=annotations, images=images, **kw)
        self.split = require_dir(self.annotations, "split (with calib/ and label_2/)", self.name)
        if not os.path.isdir(os.path.join(self.split, "calib")):
            raise SourceConfigError(f"kitti: no calib/ folder in {self.split}")
        if self.images is None:
            self.images = os.path.join(os.path.abspath(self.split), "image_2")
        require_dir(self.images, "image_2", self.name)
        if gravity not in ("estimate", "planes"):
            raise SourceConfigError(f"kitti: gravity must be 'estimate' or 'planes', got {gravity!r}")
        self.gravity = gravity

    def _depth(self, fid: str, calib: dict) -> tuple[str | None, dict]:
        if self.sensor_depth == "velodyne":
            path = os.path.join(self.split, "velodyne", f"{fid}.bin")
            return path, {"depth_encoding": "points",
                          "depth_params": {"columns": 4, "to_cam": velo_to_cam2(calib).tolist()}}
        for name in (f"{fid}_left_disparity.png", f"{fid}.png"):
            path = os.path.join(self.split, "disparity", name)
            if os.path.isfile(path):
                break
        fb = float(calib["P2"][0, 3] - calib["P3"][0, 3]) if "P3" in calib else None
        return path, {"depth_encoding": "disparity16", "depth_scale": 256.0,
                      "depth_params": {"focal_baseline": fb}}

    def frames(self) -> Iterator[Frame | ErrorRecord]:
        names = sorted(n for n in os.listdir(self.images) if n.lower().endswith((".png", ".jpg")))
        for n in names:
            fid = os.path.splitext(n)[0]
            try:
                calib = read_calib(os.path.join(self.split, "calib", f"{fid}.txt"))
            except FileNotFoundError:
                yield self.error("calib_missing", "image", image_id=fid)
                continue
            except (OSError, ValueError) as e:
                yield self.error("calib_invalid", "image", image_id=fid, detail=str(e))
                continue
            path = os.path.join(self.images, n)
            try:
                W, H = image_size(path)
            except Exception as e:  # noqa: BLE001 - any decoder failure is this image's
                yield self.error(getattr(e, "reason", "image_unreadable"), "image", image_id=fid, detail=str(e))
                continue
            K, t = camera2(calib)
            depth_path, depth = self._depth(fid, calib)
            fr = Frame(image_id=fid, image_path=path, width=W, height=H, K=K.tolist(), depth_path=depth_path, **depth,
                       extra={"dataset": "kitti", "depth_kind": self.sensor_depth})
            if self.gravity == "planes":
                fr.gravity_cam = road_plane_gravity(os.path.join(self.split, "planes", f"{fid}.txt"))
            label = os.path.join(self.split, "label_2", f"{fid}.txt")
            if os.path.isfile(label):
                with open(label, encoding="utf-8") as f:
                    for i, line in enumerate(f):
                        try:
                            o = parse_label_line(line, t)
                        except ValueError as e:
                            fr.objects.append(GTObject3D(ann_id=f"{fid}-{i}", category_raw="?", bbox_xyxy=None,
                                                         gt_box3d=None, ignore="ann_malformed",
                                                         attributes={"detail": str(e)}))
                            continue
                        if o is not None:
                            o.ann_id = f"{fid}-{i}"
                            fr.objects.append(o)
            yield fr
