"""nuScenes keyframes through an mmdetection3d v1.x info file -> one image record per camera.

    INFO.pkl                      mmdetection3d v1.x info ({"metainfo", "data_list"})
    IMAGES/<img_path>             or IMAGES/samples/CAM_*/<img_path>  (1600x900 JPEGs)
    IMAGES/<lidar_path>           or IMAGES/samples/LIDAR_TOP/<lidar_path>
                                  (`*.pcd.bin`: float32 x, y, z, intensity, ring)

`--annotations INFO.pkl`, `--images` defaults to the pkl's folder (the flat layout of
../shared/data/real3d/nuscenes); the real nuScenes tree (samples/CAM_FRONT/...) is found
under it too. Each `data_list` entry (one sample = one keyframe) gives one image record per
camera, image id `{token}__{CAM}`, object ids `{token}__{CAM}-{i}`. Option `sensor_depth`:
`lidar` (the only one: the LIDAR_TOP sweep projected into the camera, sparse, ~1-2 % of
the pixels). Option `gravity`: `estimate` (default: left to the lifter) or `ego` (the ego
vehicle's up axis, see below).

The info file is a pickle from a third party: it is read only through
`lifting.sources.safe_pickle.load_pickle` (containers, numbers, strings, numpy); a file
naming any other global is refused as a whole (SourceConfigError) before anything in it runs.

Conventions (measured on the 84 camera boxes of the development keyframe, projected IoU
against the stored 2D `bbox` and LiDAR points inside the box, all 6 cameras):
- GT comes from `cam_instances[CAM]`: `bbox_3d = [x, y, z, l, h, w, yaw]` in that camera's
  OpenCV frame. (x, y, z) is the **box centre** (gravity centre), not the bottom centre;
  yaw turns the box about the camera's y axis with heading x_axis = (cos yaw, 0, -sin yaw)
  (KITTI's sign), and the length l runs along the heading. In the project's [w, h, l] that
  is [l, h, w] with the box x axis along the length.
      convention (heading, size along it, centre)   median / mean IoU   LiDAR pts inside
      (cos, 0, -sin), l, centre      (kept)           0.946 / 0.945        1597
      (cos, 0, +sin), l, centre                       0.893 / 0.853        1092
      (cos, 0, -sin), w, centre                       0.813 / 0.770         490
      (cos, 0, +sin), w, centre                       0.794 / 0.723         793
      any of the above read as bottom centre          0.31 - 0.35       216 - 793
  The heading also points along the stored camera-frame velocity (x, z) of all 30 moving
  objects (cosine >= 0.988), so it is the front, not only the axis; and the `instances`
  (LiDAR frame, [x, y, z, l, w, h, yaw], centre) moved by `lidar2cam` land on the camera
  boxes' centres within 1e-6 m.
- K = `cam2img` (3x3, or the upper-left 3x3 of a padded 4x4).
- LiDAR -> camera = `lidar2cam` (4x4). It is *not* inv(cam2ego) @ lidar2ego: mmdetection3d
  chains through the global frame with the ego poses at the LiDAR's and at the camera's
  timestamps (the car moves between them), which differs by up to 0.33 m here; without
  `lidar2cam` a camera is `calib_invalid`. Points carry `lidar_points.num_pts_feats` (5)
  float32 values each.
- Categories: `metainfo.categories` (name -> label) inverted; `bbox_label_3d` (or
  `bbox_label`) names the class; names are normalised by the base ("traffic_cone" ->
  "traffic cone"). Attributes: `attr_label` and its nuScenes name (mmdetection3d's
  order: cycle.with_rider, cycle.without_rider, pedestrian.moving, pedestrian.standing,
  pedestrian.sitting_lying_down, vehicle.moving, vehicle.parked, vehicle.stopped, None),
  `velocity` (camera x, z, m/s; None where nuScenes has no neighbour frame to derive it),
  `depth`, `center_2d`, and, when an info file carries it, `visibility` (a nuScenes level
  1-4 becomes `visibility_level` and `visibility` = its bin's middle fraction 0.2/0.5/0.7/0.9,
  the scale of `lift3d eval --gt-filter omni3d`).
- Gravity `ego`: the ego frame's z is up, so down in the camera = R_ego->cam (0, 0, -1),
  R_ego->cam = cam2ego[:3, :3]^T. Here 0.2-1.1 degrees from the camera's y axis; a plane fit
  to the LiDAR ground points (3-20 m) is within 0.25 degrees of ego z, while the global
  frame's z (through `ego2global`) is 1.4 degrees off it, so the ego axis is the one offered.
- Object errors (counted, not lifted): `behind_camera` (box centre at z <= 0),
  `bbox_missing` (no 2D box), `unknown_category`, `ann_malformed`. Image errors:
  `image_missing` / `depth_missing` (the file is in neither place), `image_path_invalid` /
  `image_path_outside_root` / `depth_path_...` (file names from the pickle are untrusted),
  `calib_invalid`, `sample_malformed`; the objects of a failed image are
  `parent_image_failed`, so the accounting identity holds.
"""
from __future__ import annotations

import math
import os
import pickle
from typing import Iterator

import numpy as np

from lifting.records import ErrorRecord
from lifting.sources import SourceConfigError
from lifting.sources.image_io import image_size
from lifting.sources.real3d import Frame, GTObject3D, Real3DSource, gt_box_dict, require_dir
from lifting.sources.safe_pickle import UnsafePickleError, load_pickle

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
#: mmdetection3d's nuScenes attribute order (attr_label -> name).
ATTRIBUTES = ("cycle.with_rider", "cycle.without_rider", "pedestrian.moving", "pedestrian.standing",
              "pedestrian.sitting_lying_down", "vehicle.moving", "vehicle.parked", "vehicle.stopped", "None")
GRAVITY_MODES = ("estimate", "ego")
#: nuScenes visibility tokens -> the middle of their visible-fraction bin.
VISIBILITY_LEVELS = {"1": 0.2, "2": 0.5, "3": 0.7, "4": 0.9}


def _matrix(v, shapes=((4, 4),)) -> np.ndarray | None:
    """v as a finite float64 array of one of `shapes`, else None."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.shape in shapes and bool(np.all(np.isfinite(a))) else None


def _intrinsics(v) -> np.ndarray | None:
    a = _matrix(v, ((3, 3), (3, 4), (4, 4)))
    return None if a is None else a[:3, :3].copy()


def _plain(v):
    """JSON-safe Python value of a pickle field (numpy scalars/arrays -> float/int/list,
    NaN/inf -> None)."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if isinstance(v, (np.bool_, bool)):
        return bool(v)
    if isinstance(v, (np.integer, int)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        return float(v) if math.isfinite(v) else None  # nuScenes velocity is NaN without a neighbour frame
    return v if isinstance(v, str) or v is None else str(v)


def _floats(v, n: int) -> list[float] | None:
    """v as n finite floats, else None."""
    if isinstance(v, (str, bytes, dict)):
        return None
    try:
        a = [float(x) for x in v]
    except (TypeError, ValueError, OverflowError):
        return None
    return a if len(a) == n and all(math.isfinite(x) for x in a) else None


def _visibility(v) -> dict:
    """nuScenes visibility: a level 1-4 (token "1".."4": 0-40, 40-60, 60-80, 80-100 % visible)
    becomes `visibility_level` and `visibility` = the bin's middle fraction; a fraction in
    [0, 1] is kept as `visibility`; anything else is kept as text under `visibility_raw`."""
    if isinstance(v, (str, int, np.integer)) and not isinstance(v, bool) and str(v).strip() in VISIBILITY_LEVELS:
        level = int(str(v).strip())
        return {"visibility_level": level, "visibility": VISIBILITY_LEVELS[str(level)]}
    if isinstance(v, (float, np.floating)) and 0.0 <= float(v) <= 1.0:
        return {"visibility": float(v)}
    return {"visibility_raw": str(_plain(v))}


def camera_box(bbox_3d) -> dict | None:
    """mmdetection3d camera box [x, y, z, l, h, w, yaw] (centre, OpenCV camera frame) ->
    the project's box (see the module docstring for the measured convention), or None
    when it is not 7 finite numbers."""
    b = _floats(bbox_3d, 7)
    if b is None:
        return None
    x, y, z, l_, h, w, yaw = b
    return gt_box_dict((x, y, z), (l_, h, w), (math.cos(yaw), 0.0, -math.sin(yaw)), (0.0, 1.0, 0.0))


def ego_gravity(cam2ego) -> list[float] | None:
    """Down in the camera frame from the camera's pose in the ego frame (ego z is up)."""
    T = _matrix(cam2ego)
    if T is None:
        return None
    g = T[:3, :3].T @ np.array([0.0, 0.0, -1.0])
    n = float(np.linalg.norm(g))
    return (g / n).tolist() if n > 0 else None


class NuScenesSource(Real3DSource):
    """nuScenes through an mmdetection3d v1.x info .pkl (module docstring); options:
    sensor_depth ("lidar"), gravity ("estimate" | "ego")."""

    name = "nuscenes"
    depth_kinds = ("lidar",)

    def __init__(self, annotations=None, images=None, *, gravity: str = "estimate", **kw):
        kw.setdefault("check_files", True)
        super().__init__(annotations=annotations, images=images, **kw)
        if not self.annotations or not os.path.isfile(self.annotations):
            raise SourceConfigError(f"nuscenes: --annotations must be an mmdetection3d info .pkl, "
                                    f"not found: {self.annotations}")
        if self.images is None:
            self.images = os.path.dirname(os.path.abspath(self.annotations))
        require_dir(self.images, "images", self.name)
        if gravity not in GRAVITY_MODES:
            raise SourceConfigError(f"nuscenes: gravity must be one of {', '.join(GRAVITY_MODES)}, got {gravity!r}")
        self.gravity = gravity
        self.info: dict | None = None
        self.label_names: dict[int, str] = {}

    def prepare(self) -> None:
        try:
            info = load_pickle(self.annotations)
        except UnsafePickleError as e:
            raise SourceConfigError(f"nuscenes: refusing {self.annotations}: {e}") from e
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError,
                IndexError, KeyError, MemoryError, OSError) as e:
            raise SourceConfigError(f"nuscenes: cannot read {self.annotations} as a pickle: "
                                    f"{type(e).__name__}: {e}") from e
        if not isinstance(info, dict) or not isinstance(info.get("data_list"), list):
            hint = " (an mmdetection3d v0.x file with 'infos'? convert it with update_infos_to_v2)" \
                if isinstance(info, dict) and "infos" in info else ""
            raise SourceConfigError(f"nuscenes: {self.annotations} is not an mmdetection3d v1.x info file "
                                    f"(a dict with a 'data_list' list){hint}")
        cats = (info.get("metainfo") or {}).get("categories") if isinstance(info.get("metainfo"), dict) else None
        self.label_names = {}
        if isinstance(cats, dict):
            for name, label in cats.items():
                if isinstance(name, str) and isinstance(label, (int, np.integer)) and not isinstance(label, bool):
                    self.label_names.setdefault(int(label), name)
        self.info = info

    # -- files ----------------------------------------------------------------------------
    def _find(self, name, sub: str, prefix: str) -> tuple[str | None, str | None, str]:
        """(path, error reason, detail): `name` in the images folder, else in samples/{sub}/."""
        bad = self.path_problem(name, prefix)
        if bad:
            return None, bad[0], bad[1]
        if "://" in name:
            return None, f"{prefix}_path_invalid", f"remote file {name!r} is not supported"
        direct = self.image_path(name)
        for cand in (direct, os.path.join(self.images, "samples", sub, os.path.basename(name))):
            if os.path.isfile(cand):
                return cand, None, ""
        return None, f"{prefix}_missing", direct

    # -- frames ---------------------------------------------------------------------------
    def _failed(self, reason: str, image_id: str, anns, detail: str = "") -> Iterator[ErrorRecord]:
        yield self.error(reason, "image", image_id=image_id, detail=detail)
        for i in range(len(anns) if isinstance(anns, list) else 0):
            yield self.error("parent_image_failed", "object", image_id=image_id, ann_id=f"{image_id}-{i}")

    def _object(self, ci, ann_id: str) -> GTObject3D:
        if not isinstance(ci, dict):
            return GTObject3D(ann_id=ann_id, category_raw="?", bbox_xyxy=None, gt_box3d=None, ignore="ann_malformed",
                              attributes={"detail": f"not a dict: {type(ci).__name__}"})
        label = ci.get("bbox_label_3d", ci.get("bbox_label"))
        name = self.label_names.get(int(label)) if isinstance(label, (int, np.integer)) \
            and not isinstance(label, bool) else None
        attrs: dict = {}
        a = ci.get("attr_label")
        if isinstance(a, (int, np.integer)) and not isinstance(a, bool):
            attrs["attr_label"] = int(a)
            if 0 <= int(a) < len(ATTRIBUTES):
                attrs["attribute"] = ATTRIBUTES[int(a)]
        for k in ("velocity", "depth", "center_2d", "bbox_3d_isvalid"):
            if k in ci:
                attrs[k] = _plain(ci[k])
        if "visibility" in ci:
            attrs.update(_visibility(ci["visibility"]))
        raw = name if name is not None else f"label_{_plain(label)}"
        box = camera_box(ci.get("bbox_3d"))
        bbox = ci.get("bbox")
        ignore = None
        if name is None:
            ignore = "unknown_category"
        elif box is None:
            ignore = "ann_malformed"
            attrs["detail"] = f"bbox_3d={_plain(ci.get('bbox_3d'))!r}"
        elif box["center_cam"][2] <= 0:
            ignore = "behind_camera"
        elif bbox is None or (isinstance(bbox, (list, tuple, np.ndarray)) and len(bbox) == 0):
            ignore = "bbox_missing"
        bxyxy = None
        if ignore is None:
            bxyxy = _floats(bbox, 4)
            if bxyxy is None:  # the base turns a missing box into bbox_malformed
                attrs["detail"] = f"bbox={_plain(bbox)!r}"
        return GTObject3D(ann_id=ann_id, category_raw=raw, bbox_xyxy=bxyxy, gt_box3d=box, attributes=attrs,
                          ignore=ignore)

    def frames(self) -> Iterator[Frame | ErrorRecord]:
        if self.info is None:
            self.prepare()
        for n, s in enumerate(self.info["data_list"]):
            token = s.get("token") if isinstance(s, dict) else None
            sid = token if isinstance(token, str) and token else f"sample{n}"
            images = s.get("images") if isinstance(s, dict) else None
            if not isinstance(images, dict):
                yield self.error("sample_malformed", "image", image_id=sid, detail="no 'images' dict")
                continue
            cam_inst = s.get("cam_instances")
            cam_inst = cam_inst if isinstance(cam_inst, dict) else {}
            lidar = s.get("lidar_points") if isinstance(s.get("lidar_points"), dict) else {}
            order = [c for c in CAMERAS if c in images] + sorted(str(c) for c in images if c not in CAMERAS)
            for cam in order:
                yield from self._camera(s, sid, cam, images[cam], cam_inst.get(cam), lidar)

    def _camera(self, s: dict, sid: str, cam: str, info, anns, lidar: dict) -> Iterator[Frame | ErrorRecord]:
        iid = f"{sid}__{cam}"
        anns = [] if anns is None else list(anns) if isinstance(anns, (list, tuple)) else anns
        if not isinstance(info, dict) or not isinstance(anns, list):
            what = f"images[{cam!r}]" if not isinstance(info, dict) else f"cam_instances[{cam!r}]"
            yield from self._failed("sample_malformed", iid, anns, f"{what} is not a dict / list")
            return
        img, reason, detail = self._find(info.get("img_path"), cam, "image")
        if reason:
            yield from self._failed(reason, iid, anns, detail)
            return
        K, to_cam = _intrinsics(info.get("cam2img")), _matrix(info.get("lidar2cam"))
        cols = lidar.get("num_pts_feats", 5)
        if K is None or to_cam is None:
            yield from self._failed("calib_invalid", iid, anns, f"{cam}: cam2img (3x3) and lidar2cam (4x4) needed")
            return
        if not isinstance(cols, (int, np.integer)) or isinstance(cols, bool) or int(cols) < 3:
            yield from self._failed("calib_invalid", iid, anns, f"lidar_points.num_pts_feats={_plain(cols)!r}")
            return
        depth, reason, detail = self._find(lidar.get("lidar_path"), "LIDAR_TOP", "depth")
        if reason:
            yield from self._failed(reason, iid, anns, detail)
            return
        try:
            W, H = image_size(img)
        except Exception as e:  # noqa: BLE001 - any decoder failure is this image's
            yield from self._failed(getattr(e, "reason", "image_unreadable"), iid, anns, str(e))
            return
        fr = Frame(image_id=iid, image_path=img, width=W, height=H, K=K.tolist(), depth_path=depth,
                   depth_encoding="points", depth_params={"columns": int(cols), "to_cam": to_cam.tolist()},
                   extra={"dataset": "nuscenes", "depth_kind": self.sensor_depth, "camera": cam,
                          "sample_token": _plain(s.get("token")), "timestamp": _plain(info.get("timestamp"))})
        if self.gravity == "ego":
            fr.gravity_cam = ego_gravity(info.get("cam2ego"))
        for i, ci in enumerate(anns):
            fr.objects.append(self._object(ci, f"{iid}-{i}"))
        yield fr
