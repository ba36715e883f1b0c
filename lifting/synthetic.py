"""Synthetic RGB-D scenes with exact ground truth, rendered by ray casting.

A scene is a room (floor, back and side walls, ceiling) with several objects standing on
the floor: cuboids, vertical cylinders, spheres and an L-shaped "chair" (seat block plus
backrest, a non-box shape). The camera stands at a random height with random pitch and
roll. Every pixel's ray is intersected analytically with every surface, so depth, instance
masks, intrinsics, gravity and the objects' metric 3D boxes are exact.

World frame (internal): the gravity frame of the scene, origin on the floor below the
camera, +y down (floor is y = 0, so objects have y < 0), +z forward (horizontal), +x right.
Everything returned is in the camera frame (OpenCV: +x right, +y down, +z forward, metres).

Boxes of rotationally symmetric objects (cylinders, spheres) face the camera: their yaw is
that of the horizontal viewing ray to their centre (any yaw bounds them equally; this
convention makes the GT unique and is what the lifting core reproduces).

Written by hand because no library renders analytic scenes with exact per-pixel depth,
instance ids and amodal boxes without a GPU/OpenGL context; numpy ray casting over 0.3 MP
takes a few tens of milliseconds.

Layouts (`SceneConfig.layout`):
    basic    the scenes above (default; a regression set, kept bit-for-bit).
    indoor   `SceneConfig.realistic_indoor()`: a closed room seen from a random point and
             heading, with composite furniture (tables on four legs, chairs with legs and a
             backrest, beds with a headboard, open shelves and bookshelves, night stands,
             sofas, cabinets) placed like real rooms: backs against walls, chairs pushed
             under tables, night stands beside beds, unannotated clutter on tables, shelves
             and the floor.
    outdoor  `SceneConfig.realistic_outdoor()`: a KITTI-like street (1242 x 375, fx ~ 720,
             camera 1.6-1.7 m above the road, level): a road plane, raised sidewalks,
             building facades and a far wall, sky (depth 0), parked rows of cars touching and
             occluding each other, moving cars, pedestrians, cyclists, traffic cones and
             barriers, unannotated poles, trees and bins.
             `SceneConfig.realistic_street_far()` (scene name `street_far`): the same street
             seen like a nuScenes front camera (1600 x 900, fov_x ~ 65 deg, 1.5 m high) out to
             80 m, often with a cross street ahead, crowds of pedestrians, long barrier rows
             and queues of cars hiding each other (`StreetMix` says how many of each).
    A composite's GT box is the amodal box of all its parts (`SceneObject.parts`). The 2D box
    is the modal (visible-mask) box, as in KITTI, SUN RGB-D and COCO, or with
    `SceneConfig.boxes_2d = "amodal"` the projection of the GT box clipped to the image, as in
    nuScenes (`SceneObject.bbox_amodal_xyxy`); objects with fewer than `min_visible_pixels`
    visible pixels keep their pixels in the instance map but are not annotated
    (`SceneObject.annotated`); clutter is background (instance 0).

Sensors (`NoiseConfig.sensor`, default none): `KinectModel` (projector shadows, range
limit, missing patches, disparity quantisation), `LidarModel` (sparse scan lines of a
level spinning LiDAR projected into the image), `StereoModel` (dense, fattened and
blurred edges, noise growing with z^2) and `MonoModel` (dense, global scale bias, smooth
distortion, blurred edges); presets `NoiseConfig.kinect()`, `.lidar()` (64 beams, KITTI's
HDL-64E), `.lidar32()` (32 beams, nuScenes' HDL-32E), `.stereo()`, `.mono()`. They act on the
exact depth; `Scene.depth` stays exact.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from lifting.boxes import Box3D, gravity_frame, project_box, rot_y, wrap_angle
from lifting.camera import K_from_fov

#: Catalogue: category -> (shape, (min dims), (max dims)); dims are (w, h, l) metres, for
#: cylinders/spheres w = l = diameter.
CATALOGUE: dict[str, tuple[str, tuple[float, float, float], tuple[float, float, float]]] = {
    "cabinet": ("cuboid", (0.5, 0.8, 0.4), (1.0, 1.8, 0.6)),
    "box": ("cuboid", (0.3, 0.25, 0.3), (0.6, 0.6, 0.6)),
    "sofa": ("cuboid", (1.5, 0.7, 0.8), (2.1, 0.9, 1.0)),
    "table": ("cuboid", (0.8, 0.7, 0.6), (1.5, 0.8, 1.0)),
    "trash can": ("cylinder", (0.3, 0.4, 0.3), (0.5, 0.7, 0.5)),
    "ball": ("sphere", (0.25, 0.25, 0.25), (0.6, 0.6, 0.6)),
    "chair": ("chair", (0.45, 0.8, 0.45), (0.6, 1.0, 0.6)),
}
CATEGORIES = list(CATALOGUE)

#: Categories of the realistic layouts (Omni3D / SUN RGB-D / KITTI spellings). They are
#: composites of several primitives, see the `_build_*` functions.
INDOOR_CATEGORIES = ("table", "chair", "bed", "night stand", "sofa", "shelves", "bookshelf", "cabinet")
OUTDOOR_CATEGORIES = ("car", "pedestrian", "cyclist", "traffic cone", "barrier")
#: Every category; ids (index + 1) of the basic CATEGORIES are unchanged.
ALL_CATEGORIES = CATEGORIES + [c for c in INDOOR_CATEGORIES + OUTDOOR_CATEGORIES if c not in CATEGORIES]
LAYOUTS = ("basic", "indoor", "outdoor")
BOXES_2D = ("modal", "amodal")


@dataclass
class StreetMix:
    """What the outdoor layout builds, group by group. Defaults: the KITTI-like streets of
    `SceneConfig.realistic_outdoor()` (changing a default changes those scenes).

    Lengths are metres (x across the street from the camera, z along it), counts inclusive
    ranges drawn once per scene, probabilities per scene (per group where said).
    """

    road_left: tuple[float, float] = (3.5, 10.0)  # camera to the left road edge
    road_right: tuple[float, float] = (2.5, 6.5)  # camera to the right road edge
    sidewalk: tuple[float, float] = (2.0, 5.0)  # sidewalk width, each side
    setback: tuple[float, float] = (0.0, 6.0)  # buildings behind the sidewalk, each side
    street_length: tuple[float, float] = (48.0, 58.0)  # camera z of the wall that closes the street
    cross_street: float = 0.0  # probability of a cross street (an intersection) ahead
    cross_share: float = 0.0  # with one: the share of car queues and pedestrian groups put in it
    parked_rows: tuple[float, float] = (0.7, 0.6)  # probability of a parked row at the left / right kerb
    moving_cars: tuple[int, int] = (0, 3)  # groups of moving cars
    queue: tuple[int, int] = (1, 1)  # cars per moving group, one behind the other in a lane
    pedestrian_groups: tuple[int, int] = (0, 3)
    group_join: tuple[float, ...] = (0.35, 0.15)  # probability that a 2nd, 3rd, ... person joins a group
    cyclists: tuple[int, int] = (0, 2)
    cone_lines: float = 0.5  # probability of a line of cones
    barrier_rows: tuple[float, ...] = (0.3,)  # probability of each row of barriers
    barrier_segments: tuple[int, int] = (2, 5)  # barriers end to end in a row


@dataclass
class SceneConfig:
    """What scenes look like. Angles in degrees, lengths in metres.

    The basic layout uses every field but `clutter` and `min_visible_pixels`. The indoor layout
    uses the camera fields, n_objects (annotated objects wanted), the room fields, categories
    (of INDOOR_CATEGORIES), clutter and min_visible_pixels; the outdoor layout the camera
    fields, n_objects, distance (camera z of the objects; the distances of each kind of object
    scale with its far end, see `_outdoor_layout`), categories (of OUTDOOR_CATEGORIES), clutter,
    min_visible_pixels and street. Every layout writes its 2D boxes as `boxes_2d` says.
    Presets: `realistic_indoor()`, `realistic_outdoor()`, `realistic_street_far()`.
    """

    width: int = 640
    height: int = 480
    fov_x_deg: tuple[float, float] = (55.0, 70.0)
    camera_height: tuple[float, float] = (1.2, 1.7)
    pitch_down_deg: tuple[float, float] = (5.0, 25.0)
    roll_deg: tuple[float, float] = (-5.0, 5.0)
    n_objects: tuple[int, int] = (4, 7)
    distance: tuple[float, float] = (1.8, 5.5)  # object centre distance along the floor
    occlusion: bool = False  # also place objects partly in front of others
    room_depth: tuple[float, float] = (7.0, 9.0)
    room_half_width: tuple[float, float] = (3.5, 5.0)
    room_height: float = 2.9
    categories: tuple[str, ...] = tuple(CATEGORIES)
    # realistic layouts only (the basic layout ignores these)
    layout: str = "basic"  # basic | indoor | outdoor (see the module docstring)
    clutter: tuple[int, int] = (0, 0)  # unannotated clutter items (occluders, background)
    min_visible_pixels: int = 1  # objects with fewer visible pixels are not annotated
    street: StreetMix = field(default_factory=StreetMix)  # outdoor layout: what the street holds
    # 2D box written to the annotations: modal (the visible mask's box: KITTI, SUN RGB-D, COCO)
    # or amodal (the GT 3D box projected and clipped to the image: nuScenes, Omni3D's bbox2D_proj)
    boxes_2d: str = "modal"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.boxes_2d not in BOXES_2D:
            raise ValueError(f"boxes_2d must be one of {BOXES_2D}, got {self.boxes_2d!r}")

    @classmethod
    def realistic_indoor(cls, width: int = 640, height: int = 480) -> "SceneConfig":
        """SUN RGB-D-like rooms seen by a Kinect-like camera (fov ~ 55-65 deg, 1.0-1.6 m high)."""
        return cls(width=width, height=height, fov_x_deg=(55.0, 65.0), camera_height=(1.0, 1.6),
                   pitch_down_deg=(0.0, 20.0), roll_deg=(-3.0, 3.0), n_objects=(3, 8),
                   room_depth=(3.5, 7.0), room_half_width=(1.6, 3.0), room_height=2.7,
                   categories=INDOOR_CATEGORIES, layout="indoor", clutter=(3, 10), min_visible_pixels=50)

    @classmethod
    def realistic_outdoor(cls, width: int = 1242, height: int = 375) -> "SceneConfig":
        """KITTI-like street: 1242 x 375, fx ~ 720 (fov_x ~ 81 deg), camera 1.6-1.7 m high, level."""
        return cls(width=width, height=height, fov_x_deg=(80.0, 83.0), camera_height=(1.6, 1.7),
                   pitch_down_deg=(-1.0, 2.0), roll_deg=(-1.0, 1.0), n_objects=(4, 16), distance=(4.0, 45.0),
                   categories=OUTDOOR_CATEGORIES, layout="outdoor", clutter=(2, 8), min_visible_pixels=50)

    @classmethod
    def realistic_street_far(cls, width: int = 1600, height: int = 900) -> "SceneConfig":
        """nuScenes-like street seen by a front camera: 1600 x 900, fx ~ 1260 (fov_x 64-65.5 deg),
        1.45-1.55 m above the road, level; objects out to 80 m, amodal 2D boxes.

        Measured on the real nuScenes keyframe of ../shared/data/real3d (84 camera boxes): the
        five 1600 x 900 cameras with fx 1257-1273 see 64.3-65.0 deg (the back one, fx 809, 89
        deg); the objects' camera z has median 35 m and 90th percentile 63 m (KITTI's frames
        stop at ~45 m): pedestrians to 67 m, in bunches (in the front camera 6 of them ~21 m
        to the right at 35-42 m, 9 more at 59-67 m), cars to 77 m (three driving across, 30-38
        m to the right at 64-70 m: a cross street), barriers in one row every ~2 m from 11 to
        46 m along the road edge; its `cam_instances` boxes are the projected 3D boxes. The mix
        below gives such streets: wider roads, buildings set further back, a cross street in 60
        % of the scenes, 1-5 pedestrian groups of up to 9, queues of 1-4 cars, barrier rows of
        4-16 segments. Objects showing fewer than 20 pixels are not annotated (nuScenes keeps
        boxes of objects the camera barely sees: its visibility level 1 is 0-40 % visible).
        """
        street = StreetMix(road_left=(5.0, 14.0), road_right=(3.0, 10.0), sidewalk=(2.5, 6.0), setback=(2.0, 15.0),
                           street_length=(95.0, 130.0), cross_street=0.6, cross_share=0.4,
                           parked_rows=(0.35, 0.35), moving_cars=(1, 4), queue=(1, 4), pedestrian_groups=(1, 5),
                           group_join=(0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1), cyclists=(0, 1), cone_lines=0.3,
                           barrier_rows=(0.7, 0.3), barrier_segments=(4, 16))
        return cls(width=width, height=height, fov_x_deg=(64.0, 65.5), camera_height=(1.45, 1.55),
                   pitch_down_deg=(-1.0, 1.5), roll_deg=(-1.0, 1.0), n_objects=(6, 30), distance=(4.0, 80.0),
                   categories=OUTDOOR_CATEGORIES, layout="outdoor", clutter=(2, 8), min_visible_pixels=20,
                   street=street, boxes_2d="amodal")

    @classmethod
    def named(cls, name: str) -> "SceneConfig":
        """Preset by name: basic (the default scenes), indoor, outdoor (KITTI-like) or street_far
        (nuScenes-like)."""
        presets = {"basic": cls, "indoor": cls.realistic_indoor, "outdoor": cls.realistic_outdoor,
                   "street_far": cls.realistic_street_far}
        if name not in presets:
            raise ValueError(f"scene must be one of {sorted(presets)}, got {name!r}")
        return presets[name]()


# ----------------------------------------------------------------------------- sensor models
@dataclass
class KinectModel:
    """Structured light (Kinect v1 / PrimeSense): IR camera + projector `baseline_m` apart.

    Background pixels that the projector cannot see next to a nearer surface (its shadow, on
    `shadow_side` of foreground objects) get no depth; so do pixels outside
    [min_range_m, max_range_m], random low-reflectance patches (`dropout_fraction` of the
    pixels, blobs ~ `patch_px` wide) and a fraction `edge_dropout` of the pixels on depth
    discontinuities. Valid depth gets axial noise sigma(z) = a + b (z - 0.4)^2 m (Nguyen et al.
    2012, a, b = `noise_sigma`) and is quantised in disparity steps of `disparity_step_px`
    (so the depth step grows with z^2).
    """

    name: str = field(default="kinect", init=False)
    baseline_m: float = 0.075
    focal_px: float | None = None  # None: the image's fx
    shadow_side: str = "left"  # left | right
    min_range_m: float = 0.5
    max_range_m: float = 7.0
    dropout_fraction: float = 0.03
    patch_px: int = 24
    edge_dropout: float = 0.5
    noise_sigma: tuple[float, float] = (0.0012, 0.0019)
    disparity_step_px: float = 0.125


@dataclass
class LidarModel:
    """A level spinning LiDAR (Velodyne HDL-64-like; `hdl32()`: nuScenes' HDL-32E) at the camera
    centre, projected into the image.

    `n_lines` beams evenly spaced in elevation over `elevation_deg` (degrees above the
    horizontal plane, i.e. about gravity), sampled every `azimuth_step_deg`; each return lands
    on the nearest pixel and keeps that pixel's depth plus Gaussian range noise
    (`range_sigma_m` along the ray). Returns beyond `max_range_m`, from the sky, and a random
    `dropout` fraction are missing. The real HDL-64 sits ~ 8 cm above and 27 cm behind the
    KITTI camera; that parallax is left out.
    """

    name: str = field(default="lidar", init=False)
    n_lines: int = 64
    elevation_deg: tuple[float, float] = (-24.9, 2.0)
    azimuth_step_deg: float = 0.17  # HDL-64E at 10 Hz: ~2000 returns per beam and turn
    range_sigma_m: float = 0.02
    max_range_m: float = 120.0
    dropout: float = 0.05

    @classmethod
    def hdl32(cls, **kw) -> "LidarModel":
        """nuScenes' Velodyne HDL-32E at 20 Hz. Measured on the real sweep of
        ../shared/data/real3d/nuscenes (34,688 points, ring = the beam): 32 rings of 1084 points
        each, median elevations -30.60 to +10.60 deg evenly 1.333 deg apart, median azimuth step
        0.333 deg on rings 7-31 (the lowest rings hit the ego car), farthest return 101 m. The
        sensor sits ~0.3 m above the cameras (a parallax left out, as for the HDL-64)."""
        return cls(**{"n_lines": 32, "elevation_deg": (-30.67, 10.67), "azimuth_step_deg": 0.333,
                      "max_range_m": 100.0, **kw})


@dataclass
class StereoModel:
    """Dense depth of a stereo matcher (KITTI-like: baseline 0.54 m).

    Disparity d = f b / z. On discontinuities (disparity range > `edge_jump_px` within a
    (2 `fatten_px` + 1)^2 window) the foreground fattens over the background, then a box blur
    of radius `blur_px` smears the band; Gaussian disparity noise `disparity_sigma_px` gives a
    depth noise sigma_z = z^2 sigma_d / (f b); `hole_fraction` of the pixels (3x3 blobs) and the
    sky are missing.
    """

    name: str = field(default="stereo", init=False)
    baseline_m: float = 0.54
    focal_px: float | None = None  # None: the image's fx
    disparity_sigma_px: float = 0.25
    # systematic disparity error: the KITTI stereo maps of ../shared/data/real3d read depth
    # 2-5 % far at 5-25 m, 13 % at 35 m and 20 % at 50 m against LiDAR inside the GT boxes,
    # i.e. disparities about 1.2 px short whatever the range (measured in session 3)
    disparity_bias_px: float = -1.2
    # matching errors are spatially correlated (a window of pixels shares its mismatch): a
    # smooth disparity error field of this sigma varying over `correlated_cell_px` pixels
    correlated_sigma_px: float = 0.6
    correlated_cell_px: float = 24.0
    fatten_px: int = 3
    blur_px: int = 2
    edge_jump_px: float = 1.5
    hole_fraction: float = 0.01


@dataclass
class MonoModel:
    """Dense depth like a monocular metric depth network's.

    depth = exact x s x exp(distortion field), with the global scale s ~ U(`scale_range`), a
    smooth field of standard deviation `distortion` (log units) that varies over ~
    1/`distortion_cells` of the image and has zero median, then a box blur of radius `blur_px`
    (edges blend). No holes: the sky gets the depth of the farthest surface.
    """

    name: str = field(default="mono", init=False)
    scale_range: tuple[float, float] = (0.85, 1.15)
    distortion: float = 0.06
    distortion_cells: int = 4
    blur_px: int = 3


SENSORS = ("kinect", "lidar", "stereo", "mono")


@dataclass
class NoiseConfig:
    """Sensor-like corruptions applied to the exact depth (all off by default)."""

    rel_sigma: float = 0.0  # relative Gaussian noise: z * (1 + N(0, rel_sigma))
    quant_coeff: float = 0.0  # disparity-like quantisation: step(z) = quant_coeff * z^2 (m)
    missing_fraction: float = 0.0  # fraction of pixels dropped (set to 0), in small blobs
    flying_pixels: bool = False  # blend depth across discontinuities on a 1-px band
    # a sensor model, applied to the exact depth before the corruptions above (None: off)
    sensor: KinectModel | LidarModel | StereoModel | MonoModel | None = None

    @classmethod
    def realistic(cls) -> "NoiseConfig":
        """The 'noisy' setting of the fidelity tests: 1% sigma, quantisation, holes, flying pixels."""
        return cls(rel_sigma=0.01, quant_coeff=0.0025, missing_fraction=0.05, flying_pixels=True)

    @classmethod
    def kinect(cls, **kw) -> "NoiseConfig":
        """Structured-light depth (see `KinectModel`; keyword arguments override its fields)."""
        return cls(sensor=KinectModel(**kw))

    @classmethod
    def lidar(cls, **kw) -> "NoiseConfig":
        """Sparse LiDAR depth on scan lines (see `LidarModel`), 64 beams like KITTI's HDL-64E."""
        return cls(sensor=LidarModel(**kw))

    @classmethod
    def lidar32(cls, **kw) -> "NoiseConfig":
        """Sparser LiDAR depth, 32 beams 1.33 deg apart like nuScenes' HDL-32E (`LidarModel.hdl32`)."""
        return cls(sensor=LidarModel.hdl32(**kw))

    @classmethod
    def stereo(cls, **kw) -> "NoiseConfig":
        """Dense stereo depth (see `StereoModel`)."""
        return cls(sensor=StereoModel(**kw))

    @classmethod
    def mono(cls, **kw) -> "NoiseConfig":
        """Monocular-network-like depth (see `MonoModel`)."""
        return cls(sensor=MonoModel(**kw))

    @classmethod
    def named(cls, name: str) -> "NoiseConfig":
        """Preset by name: none (exact depth), realistic, kinect, lidar (64 beams), lidar32 (32
        beams), stereo or mono."""
        presets = {"none": cls, "realistic": cls.realistic, "kinect": cls.kinect, "lidar": cls.lidar,
                   "lidar32": cls.lidar32, "stereo": cls.stereo, "mono": cls.mono}
        if name not in presets:
            raise ValueError(f"noise must be one of {sorted(presets)}, got {name!r}")
        return presets[name]()


@dataclass
class SceneObject:
    """One object of a scene with its exact ground truth (camera frame)."""

    instance_id: int  # value in Scene.instance_map
    category: str
    shape: str  # cuboid | cylinder | sphere | chair
    box: Box3D  # gravity-aligned GT box
    visible_pixels: int
    amodal_pixels: int  # pixels the object would cover alone (inside the image)
    truncation: float  # fraction of the projected GT box outside the image
    bbox_xyxy: tuple[float, float, float, float] | None  # visible-mask box, pixel edges
    annotated: bool = True  # False: too little visible (< SceneConfig.min_visible_pixels)
    parts: tuple = ()  # realistic layouts: the Primitive parts of a composite, camera frame
    # the GT box projected and clipped to the image (pixel edges; None: not in the image)
    bbox_amodal_xyxy: tuple[float, float, float, float] | None = None

    @property
    def visibility(self) -> float:
        return self.visible_pixels / self.amodal_pixels if self.amodal_pixels else 0.0


@dataclass
class Scene:
    rgb: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (H, W) float32 z-depth in metres, exact (0 = sky, outdoor only)
    depth_noisy: np.ndarray  # (H, W) float32, NoiseConfig applied (0 = missing)
    instance_map: np.ndarray  # (H, W) int32, 0 = room / street / clutter, k = SceneObject.instance_id
    K: np.ndarray  # (3, 3)
    gravity_cam: np.ndarray  # (3,) unit "down" in the camera frame
    camera_height: float  # metres above the floor (the road, outdoors)
    objects: list[SceneObject] = field(default_factory=list)
    layout: str = "basic"
    sensor: dict = field(default_factory=dict)  # sensor model name and its random draws (mono: scale)
    boxes_2d: str = "modal"  # the 2D box the annotations carry (SceneConfig.boxes_2d)

    def mask(self, instance_id: int) -> np.ndarray:
        return self.instance_map == instance_id


# ----------------------------------------------------------------------------- geometry
def _rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _rot_z(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _safe(d: np.ndarray) -> np.ndarray:
    return np.where(np.abs(d) < 1e-12, 1e-12, d)


def _hit_box(o, d, center, half, R) -> np.ndarray:
    """Ray parameters (N,) of the first hit of rays o + t d with an oriented box; inf = miss."""
    ol = (o - center) @ R  # box frame
    dl = d @ R
    inv = 1.0 / _safe(dl)
    t1 = (-half - ol) * inv
    t2 = (half - ol) * inv
    tmin = np.minimum(t1, t2).max(axis=1)
    tmax = np.maximum(t1, t2).min(axis=1)
    hit = (tmax >= tmin) & (tmin > 1e-6)
    return np.where(hit, tmin, np.inf)


def _hit_cylinder(o, d, cx, cz, r, h) -> np.ndarray:
    """First hit with a vertical cylinder of radius r standing on the floor (y in [-h, 0])."""
    ox, oz = o[0] - cx, o[2] - cz
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2.0 * (ox * d[:, 0] + oz * d[:, 2])
    c = ox * ox + oz * oz - r * r
    disc = b * b - 4 * a * c
    ok = disc >= 0
    t_side = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2 * _safe(a)), np.inf)
    y = o[1] + t_side * d[:, 1]
    t_side = np.where((t_side > 1e-6) & (y >= -h) & (y <= 0.0), t_side, np.inf)
    t_cap = (-h - o[1]) / _safe(d[:, 1])
    px = o[0] + t_cap * d[:, 0] - cx
    pz = o[2] + t_cap * d[:, 2] - cz
    t_cap = np.where((t_cap > 1e-6) & (px * px + pz * pz <= r * r), t_cap, np.inf)
    return np.minimum(t_side, t_cap)


def _hit_sphere(o, d, center, r) -> np.ndarray:
    oc = o - center
    a = np.einsum("ij,ij->i", d, d)
    b = 2.0 * (d @ oc)
    c = oc @ oc - r * r
    disc = b * b - 4 * a * c
    ok = disc >= 0
    t = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2 * a), np.inf)
    return np.where(t > 1e-6, t, np.inf)


@dataclass
class _Placed:
    category: str
    shape: str
    center_w: np.ndarray  # GT box centre in the world frame
    dims: np.ndarray  # (w, h, l)
    yaw: float  # world yaw (for symmetric shapes: set later to face the camera)
    radius: float  # footprint radius for placement

    def hit(self, o: np.ndarray, d: np.ndarray) -> np.ndarray:
        w, h, l = self.dims
        R = rot_y(self.yaw)
        if self.shape == "cuboid":
            return _hit_box(o, d, self.center_w, self.dims / 2, R)
        if self.shape == "cylinder":
            return _hit_cylinder(o, d, self.center_w[0], self.center_w[2], w / 2, h)
        if self.shape == "sphere":
            return _hit_sphere(o, d, self.center_w, w / 2)
        if self.shape == "chair":  # seat block (45% of height) + backrest slab at the box's -z side
            seat_h = 0.45 * h
            seat_c = self.center_w + R @ np.array([0.0, h / 2 - seat_h / 2, 0.0])
            t_seat = _hit_box(o, d, seat_c, np.array([w, seat_h, l]) / 2, R)
            th = 0.12 * l
            back_c = self.center_w + R @ np.array([0.0, -seat_h / 2, -l / 2 + th / 2])
            t_back = _hit_box(o, d, back_c, np.array([w, h - seat_h, th]) / 2, R)
            return np.minimum(t_seat, t_back)
        raise ValueError(self.shape)


# ----------------------------------------------------------------------------- scenes
def _u(rng, lo_hi):
    lo, hi = lo_hi
    return float(rng.uniform(lo, hi))


def _place_objects(rng: np.random.Generator, cfg: SceneConfig, half_fov: float) -> list[_Placed]:
    n = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    placed: list[_Placed] = []
    tries = 0
    while len(placed) < n and tries < 400:
        tries += 1
        cat = cfg.categories[int(rng.integers(len(cfg.categories)))]
        shape, lo, hi = CATALOGUE[cat]
        dims = np.array([rng.uniform(a, b) for a, b in zip(lo, hi)])
        if shape in ("cylinder", "sphere"):
            dims[2] = dims[0]
            if shape == "sphere":
                dims[1] = dims[0]
        radius = 0.5 * math.hypot(dims[0], dims[2])
        occluder = cfg.occlusion and placed and rng.random() < 0.35
        if occluder:  # in front of an existing object, offset sideways so it hides part of it
            tgt = placed[int(rng.integers(len(placed)))]
            dist = math.hypot(tgt.center_w[0], tgt.center_w[2])
            z = tgt.center_w[2] - (tgt.radius + radius + rng.uniform(0.2, 0.6))
            x = tgt.center_w[0] + rng.choice([-1, 1]) * rng.uniform(0.3, 0.7) * (tgt.dims[0] + dims[0]) / 2
            if z < cfg.distance[0] * 0.7 or dist < 1e-3:
                continue
        else:
            z = rng.uniform(*cfg.distance)
            x = rng.uniform(-1, 1) * max(0.0, z * math.tan(half_fov) * 0.75 - radius)
        if any(math.hypot(x - p.center_w[0], z - p.center_w[2]) < radius + p.radius + 0.1 for p in placed):
            continue
        yaw = float(rng.uniform(-math.pi, math.pi))
        center = np.array([x, -dims[1] / 2, z])
        placed.append(_Placed(cat, shape, center, dims, yaw, radius))
    return placed


def _texture(rng_colors: np.ndarray, ids: np.ndarray, pts_w: np.ndarray, surf: np.ndarray) -> np.ndarray:
    """Colour (N, 3) float in [0, 1] of hit points from their surface id and world position."""
    n_obj = len(rng_colors) - 4
    col = np.empty((len(ids), 3))
    checker_big = (np.floor(pts_w[:, 0] / 0.5) + np.floor(pts_w[:, 2] / 0.5)) % 2
    checker_small = (np.floor(pts_w[:, 0] / 0.1) + np.floor(pts_w[:, 1] / 0.1) + np.floor(pts_w[:, 2] / 0.1)) % 2
    for s in range(4 + n_obj):
        m = surf == s
        if not m.any():
            continue
        base = rng_colors[s]
        if s == 0:  # floor
            col[m] = base * (0.75 + 0.25 * checker_big[m, None])
        elif s < 4:  # walls, ceiling
            stripes = 0.9 + 0.1 * (np.floor(pts_w[m, 0] * 4 + pts_w[m, 2] * 4) % 2)
            col[m] = base * stripes[:, None]
        else:
            col[m] = base * (0.7 + 0.3 * checker_small[m, None])
    return np.clip(col, 0, 1)


def generate_scene(seed: int, config: SceneConfig | None = None, noise: NoiseConfig | None = None) -> Scene:
    """Render one deterministic scene from `seed` (same seed and configs -> identical arrays)."""
    cfg = config or SceneConfig()
    noise = noise or NoiseConfig()
    if cfg.layout != "basic":
        return _generate_realistic(seed, cfg, noise)
    rng = np.random.default_rng(seed)
    W, H = cfg.width, cfg.height
    fov = _u(rng, cfg.fov_x_deg)
    K = K_from_fov(W, H, fov)
    half_fov = math.radians(fov) / 2
    cam_h = _u(rng, cfg.camera_height)
    pitch = math.radians(_u(rng, cfg.pitch_down_deg))
    roll = math.radians(_u(rng, cfg.roll_deg))
    R_wc = _rot_x(-pitch) @ _rot_z(roll)  # camera -> world
    C = np.array([0.0, -cam_h, 0.0])
    gravity_cam = R_wc.T @ np.array([0.0, 1.0, 0.0])

    objs = _place_objects(rng, cfg, half_fov)
    for p in objs:  # symmetric shapes face the camera
        if p.shape in ("cylinder", "sphere"):
            p.yaw = math.atan2(p.center_w[0], p.center_w[2])

    # rays with z-component 1 in the camera frame: ray parameter t equals z-depth
    v, u = np.mgrid[0:H, 0:W]
    d_cam = np.stack([(u.ravel() - K[0, 2]) / K[0, 0], (v.ravel() - K[1, 2]) / K[1, 1], np.ones(H * W)], axis=1)
    d_w = d_cam @ R_wc.T
    o = C

    zb = _u(rng, cfg.room_depth)
    xs = _u(rng, cfg.room_half_width)
    t_room = np.stack(
        [
            np.where(d_w[:, 1] > 0, (0.0 - o[1]) / _safe(d_w[:, 1]), np.inf),  # floor
            np.where(d_w[:, 2] > 0, (zb - o[2]) / _safe(d_w[:, 2]), np.inf),  # back wall
            np.where(d_w[:, 0] != 0, (np.sign(d_w[:, 0]) * xs - o[0]) / _safe(d_w[:, 0]), np.inf),  # sides
            np.where(d_w[:, 1] < 0, (-cfg.room_height - o[1]) / _safe(d_w[:, 1]), np.inf),  # ceiling
        ],
        axis=1,
    )
    t_room = np.where(t_room > 0, t_room, np.inf)
    t_objs = np.stack([p.hit(o, d_w) for p in objs], axis=1) if objs else np.zeros((H * W, 0))
    t_all = np.concatenate([t_room, t_objs], axis=1)
    surf = np.argmin(t_all, axis=1)
    depth = t_all[np.arange(H * W), surf].astype(np.float32)
    if not np.all(np.isfinite(depth)):
        raise RuntimeError("ray escaped the room")  # cannot happen: the room is closed in view
    inst = np.where(surf >= 4, surf - 3, 0).astype(np.int32)

    colors = np.concatenate(
        [np.array([[0.55, 0.45, 0.35], [0.85, 0.83, 0.78], [0.78, 0.8, 0.84], [0.95, 0.95, 0.95]]),
         rng.uniform(0.15, 0.95, size=(len(objs), 3))]
    )
    pts_w = o + d_w * depth[:, None]
    rgb = _texture(colors, inst, pts_w, surf)
    shade = np.clip(1.15 - 0.05 * depth, 0.6, 1.0)
    rgb = (rgb * shade[:, None] * 255).round().astype(np.uint8).reshape(H, W, 3)
    depth = depth.reshape(H, W)
    inst = inst.reshape(H, W)

    R_cw = R_wc.T
    objects = []
    for k, p in enumerate(objs):
        iid = k + 1
        center_cam = R_cw @ (p.center_w - C)
        box = Box3D(center_cam, p.dims, R_cw @ rot_y(p.yaw), p.yaw)
        amodal = int(np.isfinite(t_objs[:, k]).sum())
        m = inst == iid
        vis = int(m.sum())
        bbox = None
        if vis:
            rows = np.flatnonzero(m.any(axis=1))
            cols = np.flatnonzero(m.any(axis=0))
            bbox = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        full = project_box(box, K, None)
        clipped = project_box(box, K, (W, H))
        area = lambda b: 0.0 if b is None else (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
        trunc = 1.0 - area(clipped) / area(full) if area(full) > 0 else 1.0
        objects.append(SceneObject(iid, p.category, p.shape, box, vis, amodal, float(trunc), bbox,
                                   bbox_amodal_xyxy=clipped))

    depth_noisy, info = _apply_noise(depth, noise, rng, K, gravity_cam)
    return Scene(rgb, depth, depth_noisy, inst, K, gravity_cam, cam_h, objects, sensor=info, boxes_2d=cfg.boxes_2d)


# ----------------------------------------------------------------------------- realistic: parts
_I3 = np.eye(3)
#: Rotation (3, 3) taking a primitive's own y axis to the owner's x axis (wheels, tubes across).
_Y_TO_X = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Primitive:
    """One solid part of a composite object.

    kind:
        box       half = half extents along its own x, y, z;
        cylinder  axis along its own y, half = (radius, half height, radius);
        sphere    half = (r, r, r);
        cone      a frustum, axis along its own y: radius half[0] at the bottom (+y end),
                  `r_top` at the top (-y end), half[1] the half height.
    `center` (3,) metres and `R` (3, 3) (primitive -> owner) are given in the owner's frame:
    the body frame while a scene is built, the camera frame in `SceneObject.parts`.
    """

    kind: str
    center: np.ndarray
    half: np.ndarray
    R: np.ndarray = field(default_factory=lambda: _I3)
    r_top: float = 0.0
    color: tuple[float, float, float] | None = None  # RGB in [0, 1]; None: the object's colour

    def moved(self, R: np.ndarray, t: np.ndarray) -> "Primitive":
        """The primitive in another frame: x' = R x + t (R (3, 3), t (3,))."""
        return Primitive(self.kind, R @ self.center + t, self.half, R @ self.R, self.r_top, self.color)

    def bound_half(self) -> np.ndarray:
        """(3,) half extents of the primitive's tight axis-aligned box in the owner frame."""
        if self.kind == "box":
            return np.abs(self.R) @ self.half
        if self.kind == "sphere":
            return np.full(3, self.half[0])
        a = self.R[:, 1]  # cylinder / cone axis; a disc of radius r spans r sqrt(1 - a_i^2) along axis i
        return self.half[1] * np.abs(a) + self.half[0] * np.sqrt(np.clip(1.0 - a * a, 0.0, None))

    def hit(self, o: np.ndarray, dT: np.ndarray) -> np.ndarray:
        """Ray parameters (N,) of the first hit of rays o + t d (o (3,), dT (3, N) the
        directions as columns); inf = miss. Column-wise kernels: faster than (N, 3) rows."""
        ol = (o - self.center) @ self.R  # the primitive's own frame
        dl = self.R.T @ dT
        if self.kind == "box":
            return _hit_slab(ol, dl, self.half)
        if self.kind == "sphere":
            return _hit_ball(ol, dl, self.half[0])
        return _hit_frustum(ol, dl, self.half[0], self.r_top if self.kind == "cone" else self.half[0], self.half[1])


def _hit_slab(ol: np.ndarray, dl: np.ndarray, half: np.ndarray) -> np.ndarray:
    """First hit (N,) of rays ol + t dl (own frame: ol (3,), dl (3, N)) with the box |x| <= half."""
    tmin = np.full(dl.shape[1], -np.inf)
    tmax = np.full(dl.shape[1], np.inf)
    for i in range(3):
        inv = 1.0 / _safe(dl[i])
        t1 = (-half[i] - ol[i]) * inv
        t2 = (half[i] - ol[i]) * inv
        np.maximum(tmin, np.minimum(t1, t2), out=tmin)
        np.minimum(tmax, np.maximum(t1, t2), out=tmax)
    return np.where((tmax >= tmin) & (tmin > 1e-6), tmin, np.inf)


def _hit_ball(ol: np.ndarray, dl: np.ndarray, r: float) -> np.ndarray:
    """First hit (N,) of rays ol + t dl (ol (3,), dl (3, N)) with the sphere |x| = r at the origin."""
    a = (dl * dl).sum(axis=0)
    b = 2.0 * (ol @ dl)
    c = ol @ ol - r * r
    disc = b * b - 4 * a * c
    ok = disc >= 0
    t = np.where(ok, (-b - np.sqrt(np.where(ok, disc, 0.0))) / (2 * a), np.inf)
    return np.where(t > 1e-6, t, np.inf)


def _hit_frustum(ol: np.ndarray, dl: np.ndarray, r_bot: float, r_top: float, hh: float) -> np.ndarray:
    """First hit (N,) of rays ol + t dl (own frame: ol (3,), dl (3, N)) with a closed frustum
    (a cylinder when r_bot == r_top) along y: radius r_bot at y = +hh (bottom, y down), r_top
    at y = -hh; inf = miss."""
    rm, k = 0.5 * (r_bot + r_top), 0.5 * (r_bot - r_top) / hh
    ox, oy, oz = ol
    dx, dy, dz = dl
    rad0 = rm + k * oy
    a = dx * dx + dz * dz - (k * dy) ** 2
    b = 2.0 * (ox * dx + oz * dz - k * dy * rad0)
    c = ox * ox + oz * oz - rad0 * rad0
    disc = b * b - 4.0 * a * c
    ok = (disc >= 0) & (np.abs(a) > 1e-14)
    sq = np.sqrt(np.where(ok, disc, 0.0))
    a2 = 2.0 * _safe(a)
    best = np.full(dl.shape[1], np.inf)
    for t in ((-b - sq) / a2, (-b + sq) / a2):
        y = oy + t * dy
        valid = ok & (t > 1e-6) & (np.abs(y) <= hh) & (rm + k * y >= 0.0)
        best = np.where(valid & (t < best), t, best)
    for y_cap, r_cap in ((hh, r_bot), (-hh, r_top)):
        if r_cap <= 0:
            continue
        t = (y_cap - oy) / _safe(dy)
        px, pz = ox + t * dx, oz + t * dz
        valid = (t > 1e-6) & (px * px + pz * pz <= r_cap * r_cap)
        best = np.where(valid & (t < best), t, best)
    return best


def _box(x: float, z: float, w: float, l: float, bottom: float, top: float, color=None) -> Primitive:
    """Axis-aligned box centred at (x, z) on the floor plan, from `bottom` to `top` metres above
    the floor (body frame: +y down, so y = -height)."""
    return Primitive("box", np.array([x, -(bottom + top) / 2, z]), np.array([w / 2, (top - bottom) / 2, l / 2]),
                     _I3, 0.0, color)


def _vcyl(x: float, z: float, r: float, bottom: float, top: float, color=None) -> Primitive:
    """Vertical cylinder of radius r from `bottom` to `top` metres above the floor."""
    return Primitive("cylinder", np.array([x, -(bottom + top) / 2, z]), np.array([r, (top - bottom) / 2, r]),
                     _I3, 0.0, color)


def _tilted(kind: str, center_h: tuple[float, float, float], half, angle_x: float, base_R=_I3,
            color=None) -> Primitive:
    """A primitive whose centre is (x, height above floor, z), rotated by `angle_x` radians about
    the body x axis (positive tips its -y end towards -z, i.e. forward)."""
    x, hgt, z = center_h
    return Primitive(kind, np.array([x, -hgt, z]), np.asarray(half, dtype=np.float64),
                     _rot_x(angle_x) @ base_R, 0.0, color)


@dataclass
class _Body:
    """A rigid group of primitives placed in the layout frame (room or street).

    Body frame: origin on the supporting surface at the centre of the footprint, +y down,
    the object's front towards -z. `lo`, `hi` (3,) bound all parts (tight); after `_body`,
    lo = (-w/2, -h, -l/2) and hi = (w/2, 0, l/2).
    """

    category: str | None  # None: clutter or background, never annotated
    prims: list[Primitive]
    color: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    pos: np.ndarray = field(default_factory=lambda: np.zeros(3))  # origin in the layout frame
    yaw: float = 0.0  # about +y in the layout frame
    meta: dict = field(default_factory=dict)  # builder facts used by placement (seat height, ...)

    @property
    def dims(self) -> np.ndarray:
        return self.hi - self.lo


def _body(category: str | None, prims: list[Primitive], color, meta: dict | None = None) -> _Body:
    """Recentre `prims` so that their tight bound is centred on the body origin in x, z and
    rests on y = 0, and wrap them in a _Body."""
    lo = np.min([p.center - p.bound_half() for p in prims], axis=0)
    hi = np.max([p.center + p.bound_half() for p in prims], axis=0)
    shift = np.array([-(lo[0] + hi[0]) / 2, -hi[1], -(lo[2] + hi[2]) / 2])
    prims = [p.moved(_I3, shift) for p in prims]
    return _Body(category, prims, np.asarray(color, dtype=np.float64), lo + shift, hi + shift, meta=meta or {})


# ----------------------------------------------------------------------------- realistic: builders
def _col(rng, lo=0.15, hi=0.9) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def _wood(rng) -> np.ndarray:
    return np.array([0.45, 0.3, 0.18]) * rng.uniform(0.7, 1.5) + rng.uniform(-0.05, 0.05, 3)


def _build_table(rng, low: bool | None = None) -> _Body:
    """Four thin legs and a thin top: w 0.8-1.8, l 0.6-1.0, h 0.70-0.78 (coffee table 0.40-0.50)."""
    low = rng.random() < 0.25 if low is None else low
    w = rng.uniform(0.8, 1.8) if not low else rng.uniform(0.8, 1.3)
    l = rng.uniform(0.6, min(1.0, w))
    h = rng.uniform(0.40, 0.50) if low else rng.uniform(0.70, 0.78)
    t, s, inset = rng.uniform(0.03, 0.05), rng.uniform(0.04, 0.07), rng.uniform(0.02, 0.08)
    round_legs = rng.random() < 0.3
    prims = [_box(0, 0, w, l, h - t, h)]
    for sx in (-1, 1):
        for sz in (-1, 1):
            x, z = sx * (w / 2 - inset - s / 2), sz * (l / 2 - inset - s / 2)
            prims.append(_vcyl(x, z, s / 2, 0, h - t) if round_legs else _box(x, z, s, s, 0, h - t))
    return _body("table", prims, _wood(rng), {"top": h, "underside": h - t, "leg_clear": inset + s})


def _build_chair(rng) -> _Body:
    """Four legs, a seat and a backrest between two back posts (front towards -z)."""
    w, l = rng.uniform(0.42, 0.55), rng.uniform(0.42, 0.55)
    seat, st, h = rng.uniform(0.42, 0.48), rng.uniform(0.03, 0.06), rng.uniform(0.8, 1.0)
    s, bt = rng.uniform(0.025, 0.04), rng.uniform(0.02, 0.04)
    prims = [_box(0, 0, w, l, seat - st, seat)]
    for sx in (-1, 1):
        x = sx * (w / 2 - s / 2)
        prims.append(_box(x, -(l / 2 - s / 2), s, s, 0, seat - st))  # front legs
        prims.append(_box(x, l / 2 - s / 2, s, s, 0, h))  # back legs run up as posts
    prims.append(_box(0, l / 2 - s / 2, w - 2 * s, bt, seat + rng.uniform(0.12, 0.2), h - 0.02))
    return _body("chair", prims, _col(rng), {"seat": seat, "back": s + bt})


def _build_bed(rng) -> _Body:
    """Base, mattress, pillows and a tall thin headboard at the back (+z); footboard sometimes."""
    w, l = rng.uniform(0.9, 1.9), rng.uniform(1.95, 2.2)
    hb_t, hb_h = rng.uniform(0.04, 0.08), rng.uniform(0.9, 1.3)
    base, mat = rng.uniform(0.22, 0.35), rng.uniform(0.18, 0.28)
    zc = -hb_t / 2  # the sleeping area in front of the headboard
    prims = [_box(0, zc, w, l - hb_t, 0, base),
             _box(0, zc, w - 0.04, l - hb_t - 0.04, base, base + mat, _col(rng, 0.6, 0.95)),
             _box(0, l / 2 - hb_t / 2, w, hb_t, 0, hb_h)]
    if rng.random() < 0.3:
        prims.append(_box(0, -l / 2 + hb_t / 2, w, hb_t, 0, rng.uniform(0.5, 0.7)))
    if rng.random() < 0.7:  # pillows against the headboard
        n = 1 if w < 1.3 else 2
        pw = (w - 0.1) / n - 0.05
        for i in range(n):
            x = -w / 2 + 0.05 + (i + 0.5) * (w - 0.1) / n
            prims.append(_box(x, l / 2 - hb_t - 0.2, pw, 0.35, base + mat, base + mat + 0.12, (0.92, 0.92, 0.9)))
    return _body("bed", prims, _col(rng), {"top": base + mat})


def _build_night_stand(rng) -> _Body:
    """A drawer body on four short legs or a recessed plinth: w 0.4-0.6, l 0.35-0.45, h 0.45-0.65."""
    w, l, h = rng.uniform(0.4, 0.6), rng.uniform(0.35, 0.45), rng.uniform(0.45, 0.65)
    if rng.random() < 0.5:
        lg, s = rng.uniform(0.08, 0.15), 0.03
        prims = [_box(0, 0, w, l, lg, h)] + [_box(sx * (w / 2 - s), sz * (l / 2 - s), s, s, 0, lg)
                                            for sx in (-1, 1) for sz in (-1, 1)]
    else:
        pl = rng.uniform(0.05, 0.1)
        prims = [_box(0, 0, w, l, pl, h), _box(0, 0.02, w - 0.06, l - 0.06, 0, pl)]
    prims.append(_box(0, -l / 2 - 0.01, w * 0.5, 0.02, h * 0.7, h * 0.72, (0.8, 0.8, 0.75)))  # handle
    return _body("night stand", prims, _wood(rng), {"top": h})


def _build_sofa(rng) -> _Body:
    """Feet, a seat base, a back (+z) and two arms: w 1.5-2.4, l 0.8-1.0, h 0.75-0.95."""
    w, l, h = rng.uniform(1.5, 2.4), rng.uniform(0.8, 1.0), rng.uniform(0.75, 0.95)
    feet, seat, bt = rng.uniform(0.05, 0.1), rng.uniform(0.38, 0.45), rng.uniform(0.15, 0.25)
    aw, ah = rng.uniform(0.12, 0.25), rng.uniform(0.55, 0.68)
    prims = [_box(0, 0, w, l, feet, seat), _box(0, l / 2 - bt / 2, w, bt, seat, h)]
    prims += [_box(sx * (w / 2 - aw / 2), -bt / 2, aw, l - bt, seat, ah) for sx in (-1, 1)]
    prims += [_box(sx * (w / 2 - 0.06), sz * (l / 2 - 0.06), 0.05, 0.05, 0, feet, (0.1, 0.1, 0.1))
              for sx in (-1, 1) for sz in (-1, 1)]
    return _body("sofa", prims, _col(rng), {"seat": seat})


def _build_cabinet(rng) -> _Body:
    """A closed body on a recessed plinth: w 0.5-1.2, l 0.35-0.6, h 0.7-1.9."""
    w, l, h, pl = rng.uniform(0.5, 1.2), rng.uniform(0.35, 0.6), rng.uniform(0.7, 1.9), rng.uniform(0.05, 0.1)
    prims = [_box(0, 0, w, l, pl, h), _box(0, 0.03, w - 0.06, l - 0.06, 0, pl, (0.15, 0.15, 0.15))]
    prims.append(_box(0, -l / 2 - 0.005, 0.01, 0.01, pl, h, (0.2, 0.2, 0.2)))  # door gap
    return _body("cabinet", prims, _wood(rng), {"top": h})


def _build_shelves(rng, books: bool) -> tuple[_Body, list[Primitive]]:
    """Side panels, top, bottom and 1-4 shelf boards, open front; a bookshelf also has a back
    panel. Returns the body and its books (body frame, unannotated clutter)."""
    w, l, h, t = rng.uniform(0.6, 1.2), rng.uniform(0.25, 0.4), rng.uniform(0.8, 2.0), rng.uniform(0.015, 0.025)
    n = max(2, int(round(h / 0.38)))
    levels = np.linspace(0.0, h - t, n + 1)  # board bottoms, the last is the top
    prims = [_box(sx * (w / 2 - t / 2), 0, t, l, 0, h) for sx in (-1, 1)]
    prims += [_box(0, 0, w - 2 * t, l, y, y + t) for y in levels]
    if books:
        prims.append(_box(0, l / 2 - 0.005, w - 2 * t, 0.01, 0, h))
    body = _body("bookshelf" if books else "shelves", prims, _wood(rng), {"top": h})
    shift = body.prims[0].center - prims[0].center  # _body recentred the parts
    items = []
    for y0, y1 in zip(levels[:-1] + t, levels[1:]):
        gap, x = y1 - y0, -w / 2 + t
        while books or rng.random() < 0.5:
            bw = rng.uniform(0.08, 0.35)
            if x + bw > w / 2 - t or rng.random() < 0.15:
                break
            bh, bl = gap * rng.uniform(0.55, 0.9), (l - 0.02) * rng.uniform(0.6, 0.95)
            items.append(_box(x + bw / 2, l / 2 - 0.01 - bl / 2, bw, bl, y0, y0 + bh, _col(rng)).moved(_I3, shift))
            x += bw + rng.uniform(0.0, 0.12)
    return body, items


def _build_car(rng) -> _Body:
    """Lower body on four wheels, a narrower cabin: l 3.8-4.8, w 1.6-1.9, h 1.4-1.65 (front -z)."""
    l, w, h = rng.uniform(3.8, 4.8), rng.uniform(1.6, 1.9), rng.uniform(1.4, 1.65)
    r, clear, belt = rng.uniform(0.3, 0.35), rng.uniform(0.18, 0.28), rng.uniform(0.85, 1.0)
    cab_l, cab_z = l * rng.uniform(0.45, 0.6), l * rng.uniform(0.0, 0.1)
    cab_w = w - rng.uniform(0.1, 0.2)
    prims = [_box(0, 0, w, l, clear, belt), _box(0, cab_z, cab_w, cab_l, belt, h, None)]
    glass = (0.12, 0.14, 0.18)
    prims.append(_box(0, cab_z - cab_l / 2 - 0.005, cab_w - 0.1, 0.01, belt + 0.05, h - 0.06, glass))  # windscreen
    prims.append(_box(0, cab_z + cab_l / 2 + 0.005, cab_w - 0.1, 0.01, belt + 0.05, h - 0.06, glass))
    for sx in (-1, 1):
        prims.append(_box(sx * (cab_w / 2 + 0.004), cab_z, 0.008, cab_l - 0.15, belt + 0.05, h - 0.08, glass))
        for sz in (-1, 1):
            wz = sz * (l / 2 - rng.uniform(0.7, 0.9))
            prims.append(Primitive("cylinder", np.array([sx * (w / 2 - 0.12), -r, wz]), np.array([r, 0.1, r]),
                                   _Y_TO_X, 0.0, (0.05, 0.05, 0.05)))
    return _body("car", prims, _col(rng, 0.1, 0.95))


def _person_parts(rng, height: float, stride: float, arm_swing: float) -> list[Primitive]:
    """Legs (tilted by +-stride rad about x at the hip), torso, hanging arms, neck, head; feet on y = 0."""
    s = height / 1.75
    leg, tw, td = 0.88 * s, rng.uniform(0.32, 0.40) * s, rng.uniform(0.18, 0.25) * s
    hip = leg * math.cos(stride)
    skin, shirt, trousers = _col(rng, 0.5, 0.9), _col(rng), _col(rng, 0.05, 0.5)
    parts = []
    for sx, a in ((-1, stride), (1, -stride)):
        c = np.array([sx * 0.09 * s, hip, 0.0]) + np.array([0.0, -leg / 2 * math.cos(a), leg / 2 * math.sin(a)])
        parts.append(_tilted("box", tuple(c), (0.065 * s, leg / 2, 0.07 * s), a, color=tuple(trousers)))
    t_top = hip + 0.55 * s
    parts.append(_box(0, 0, tw, td, hip - 0.02, t_top, tuple(shirt)))
    arm = 0.62 * s
    for sx, a in ((-1, -arm_swing), (1, arm_swing)):  # swung about x, held out from the body about z
        R = _rot_z(-sx * rng.uniform(0.04, 0.2)) @ _rot_x(a)
        shoulder = np.array([sx * (tw / 2 + 0.045 * s), -(t_top - 0.02), 0.0])
        parts.append(Primitive("box", shoulder + R[:, 1] * arm / 2, np.array([0.04 * s, arm / 2, 0.045 * s]), R, 0.0,
                               tuple(shirt)))
    parts.append(_vcyl(0, 0, 0.05 * s, t_top, t_top + 0.06 * s, tuple(skin)))
    r = 0.11 * s
    head = np.array([0.0, -(t_top + 0.05 * s + r), 0.0])
    parts.append(Primitive("sphere", head, np.full(3, r), _I3, 0.0, tuple(skin)))
    return parts


def _build_pedestrian(rng) -> _Body:
    """Walking person: h 1.55-1.9, amodal w ~ 0.5-0.75 (arms), l ~ 0.3-0.8 (stride, arm swing): like
    KITTI's mean pedestrian box (0.66 x 1.76 x 0.84) the box is much wider than the body."""
    prims = _person_parts(rng, rng.uniform(1.55, 1.9), rng.uniform(0.1, 0.42), rng.uniform(0.1, 0.5))
    return _body("pedestrian", prims, _col(rng))


def _build_cyclist(rng) -> _Body:
    """A thin bicycle (two wheels, frame, handlebar, ~1.75 m long) and a rider leaning forward."""
    r, wb = rng.uniform(0.33, 0.36), rng.uniform(1.0, 1.1)
    frame = tuple(_col(rng))
    dark = (0.05, 0.05, 0.05)
    prims = [Primitive("cylinder", np.array([0.0, -r, sz * wb / 2]), np.array([r, 0.02, r]), _Y_TO_X, 0.0, dark)
             for sz in (-1, 1)]
    seat_h, bar_h, bar_z = r + 0.55, r + 0.62, -wb / 2 + 0.12
    seat_z = wb / 2 - 0.35

    def tube(p, q, th=0.02):  # a thin box from p to q, both (height, z), in the x = 0 plane
        (h0, z0), (h1, z1) = p, q
        length = math.hypot(h1 - h0, z1 - z0)
        a = math.atan2(z0 - z1, h1 - h0)  # tilt of the upward direction towards -z
        return _tilted("box", (0.0, (h0 + h1) / 2, (z0 + z1) / 2), (th, length / 2, th), a, color=frame)

    crank = (r, 0.0)
    prims += [tube(crank, (seat_h, seat_z)), tube(crank, (bar_h - 0.08, bar_z)),
              tube((seat_h - 0.05, seat_z), (bar_h - 0.08, bar_z)), tube((r, wb / 2), (seat_h - 0.05, seat_z)),
              tube((r, -wb / 2), (bar_h, bar_z))]
    bar_w = rng.uniform(0.5, 0.62)
    prims.append(Primitive("cylinder", np.array([0.0, -bar_h, bar_z]), np.array([0.015, bar_w / 2, 0.015]), _Y_TO_X,
                           0.0, dark))
    prims.append(_box(0, seat_z, 0.12, 0.25, seat_h, seat_h + 0.05, dark))
    # rider: torso from the saddle leaning forward, head, arms to the bars, legs to the pedals
    s = rng.uniform(0.9, 1.08)
    lean = math.radians(rng.uniform(25, 45))
    tl, tw = 0.58 * s, rng.uniform(0.32, 0.4) * s
    hip = np.array([seat_h + 0.07, seat_z])
    sh = hip + tl * np.array([math.cos(lean), -math.sin(lean)])
    shirt, skin, trousers = tuple(_col(rng)), tuple(_col(rng, 0.5, 0.9)), tuple(_col(rng, 0.05, 0.5))
    prims.append(_tilted("box", (0.0, (hip[0] + sh[0]) / 2, (hip[1] + sh[1]) / 2), (tw / 2, tl / 2, 0.11 * s), lean,
                         color=shirt))
    hr = 0.11 * s
    head = sh + (hr + 0.05) * np.array([math.cos(lean / 2), -math.sin(lean / 2)])
    prims.append(Primitive("sphere", np.array([0.0, -head[0], head[1]]), np.full(3, hr), _I3, 0.0, skin))
    for sx in (-1, 1):
        for (p, q), th, colr in ((((sh[0] - 0.03, sh[1]), (bar_h + 0.02, bar_z)), 0.04, shirt),
                                 (((hip[0], hip[1]), (r + 0.17 * sx, 0.05 * sx)), 0.065, trousers)):
            (h0, z0), (h1, z1) = p, q
            length = math.hypot(h1 - h0, z1 - z0)
            a = math.atan2(z1 - z0, h0 - h1)  # tilt of the downward direction towards +z
            x = sx * (tw / 2 - 0.04) if th < 0.05 else sx * 0.1
            prims.append(_tilted("box", (x, (h0 + h1) / 2, (z0 + z1) / 2), (th, length / 2, th), -a, color=colr))
    return _body("cyclist", prims, _col(rng))


def _build_traffic_cone(rng) -> _Body:
    """A square base plate and a tapered cone: h 0.5-0.75."""
    b, h = rng.uniform(0.34, 0.4), rng.uniform(0.5, 0.75)
    rb = rng.uniform(0.13, 0.16)
    cone = Primitive("cone", np.array([0.0, -(0.03 + h) / 2, 0.0]), np.array([rb, (h - 0.03) / 2, rb]), _I3,
                     rng.uniform(0.02, 0.035), None)
    return _body("traffic cone", [_box(0, 0, b, b, 0, 0.03, (0.1, 0.1, 0.1)), cone], np.array([0.95, 0.4, 0.05]))


def _build_barrier(rng) -> _Body:
    """A fence barrier (feet, posts, two boards: holes) or a concrete jersey barrier; long side along x."""
    w, h = rng.uniform(1.5, 3.0), rng.uniform(0.85, 1.1)
    if rng.random() < 0.5:
        prims = []
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.1)
            prims += [_box(x, 0, 0.08, 0.5, 0, 0.08, (0.2, 0.2, 0.2)), _box(x, 0, 0.05, 0.05, 0.08, h)]
        prims += [_box(0, 0, w, 0.03, h - 0.3, h - 0.02), _box(0, 0, w, 0.03, 0.35, 0.5)]
        return _body("barrier", prims, np.array([0.9, 0.9, 0.85]) if rng.random() < 0.5 else np.array([0.9, 0.3, 0.1]))
    prims = [_box(0, 0, w, rng.uniform(0.55, 0.65), 0, 0.3), _box(0, 0, w, rng.uniform(0.2, 0.3), 0.3, h)]
    return _body("barrier", prims, np.array([0.7, 0.7, 0.68]))


def _build_clutter(rng, kind: str) -> _Body:
    """Unannotated things: small indoor items (box, mug, bottle, book, laptop, lamp, plant, bin,
    bag) and street furniture (pole, tree, bin, hydrant)."""
    if kind == "box":
        w, l, h = rng.uniform(0.1, 0.5, 3)
        prims = [_box(0, 0, w, l, 0, h)]
    elif kind == "mug":
        prims = [_vcyl(0, 0, rng.uniform(0.035, 0.05), 0, rng.uniform(0.08, 0.12))]
    elif kind == "bottle":
        r = rng.uniform(0.03, 0.045)
        prims = [_vcyl(0, 0, r, 0, 0.18), _vcyl(0, 0, r * 0.4, 0.18, rng.uniform(0.24, 0.3))]
    elif kind == "book":
        prims = [_box(0, 0, rng.uniform(0.14, 0.22), rng.uniform(0.2, 0.3), 0, rng.uniform(0.02, 0.06))]
    elif kind == "laptop":
        prims = [_box(0, 0, 0.33, 0.23, 0, 0.02), _tilted("box", (0, 0.13, 0.12), (0.165, 0.11, 0.006), -0.25)]
    elif kind == "lamp":
        prims = [_vcyl(0, 0, 0.07, 0, 0.03), _vcyl(0, 0, 0.01, 0.03, 0.3),
                 Primitive("cone", np.array([0.0, -0.36, 0.0]), np.array([0.12, 0.09, 0.12]), _I3, 0.07, None)]
    elif kind == "plant":
        r = rng.uniform(0.08, 0.18)
        prims = [_vcyl(0, 0, r, 0, 2 * r), Primitive("sphere", np.array([0.0, -3.2 * r, 0.0]), np.full(3, 1.4 * r))]
    elif kind == "bin":
        prims = [_vcyl(0, 0, rng.uniform(0.12, 0.25), 0, rng.uniform(0.3, 0.9))]
    elif kind == "bag":
        prims = [_box(0, 0, rng.uniform(0.3, 0.5), rng.uniform(0.15, 0.25), 0, rng.uniform(0.3, 0.5))]
    elif kind == "pole":
        prims = [_vcyl(0, 0, rng.uniform(0.06, 0.12), 0, rng.uniform(4.0, 7.0))]
    elif kind == "tree":
        t = rng.uniform(2.0, 3.5)
        r = rng.uniform(1.0, 2.2)
        prims = [_vcyl(0, 0, rng.uniform(0.12, 0.25), 0, t + 0.5 * r, (0.3, 0.22, 0.15)),
                 Primitive("sphere", np.array([0.0, -(t + r), 0.0]), np.full(3, r), _I3, 0.0, (0.2, 0.45, 0.15))]
    elif kind == "hydrant":
        prims = [_vcyl(0, 0, 0.12, 0, 0.6), _vcyl(0, 0, 0.15, 0, 0.08)]
    else:
        raise ValueError(kind)
    return _body(None, prims, _col(rng))


_BUILDERS = {
    "table": _build_table, "chair": _build_chair, "bed": _build_bed, "night stand": _build_night_stand,
    "sofa": _build_sofa, "cabinet": _build_cabinet, "car": _build_car, "pedestrian": _build_pedestrian,
    "cyclist": _build_cyclist, "traffic cone": _build_traffic_cone, "barrier": _build_barrier,
}


# ----------------------------------------------------------------------------- realistic: placement
class _Planner:
    """Places bodies in the layout frame (room or street; floor y = 0, +y down) without
    interpenetration, and knows what the camera sees.

    Camera: centre `C` (3,) and rotation `R_lc` (3, 3, camera -> layout) with intrinsics `K`
    (3, 3) of a W x H image. Footprints are oriented rectangles on the floor plan (x, z) with a
    height range; two bodies collide when both overlap (touching is allowed).
    """

    def __init__(self, rng, K, R_lc, C, W, H, bounds, clearance=0.4):
        self.rng, self.K, self.R_lc, self.C, self.W, self.H = rng, K, R_lc, C, W, H
        self.bounds = bounds  # (x_min, x_max, z_min, z_max) the footprints must stay inside
        self.clearance = clearance  # metres between the camera and any footprint
        self.bodies: list[_Body] = []
        self.max_objects = 1 << 30  # annotated bodies wanted; the layouts set it

    def cam(self, p_l: np.ndarray) -> np.ndarray:
        """(3,) layout-frame point -> camera frame."""
        return self.R_lc.T @ (np.asarray(p_l, dtype=np.float64) - self.C)

    def view(self, body: _Body, pos, margin: float = 0.1, z_range=None) -> bool:
        """Whether the body's box centre at `pos` projects inside the image widened by `margin`
        (a fraction of its size) and lies `z_range` (metres, camera z) away."""
        c = self.cam(np.asarray(pos) + np.array([0.0, -body.dims[1] / 2, 0.0]))
        if c[2] < 0.3 or (z_range and not z_range[0] <= c[2] <= z_range[1]):
            return False
        u, v = self.K[0, 0] * c[0] / c[2] + self.K[0, 2], self.K[1, 1] * c[1] / c[2] + self.K[1, 2]
        return -margin * self.W <= u <= (1 + margin) * self.W and -margin * self.H <= v <= (1 + margin) * self.H

    @staticmethod
    def _rect(body: _Body, pos, yaw):
        c, s = math.cos(yaw), math.sin(yaw)
        axes = np.array([[c, -s], [s, c]])  # columns: body x, z on the (x, z) floor plan
        return np.array([pos[0], pos[2]]), axes, body.dims[[0, 2]] / 2, (-pos[1], -pos[1] + body.dims[1])

    def fits(self, body: _Body, pos, yaw: float, ignore=()) -> bool:
        """No overlap with the placed bodies (except `ignore`), inside the bounds, off the camera."""
        c, A, half, (y0, y1) = self._rect(body, pos, yaw)
        corners = c + (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ A.T
        x0, x1, z0, z1 = self.bounds
        if corners[:, 0].min() < x0 - 1e-9 or corners[:, 0].max() > x1 + 1e-9:
            return False
        if corners[:, 1].min() < z0 - 1e-9 or corners[:, 1].max() > z1 + 1e-9:
            return False
        cam_local = np.abs(A.T @ (self.C[[0, 2]] - c)) - half
        if np.linalg.norm(np.maximum(cam_local, 0.0)) < self.clearance:
            return False
        for other in self.bodies:
            if any(other is g for g in ignore):
                continue
            c2, A2, half2, (u0, u1) = self._rect(other, other.pos, other.yaw)
            if y1 <= u0 + 1e-6 or u1 <= y0 + 1e-6:
                continue
            if all(abs(ax @ (c2 - c)) < (np.abs(A.T @ ax) @ half + np.abs(A2.T @ ax) @ half2) - 2e-3
                   for ax in np.concatenate([A.T, A2.T])):
                return False
        return True

    def add(self, body: _Body, pos, yaw: float) -> _Body:
        body.pos, body.yaw = np.asarray(pos, dtype=np.float64), float(yaw)
        self.bodies.append(body)
        return body

    def try_add(self, body: _Body, pos, yaw: float, ignore=(), view: bool = False, **view_kw) -> bool:
        if (view and not self.view(body, pos, **view_kw)) or not self.fits(body, pos, yaw, ignore):
            return False
        self.add(body, pos, yaw)
        return True

    def n_objects(self) -> int:
        return sum(b.category is not None for b in self.bodies)


def _on_top(P: _Planner, rng, host: _Body, kinds, n: int, tries: int = 12) -> None:
    """Up to `n` clutter items of `kinds` resting on the top of `host` (meta['top'] metres)."""
    top = host.meta.get("top", host.dims[1])
    R = rot_y(host.yaw)
    for _ in range(n):
        item = _build_clutter(rng, kinds[int(rng.integers(len(kinds)))])
        hx, hz = host.dims[0] / 2 - 0.03, host.dims[2] / 2 - 0.03
        for _ in range(tries):
            r = 0.5 * math.hypot(item.dims[0], item.dims[2])
            if hx < r or hz < r:
                break
            local = np.array([rng.uniform(-hx + r, hx - r), -top, rng.uniform(-hz + r, hz - r)])
            if P.try_add(item, host.pos + R @ local, host.yaw + rng.uniform(-0.5, 0.5)):
                break


# ----------------------------------------------------------------------------- realistic: indoor
_WALL_YAW = {"back": 0.0, "left": -math.pi / 2, "right": math.pi / 2}


def _wall_pose(room, wall: str, along: float, body: _Body, gap: float = 0.0):
    """(pos (3,), yaw) of a body whose back (+z) touches `wall` at `along` metres along it."""
    x0, x1, z0, z1 = room
    l = body.dims[2]
    if wall == "back":
        return np.array([along, 0.0, z1 - l / 2 - gap]), 0.0
    if wall == "left":
        return np.array([x0 + l / 2 + gap, 0.0, along]), _WALL_YAW["left"]
    return np.array([x1 - l / 2 - gap, 0.0, along]), _WALL_YAW["right"]


def _against_wall(P: _Planner, rng, room, body: _Body, walls=("back", "left", "right"), tries: int = 40,
                  margin: float = 0.15) -> bool:
    """Place `body` with its back on one of `walls`, somewhere the camera sees its centre."""
    x0, x1, z0, z1 = room
    for _ in range(tries):
        wall = walls[int(rng.integers(len(walls)))]
        half_w = body.dims[0] / 2
        lo, hi = (x0 + half_w, x1 - half_w) if wall == "back" else (z0 + half_w, z1 - half_w)
        if hi <= lo:
            continue
        pos, yaw = _wall_pose(room, wall, rng.uniform(lo, hi), body)
        if P.try_add(body, pos, yaw, view=True, margin=margin):
            body.meta["wall"] = wall
            return True
    return False


def _free(P: _Planner, rng, room, body: _Body, tries: int = 40, margin: float = 0.1) -> bool:
    """Place `body` freely on the floor, mostly aligned with the room, where the camera sees it."""
    x0, x1, z0, z1 = room
    r = 0.5 * math.hypot(body.dims[0], body.dims[2])
    for _ in range(tries):
        pos = np.array([rng.uniform(x0 + r, x1 - r), 0.0, rng.uniform(z0 + r, z1 - r)])
        if rng.random() < 0.7:  # along the walls
            yaw = rng.integers(4) * math.pi / 2 + rng.normal(0.0, 0.08)
        else:
            yaw = rng.uniform(-math.pi, math.pi)
        if P.try_add(body, pos, yaw, view=True, margin=margin):
            return True
    return False


def _chairs_at(P: _Planner, rng, table: _Body, cats, n_max: int) -> None:
    """Chairs around `table`, facing it: pushed under its top when they fit, else touching it or
    pulled out a little."""
    if "chair" not in cats:
        return
    R = rot_y(table.yaw)
    sides = [0.0, math.pi, math.pi / 2, -math.pi / 2]
    rng.shuffle(sides)
    for phi in sides[:n_max]:
        if P.n_objects() >= P.max_objects or rng.random() < 0.3:
            continue
        chair = _build_chair(rng)
        across = phi in (0.0, math.pi)  # on the table's -z / +z side: the side runs along x
        e = table.dims[2] / 2 if across else table.dims[0] / 2
        side_len = table.dims[0] if across else table.dims[2]
        room_x = side_len / 2 - table.meta["leg_clear"] - 0.02
        off = rng.uniform(-1, 1) * max(0.0, room_x - chair.dims[0] / 2) * 0.5
        fits_under = (chair.meta["seat"] + 0.05 < table.meta["underside"] and abs(off) + chair.dims[0] / 2 < room_x)
        if fits_under and rng.random() < 0.6:
            push = rng.uniform(0.1, chair.dims[2] - chair.meta["back"] - 0.04)
        else:
            push = -rng.uniform(0.0, 0.3) if rng.random() < 0.6 else 0.0
        n = rot_y(phi) @ np.array([0.0, 0.0, -1.0])  # table frame, towards the chair
        t = rot_y(phi) @ np.array([1.0, 0.0, 0.0])
        local = n * (e + chair.dims[2] / 2 - push) + t * off
        P.try_add(chair, table.pos + R @ local, table.yaw + phi + math.pi, ignore=(table,))


def _indoor_layout(rng, cfg: SceneConfig, P: _Planner, room) -> None:
    """Furniture and clutter of a bedroom, an office / dining room or a living room."""
    cats = set(cfg.categories)
    want = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    P.max_objects = want
    kinds = [k for k, need in (("bedroom", "bed"), ("office", "table"), ("living", "sofa")) if need in cats]
    kind = kinds[int(rng.integers(len(kinds)))] if kinds else "none"
    small = ("mug", "bottle", "book", "laptop", "box", "plant", "lamp")
    if kind == "bedroom":
        bed = _build_bed(rng)
        if _against_wall(P, rng, room, bed, margin=0.3):
            for side in (-1, 1):
                if "night stand" in cats and rng.random() < 0.75:
                    ns = _build_night_stand(rng)  # beside the headboard, its back on the same wall
                    local = np.array([side * (bed.dims[0] / 2 + ns.dims[0] / 2 + rng.uniform(0.0, 0.05)), 0.0,
                                      (bed.dims[2] - ns.dims[2]) / 2])
                    if P.try_add(ns, bed.pos + rot_y(bed.yaw) @ local, bed.yaw):
                        _on_top(P, rng, ns, ("lamp", "book", "mug"), int(rng.integers(0, 3)))
    elif kind == "office":
        table = _build_table(rng, low=False)
        ok = _against_wall(P, rng, room, table) if rng.random() < 0.35 else _free(P, rng, room, table)
        if ok:
            _chairs_at(P, rng, table, cats, 2 if "wall" in table.meta else 4)
            _on_top(P, rng, table, small, int(rng.integers(1, 5)))
    elif kind == "living":
        sofa = _build_sofa(rng)
        if _against_wall(P, rng, room, sofa, margin=0.3):
            R = rot_y(sofa.yaw)
            if "table" in cats and rng.random() < 0.8:
                ct = _build_table(rng, low=True)
                gap = rng.uniform(0.3, 0.6)
                local = np.array([rng.uniform(-0.2, 0.2), 0.0, -(sofa.dims[2] / 2 + gap + ct.dims[2] / 2)])
                if P.try_add(ct, sofa.pos + R @ local, sofa.yaw + rng.normal(0.0, 0.05)):
                    _on_top(P, rng, ct, small, int(rng.integers(0, 4)))
            if "night stand" in cats and rng.random() < 0.5:
                ns = _build_night_stand(rng)
                side = rng.choice([-1, 1])
                local = np.array([side * (sofa.dims[0] + ns.dims[0]) / 2, 0.0, (sofa.dims[2] - ns.dims[2]) / 2])
                if P.try_add(ns, sofa.pos + R @ local, sofa.yaw):
                    _on_top(P, rng, ns, ("lamp", "plant"), 1)
    # more furniture until the wanted number of objects
    extra = [c for c in ("shelves", "bookshelf", "cabinet", "chair", "table", "night stand", "sofa", "bed")
             if c in cats]
    for _ in range(30):
        if P.n_objects() >= want or not extra:
            break
        cat = extra[int(rng.integers(len(extra)))]
        if cat in ("shelves", "bookshelf"):
            body, books = _build_shelves(rng, cat == "bookshelf")
            if _against_wall(P, rng, room, body, tries=20):
                R = rot_y(body.yaw)
                for b in books:  # unannotated, inside the shelf's box
                    P.add(_body(None, [b], b.color), body.pos + R @ _prim_foot(b), body.yaw)
        elif cat in ("chair", "table"):
            body = _BUILDERS[cat](rng)
            if _free(P, rng, room, body, tries=20) and cat == "table":
                _chairs_at(P, rng, body, cats, 2)
                _on_top(P, rng, body, small, int(rng.integers(0, 3)))
        else:
            body = _BUILDERS[cat](rng)
            if _against_wall(P, rng, room, body, tries=20) and "top" in body.meta and body.dims[1] < 1.2:
                _on_top(P, rng, body, ("lamp", "box", "plant", "book"), int(rng.integers(0, 3)))
    # clutter on the floor: some in front of objects (occluders), the rest anywhere in view
    n_clutter = int(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1))
    targets = [b for b in P.bodies if b.category is not None]
    for i in range(n_clutter):
        item = _build_clutter(rng, ("box", "bin", "bag", "plant", "box")[int(rng.integers(5))])
        for _ in range(15):
            if targets and i % 2 == 0:
                tgt = targets[int(rng.integers(len(targets)))]
                f = rng.uniform(0.45, 0.85)
                p = P.C + f * (tgt.pos - P.C)
                pos = np.array([p[0] + rng.normal(0.0, 0.2), 0.0, p[2] + rng.normal(0.0, 0.2)])
            else:
                x0, x1, z0, z1 = room
                pos = np.array([rng.uniform(x0 + 0.3, x1 - 0.3), 0.0, rng.uniform(z0 + 0.3, z1 - 0.3)])
            if P.try_add(item, pos, rng.uniform(-math.pi, math.pi), view=True, margin=0.2):
                break


def _prim_foot(p: Primitive) -> np.ndarray:
    """(3,) the point on the floor plan under a primitive's bottom: (x, bottom y, z), body frame."""
    b = p.bound_half()
    return np.array([p.center[0], p.center[1] + b[1], p.center[2]])


# ----------------------------------------------------------------------------- realistic: outdoor
#: The far end of `SceneConfig.distance` that the outdoor layout's own distances (how far
#: pedestrians, cyclists, cones and barriers stand) were written for: the KITTI-like 45 m.
#: A street of another far end stretches them by distance[1] / _STREET_REF_M (x 1.0 exactly at
#: 45 m, so the KITTI-like scenes are those of before the ranges followed `distance`).
_STREET_REF_M = 45.0


def _outdoor_layout(rng, cfg: SceneConfig, P: _Planner, street: dict) -> None:
    """Cars (parked rows along the kerbs, moving in lanes, queued), pedestrians (sidewalks,
    crossing, crowds), cyclists, cones, barriers and street furniture, at camera distances
    `cfg.distance`; with a cross street (`street["cross"]`), part of the moving cars and
    pedestrians go to it: cars driving across, crowds on its corners, people crossing it.

    The groups (`cfg.street`, a StreetMix) are placed in random order until `cfg.n_objects`
    objects stand in the scene.
    """
    cats = set(cfg.categories)
    mix = cfg.street
    want = int(rng.integers(cfg.n_objects[0], cfg.n_objects[1] + 1))
    P.max_objects = want
    xl, xr, curb = street["xl"], street["xr"], street["curb"]
    zr = cfg.distance
    s = zr[1] / _STREET_REF_M  # 1.0 for the KITTI-like streets
    near = dict(view=True, margin=0.05, z_range=zr)
    edge = dict(view=True, margin=0.25, z_range=zr)  # may stand past the image border (truncated)
    sidewalks = [(street["xl_out"], xl), (xr, street["xr_out"])]
    cross = street.get("cross")  # (z0, z1) of the cross road, its sidewalk width, how far it runs

    def room_left() -> bool:
        return P.n_objects() < want

    def to_cross() -> bool:  # no draw without a cross street (the KITTI-like scenes)
        return cross is not None and rng.random() < mix.cross_share

    def parked_row(side: int) -> None:  # cars along a kerb, touching and hiding each other
        z, yaw0 = rng.uniform(zr[0] - 3.0, zr[0] + 8.0), (0.0 if rng.random() < 0.5 else math.pi)
        for _ in range(int(rng.integers(2, 8))):
            if z > zr[1] or not room_left():
                return
            car = _build_car(rng)
            x = (xl if side < 0 else xr) - side * (car.dims[0] / 2 + rng.uniform(0.15, 0.5))  # at the kerb
            z += car.dims[2] / 2
            P.try_add(car, np.array([x, 0.0, z]), yaw0 + rng.normal(0.0, 0.03), **edge)
            z += car.dims[2] / 2 + (rng.uniform(0.3, 1.5) if rng.random() < 0.8 else rng.uniform(3.0, 8.0))

    def n_queued() -> int:
        lo, hi = mix.queue
        return int(rng.integers(lo, hi + 1)) if hi > lo else lo

    def moving_car() -> None:  # own lane and the lanes right of it go our way, the others come towards us
        if to_cross():
            return cross_traffic()
        lanes = [x for x in np.arange(-3.5 * 3, 3.5 * 2, 3.5) if xl + 1.2 < x - 1.0 and x + 1.0 < xr - 1.2]
        if lanes:
            n = n_queued()
            x = float(lanes[int(rng.integers(len(lanes)))])
            yaw = (0.0 if x >= 0 else math.pi) + rng.normal(0.0, 0.04)
            car = _build_car(rng)
            pos = np.array([x + rng.normal(0.0, 0.3), 0.0, rng.uniform(8.0, zr[1])])
            P.try_add(car, pos, yaw, **near)
            for _ in range(n - 1):  # queued behind it in the same lane: hidden by the car ahead
                if not room_left():
                    return
                nxt = _build_car(rng)
                gap = (car.dims[2] + nxt.dims[2]) / 2 + rng.uniform(1.5, 8.0)
                pos = pos + np.array([rng.normal(0.0, 0.3), 0.0, gap])
                P.try_add(nxt, pos, yaw + rng.normal(0.0, 0.04), **near)
                car = nxt

    def cross_traffic() -> None:  # a queue driving across, in one of the cross road's two lanes
        z0, z1, _, reach = cross
        far_lane = rng.random() < 0.5  # drives left to right on the far lane, right to left on the near one
        z = (z0 + z1) / 2 + (1.0 if far_lane else -1.0) * (z1 - z0) / 4 + rng.normal(0.0, 0.3)
        d = 1.0 if far_lane else -1.0
        x = rng.uniform(-1.0, 1.0) * z * min(P.W / 2 / P.K[0, 0], reach / z)  # in view
        for _ in range(n_queued()):
            if not room_left():
                return
            car = _build_car(rng)  # front towards -z, turned to face +x (d > 0) or -x
            yaw = -d * math.pi / 2 + rng.normal(0.0, 0.04)
            P.try_add(car, np.array([x, 0.0, z + rng.normal(0.0, 0.2)]), yaw, **edge)
            x -= d * (car.dims[2] + rng.uniform(1.5, 8.0))

    def group_size() -> int:  # the founder, then each further person with its probability
        return 1 + sum(int(rng.random() < p) for p in mix.group_join)

    def pedestrians() -> None:  # on a sidewalk (alone or in a group) or crossing the road
        if to_cross():
            return corner_crowd()
        a, b = sidewalks[int(rng.integers(2))]
        crossing = rng.random() < 0.15
        x = rng.uniform(xl + 1.0, xr - 1.0) if crossing else rng.uniform(a + 0.4, b - 0.4)
        z = rng.uniform(zr[0], min(zr[1], 35.0 * s))
        yaw = (rng.choice([-1, 1]) * math.pi / 2 if crossing else rng.choice([0.0, math.pi])) + rng.normal(0.0, 0.3)
        for k in range(group_size()):
            pos = np.array([x + (0.0 if crossing else rng.uniform(-0.5, 0.5)), 0.0 if crossing else -curb,
                            z + k * rng.uniform(0.6, 1.2)])
            if room_left():
                P.try_add(_build_pedestrian(rng), pos, yaw + rng.normal(0.0, 0.2), **near)

    def corner_crowd() -> None:  # waiting on a corner of the cross street, or crossing it, bunched
        z0, z1, sw, reach = cross
        side = 1.0 if rng.random() < 0.5 else -1.0
        kerb = xr if side > 0 else xl
        if rng.random() < 0.3:  # on the cross road, walking along the main street's kerb line
            x, y, band = kerb - side * rng.uniform(0.5, 2.5), 0.0, (z0 + 0.4, z1 - 0.4)
            yaw = rng.choice([0.0, math.pi])
        else:  # on a corner: the cross street's sidewalk beyond the kerb
            x, y = kerb + side * rng.uniform(0.5, min(25.0, reach)), -curb
            band = (z0 - sw + 0.4, z0 - 0.4) if rng.random() < 0.5 else (z1 + 0.4, z1 + sw - 0.4)
            yaw = rng.choice([-1, 1]) * math.pi / 2
        yaw += rng.normal(0.0, 0.3)
        z = rng.uniform(*band)
        for _ in range(group_size()):
            if not room_left():
                return
            pos = np.array([x + rng.normal(0.0, 0.8), y, float(np.clip(z + rng.normal(0.0, 0.6), *band))])
            P.try_add(_build_pedestrian(rng), pos, yaw + rng.normal(0.0, 0.3), **near)

    def cyclist() -> None:
        right = rng.random() < 0.6
        x = xr - rng.uniform(0.6, 1.3) if right else xl + rng.uniform(0.6, 1.3)
        yaw = (0.0 if right else math.pi) + rng.normal(0.0, 0.08)
        P.try_add(_build_cyclist(rng), np.array([x, 0.0, rng.uniform(zr[0] + 1.0, min(zr[1], 40.0 * s))]), yaw,
                  **near)

    def cones() -> None:  # a line of cones along a lane boundary
        x, z = float(rng.choice([-1.75, 1.75])) + rng.normal(0.0, 0.1), rng.uniform(6.0 * s, 25.0 * s)
        for _ in range(int(rng.integers(3, 7))):
            if room_left():
                P.try_add(_build_traffic_cone(rng), np.array([x, 0.0, z]), rng.uniform(-math.pi, math.pi), **near)
            z += rng.uniform(1.5, 3.0)

    def barriers() -> None:  # segments end to end along a road edge
        x, z = (xr - 0.4 if rng.random() < 0.5 else xl + 0.4), rng.uniform(5.0 * s, 25.0 * s)
        for _ in range(int(rng.integers(mix.barrier_segments[0], mix.barrier_segments[1] + 1))):
            bar = _build_barrier(rng)
            z += bar.dims[0] / 2
            if room_left():
                P.try_add(bar, np.array([x, 0.0, z]), math.pi / 2 + rng.normal(0.0, 0.02), **near)
            z += bar.dims[0] / 2 + rng.uniform(0.0, 0.05)

    groups = []
    if "car" in cats:
        groups += ([lambda: parked_row(-1)] * int(rng.random() < mix.parked_rows[0])
                   + [lambda: parked_row(1)] * int(rng.random() < mix.parked_rows[1]))
        groups += [moving_car] * int(rng.integers(mix.moving_cars[0], mix.moving_cars[1] + 1))
    if "pedestrian" in cats:
        groups += [pedestrians] * int(rng.integers(mix.pedestrian_groups[0], mix.pedestrian_groups[1] + 1))
    if "cyclist" in cats:
        groups += [cyclist] * int(rng.integers(mix.cyclists[0], mix.cyclists[1] + 1))
    if "traffic cone" in cats and rng.random() < mix.cone_lines:
        groups.append(cones)
    if "barrier" in cats:
        groups += [barriers] * sum(int(rng.random() < p) for p in mix.barrier_rows)
    for k in rng.permutation(len(groups)):
        if room_left():
            groups[k]()
    # street furniture: poles and trees along the kerbs, bins and hydrants on the sidewalks
    for side, (a, b) in zip((-1, 1), sidewalks):
        z = rng.uniform(-5.0, 10.0)
        while z < street["z_far"] - 5:
            kind = "tree" if rng.random() < 0.35 else "pole"
            x = (b - 0.5) if side < 0 else (a + 0.5)
            P.try_add(_build_clutter(rng, kind), np.array([x, -curb, z]), 0.0)
            z += rng.uniform(12.0, 30.0)
    for _ in range(int(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1))):
        a, b = sidewalks[int(rng.integers(2))]
        item = _build_clutter(rng, ("bin", "hydrant", "box")[int(rng.integers(3))])
        P.try_add(item, np.array([rng.uniform(a + 0.3, b - 0.3), -curb, rng.uniform(3.0, 40.0 * s)]),
                  rng.uniform(-math.pi, math.pi))


def _street_structure(rng, mix: StreetMix, z_objects: float) -> tuple[dict, list[_Body]]:
    """Road edges, kerb height, sidewalks, building blocks and (maybe) a cross street of a street
    along +z, as `mix` says; a cross street begins before `z_objects` - 12 m (the far end of the
    objects' distances), so that what stands in it is in range.

    Returns the street facts (xl, xr: road edges; xl_out, xr_out: facades; curb: sidewalk
    height; z_far: the far wall; cross: None or (z0, z1, sidewalk width, reach), the cross road
    between camera z0 and z1 with its corner sidewalks, open `reach` metres to each side) and
    the background bodies (sidewalks, buildings, far wall).
    """
    z_far = rng.uniform(*mix.street_length)
    xl, xr = -rng.uniform(*mix.road_left), rng.uniform(*mix.road_right)
    curb = rng.uniform(0.1, 0.18)
    swl, swr = rng.uniform(*mix.sidewalk), rng.uniform(*mix.sidewalk)
    st = {"xl": xl, "xr": xr, "curb": curb, "xl_out": xl - swl, "xr_out": xr + swr, "z_far": z_far, "cross": None}
    z0 = -30.0
    grey = np.array([0.55, 0.55, 0.55])
    gap = (math.inf, math.inf)  # the z span the cross street keeps free of buildings and main sidewalks
    corners: list[_Body] = []
    if mix.cross_street > 0 and rng.random() < mix.cross_street:
        zc0 = rng.uniform(20.0, min(z_far - 30.0, z_objects - 12.0))
        zc1 = zc0 + rng.uniform(8.0, 16.0)
        sw = rng.uniform(*mix.sidewalk)
        reach = 60.0
        st["cross"] = (zc0, zc1, sw, reach)
        gap = (zc0 - sw, zc1 + sw)
        for a, b in ((xl - swl - reach, xl), (xr, xr + swr + reach)):  # the corner sidewalks, along x
            for za, zb in ((zc0 - sw, zc0), (zc1, zc1 + sw)):
                body = _body(None, [_box(0, 0, b - a, zb - za, 0, curb)], grey * rng.uniform(0.9, 1.2))
                body.pos, body.meta["pattern"] = np.array([(a + b) / 2, 0.0, (za + zb) / 2]), 4
                corners.append(body)
    bodies = []
    for a, b in ((xl - swl, xl), (xr, xr + swr)):
        for za, zb in (((z0, z_far),) if st["cross"] is None else ((z0, gap[0]), (gap[1], z_far))):
            body = _body(None, [_box(0, 0, b - a, zb - za, 0, curb)], grey * rng.uniform(0.9, 1.2))
            body.pos, body.meta["pattern"] = np.array([(a + b) / 2, 0.0, (za + zb) / 2]), 4
            bodies.append(body)
    bodies += corners
    setbacks = {}
    for side, face in ((-1, xl - swl), (1, xr + swr)):
        z, setback, tall = z0, rng.uniform(*mix.setback), rng.uniform(6.0, 18.0)
        setbacks[side] = setback
        while z < z_far:
            length = rng.uniform(8.0, 25.0)
            if rng.random() < 0.15:  # a side street, with the next row of houses further out
                length = rng.uniform(6.0, 12.0)
                x = face + side * (setback + rng.uniform(15.0, 25.0) + 5.0)
            else:
                x = face + side * (setback + rng.uniform(0.0, 1.5) + 5.0)
            if z < gap[1] and z + length > gap[0]:  # stop at the cross street, go on beyond it
                length = gap[0] - z
                if length < 1.0:
                    z = gap[1]
                    continue
            body = _body(None, [_box(0, 0, 10.0, length, 0, tall * rng.uniform(0.4, 1.0))], _col(rng, 0.35, 0.85))
            body.pos, body.meta["pattern"] = np.array([x, 0.0, z + length / 2]), 2
            bodies.append(body)
            z = gap[1] if z < gap[0] <= z + length + 1e-9 else z + length
    if st["cross"] is not None:  # the corner blocks along the cross street; half the corners are open
        for side, face in ((-1, xl - swl), (1, xr + swr)):
            for za, zb in ((gap[0] - 12.0, gap[0]), (gap[1], gap[1] + 12.0)):
                if rng.random() < 0.5:  # a plaza, a park, a car park: the cross street shows beyond it
                    continue
                a, b = sorted((face + side * setbacks[side], face + side * st["cross"][3]))
                body = _body(None, [_box(0, 0, b - a, zb - za, 0, rng.uniform(6.0, 18.0))], _col(rng, 0.35, 0.85))
                body.pos, body.meta["pattern"] = np.array([(a + b) / 2, 0.0, (za + zb) / 2]), 2
                bodies.append(body)
    far = _body(None, [_box(0, 0, 400.0, 10.0, 0, rng.uniform(4.0, 12.0))], _col(rng, 0.4, 0.8))
    far.pos, far.meta["pattern"] = np.array([0.0, 0.0, z_far + 5.0]), 2
    bodies.append(far)
    return st, bodies


# ----------------------------------------------------------------------------- realistic: rendering
def _rect_of(prim_cam: Primitive, K, W, H):
    """Pixel index ranges (v0, v1, u0, u1) that can see a camera-frame primitive, or None."""
    box = Box3D(prim_cam.center, 2.0 * _own_bound(prim_cam), prim_cam.R)
    b = project_box(box, K, (W, H))
    if b is None:
        return None
    u0, v0 = max(0, int(math.floor(b[0])) - 1), max(0, int(math.floor(b[1])) - 1)
    u1, v1 = min(W, int(math.ceil(b[2])) + 1), min(H, int(math.ceil(b[3])) + 1)
    return (v0, v1, u0, u1) if u1 > u0 and v1 > v0 else None


def _own_bound(p: Primitive) -> np.ndarray:
    """(3,) half extents of a primitive in its own frame."""
    if p.kind in ("cylinder", "cone"):
        return np.array([p.half[0], p.half[1], p.half[0]])
    return np.asarray(p.half)


def _render_bodies(bodies: list[_Body], planes: list[tuple], R_lc, C, K, W, H):
    """Ray cast planes and bodies.

    Args:
        bodies: placed bodies (layout frame); planes: (normal (3,), offset) with n . p = offset.
        R_lc (3, 3) camera -> layout, C (3,) camera centre (layout frame), K (3, 3), image W x H.
    Rays are cast only over the pixels a primitive's projected bounding box covers.
    Returns:
        depth (H, W) float64 z-depth in metres (inf where nothing is hit), surface (H, W) int32:
        plane index, or len(planes) + global primitive index; amodal (len(bodies),) int pixels
        each body covers alone; prims_cam: every primitive in the camera frame; prim_body (P,)
        the body index of each primitive; d_l (3, H, W) the pixel rays in the layout frame
        (camera z = 1, so t is the z-depth).
    """
    v, u = np.mgrid[0:H, 0:W]
    d_cam = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((H, W))])
    d_l = np.tensordot(R_lc, d_cam, axes=1)  # (3, H, W) layout frame; the ray parameter t is the camera z-depth
    zbuf, surf = np.full((H, W), np.inf), np.zeros((H, W), np.int32)
    for i, (n, off) in enumerate(planes):
        t = (off - n @ C) / _safe(np.tensordot(n, d_l, axes=1))
        closer = (t > 1e-6) & (t < zbuf)
        zbuf[closer] = t[closer]
        surf[closer] = i
    R_cl = R_lc.T
    prims_cam, prim_body, amodal = [], [], np.zeros(len(bodies), np.int64)
    for bi, body in enumerate(bodies):
        Rb = rot_y(body.yaw)
        jobs = []
        for p in body.prims:
            pl = p.moved(Rb, body.pos)  # layout frame
            pc = pl.moved(R_cl, -R_cl @ C)  # camera frame
            gid = len(prims_cam)
            prims_cam.append(pc)
            prim_body.append(bi)
            rect = _rect_of(pc, K, W, H)
            if rect is not None:
                jobs.append((pl, rect, gid))
        if not jobs:
            continue
        V0, V1 = min(j[1][0] for j in jobs), max(j[1][1] for j in jobs)
        U0, U1 = min(j[1][2] for j in jobs), max(j[1][3] for j in jobs)
        tb = np.full((V1 - V0, U1 - U0), np.inf)
        ib = np.zeros((V1 - V0, U1 - U0), np.int32)
        for pl, (v0, v1, u0, u1), gid in jobs:
            t = pl.hit(C, d_l[:, v0:v1, u0:u1].reshape(3, -1)).reshape(v1 - v0, u1 - u0)
            sub_t, sub_i = tb[v0 - V0:v1 - V0, u0 - U0:u1 - U0], ib[v0 - V0:v1 - V0, u0 - U0:u1 - U0]
            closer = t < sub_t
            sub_t[closer] = t[closer]
            sub_i[closer] = gid
        amodal[bi] = int(np.isfinite(tb).sum())
        zb, sb = zbuf[V0:V1, U0:U1], surf[V0:V1, U0:U1]
        closer = tb < zb
        zb[closer] = tb[closer]
        sb[closer] = ib[closer] + len(planes)
    return zbuf, surf, amodal, prims_cam, np.array(prim_body, dtype=np.int64), d_l


def _shade(pts_l: np.ndarray, surf: np.ndarray, colors: np.ndarray, patterns: np.ndarray,
           sky: np.ndarray) -> np.ndarray:
    """Colour image (H, W, 3) uint8.

    Args:
        pts_l: (3, H, W) hit points in the layout frame (metres; anything where `sky`).
        surf: (H, W) surface index into `colors` (S, 3) RGB in [0, 1] and `patterns` (S,):
            0 plain, 1 floor tiles, 2 facade / wall blocks, 3 road with lane marks, 4 paving.
        sky: (H, W) bool, painted with a gradient.
    Lambert shading with normals from neighbouring points.
    """
    H, W = surf.shape
    pat = patterns[surf]
    f = np.ones((H, W))
    white = np.zeros((H, W), bool)
    for code, fn in ((1, lambda x, y, z: 0.8 + 0.2 * ((np.floor(x / 0.5) + np.floor(z / 0.5)) % 2)),
                     (2, lambda x, y, z: 0.85 + 0.15 * ((np.floor(-y / 3.0) + np.floor((x + z) / 2.5)) % 2)),
                     (4, lambda x, y, z: 0.85 + 0.15 * ((np.floor(x / 0.3) + np.floor(z / 0.3)) % 2))):
        m = pat == code
        if m.any():
            f[m] = fn(pts_l[0][m], pts_l[1][m], pts_l[2][m])
    m = pat == 3
    if m.any():  # dashed lane boundaries every 3.5 m across (the camera drives in a lane centre)
        x, z = pts_l[0][m], pts_l[2][m]
        white[m] = (np.abs(((x + 1.75) % 3.5) - 1.75) > 1.65) & ((z % 9.0) < 4.0)
    du = np.zeros((3, H, W))
    dv = np.zeros((3, H, W))
    du[:, :, 1:-1] = pts_l[:, :, 2:] - pts_l[:, :, :-2]
    dv[:, 1:-1] = pts_l[:, 2:] - pts_l[:, :-2]
    light = np.array([-0.3, -0.85, -0.45])
    light /= np.linalg.norm(light)
    nx = du[1] * dv[2] - du[2] * dv[1]
    ny = du[2] * dv[0] - du[0] * dv[2]
    nz = du[0] * dv[1] - du[1] * dv[0]
    norm = np.maximum(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-12)
    lam = np.abs(nx * light[0] + ny * light[1] + nz * light[2]) / norm
    shade = 0.45 + 0.55 * lam
    col = colors.astype(np.float32)[surf] * (f * shade).astype(np.float32)[..., None]
    if white.any():
        col[white] = (0.9 * shade[white])[:, None]
    if sky.any():
        rows = np.broadcast_to(np.linspace(0.0, 1.0, H)[:, None], (H, W))[sky]
        col[sky] = np.array([0.45, 0.65, 0.95]) * (1 - 0.3 * rows[:, None]) + 0.3 * rows[:, None]
    return (np.clip(col, 0, 1) * 255).round().astype(np.uint8)


def _generate_realistic(seed: int, cfg: SceneConfig, noise: NoiseConfig) -> Scene:
    """Render one scene of the indoor or outdoor layout (see `generate_scene`)."""
    rng = np.random.default_rng(seed)
    W, H = cfg.width, cfg.height
    K = K_from_fov(W, H, _u(rng, cfg.fov_x_deg))
    cam_h = _u(rng, cfg.camera_height)
    pitch = math.radians(_u(rng, cfg.pitch_down_deg))
    roll = math.radians(_u(rng, cfg.roll_deg))
    R_wc = _rot_x(-pitch) @ _rot_z(roll)  # camera -> gravity frame (x right, y down, z heading)
    gravity_cam = R_wc.T @ np.array([0.0, 1.0, 0.0])
    if cfg.layout == "indoor":
        width, depth_r = 2 * _u(rng, cfg.room_half_width), _u(rng, cfg.room_depth)
        room = (-width / 2, width / 2, 0.0, depth_r)
        C = np.array([rng.uniform(-0.25, 0.25) * width, -cam_h, rng.uniform(0.15, 0.9)])
        psi = math.radians(rng.uniform(-30.0, 30.0))  # camera heading in the room
        R_lc = rot_y(psi) @ R_wc
        planes = [(np.array([0.0, 1.0, 0.0]), 0.0), (np.array([0.0, 0.0, 1.0]), depth_r),
                  (np.array([1.0, 0.0, 0.0]), room[0]), (np.array([1.0, 0.0, 0.0]), room[1]),
                  (np.array([0.0, 0.0, 1.0]), 0.0), (np.array([0.0, 1.0, 0.0]), -cfg.room_height)]
        floor_col = np.array([0.55, 0.45, 0.35]) * rng.uniform(0.7, 1.3, 3)
        plane_col = np.concatenate([[floor_col], np.repeat(_col(rng, 0.6, 0.95)[None], 4, 0), [[0.95, 0.95, 0.95]]])
        plane_pat = [1, 0, 0, 0, 0, 0]
        P = _Planner(rng, K, R_lc, C, W, H, room)
        _indoor_layout(rng, cfg, P, room)
        background = []
    else:
        psi = math.radians(rng.uniform(-5.0, 5.0))  # heading relative to the street
        C = np.array([0.0, -cam_h, 0.0])
        R_lc = rot_y(psi) @ R_wc
        street, background = _street_structure(rng, cfg.street, cfg.distance[1])
        planes = [(np.array([0.0, 1.0, 0.0]), 0.0)]
        plane_col, plane_pat = np.array([[0.3, 0.3, 0.32]]) * rng.uniform(0.8, 1.2), [3]
        reach = street["cross"][3] if street["cross"] else 0.0  # objects may stand in the cross street
        bounds = (street["xl_out"] - reach, street["xr_out"] + reach, -30.0, street["z_far"])
        P = _Planner(rng, K, R_lc, C, W, H, bounds, clearance=1.0)
        _outdoor_layout(rng, cfg, P, street)
    bodies = P.bodies + background
    zbuf, surf, amodal, prims_cam, prim_body, d_l = _render_bodies(bodies, planes, R_lc, C, K, W, H)
    sky = ~np.isfinite(zbuf)
    depth = np.where(sky, 0.0, zbuf).astype(np.float32)

    # instance ids: annotated categories get 1.., clutter and background 0
    obj_index = [i for i, b in enumerate(bodies) if b.category is not None]
    body_iid = np.zeros(len(bodies) + 1, np.int32)
    for k, bi in enumerate(obj_index):
        body_iid[bi] = k + 1
    n_pl = len(planes)
    surf_body = np.where(surf >= n_pl, prim_body[np.maximum(surf - n_pl, 0)] if len(prim_body) else 0, len(bodies))
    inst = body_iid[surf_body].astype(np.int32)

    # colours: planes, then one entry per primitive (its own colour or its body's)
    colors = [np.asarray(c, dtype=np.float64) for c in plane_col]
    patterns = list(plane_pat)
    for p, bi in zip(prims_cam, prim_body):
        colors.append(np.asarray(p.color, dtype=np.float64) if p.color is not None else bodies[bi].color)
        patterns.append(bodies[bi].meta.get("pattern", 0))
    pts_l = C[:, None, None] + d_l * np.where(sky, 0.0, zbuf)
    rgb = _shade(pts_l, surf, np.array(colors), np.array(patterns), sky)

    R_cl = R_lc.T
    objects = []
    for k, bi in enumerate(obj_index):
        b = bodies[bi]
        iid = k + 1
        Rb = rot_y(b.yaw)
        center_cam = R_cl @ (b.pos + Rb @ np.array([0.0, -b.dims[1] / 2, 0.0]) - C)
        yaw = wrap_angle(b.yaw - psi)
        box = Box3D(center_cam, b.dims, R_wc.T @ rot_y(yaw), yaw)
        m = inst == iid
        vis = int(m.sum())
        bbox = None
        if vis:
            rows = np.flatnonzero(m.any(axis=1))
            cols = np.flatnonzero(m.any(axis=0))
            bbox = (float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1))
        full = project_box(box, K, None)
        clipped = project_box(box, K, (W, H))
        area = lambda r: 0.0 if r is None else (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
        trunc = 1.0 - area(clipped) / area(full) if area(full) > 0 else 1.0
        parts = tuple(prims_cam[j] for j in np.flatnonzero(prim_body == bi))
        objects.append(SceneObject(iid, b.category, "composite", box, vis, int(amodal[bi]), float(trunc), bbox,
                                   annotated=vis >= max(1, cfg.min_visible_pixels), parts=parts,
                                   bbox_amodal_xyxy=clipped))
    depth_noisy, info = _apply_noise(depth, noise, rng, K, gravity_cam)
    return Scene(rgb, depth, depth_noisy, inst, K, gravity_cam, cam_h, objects, layout=cfg.layout, sensor=info,
                 boxes_2d=cfg.boxes_2d)


def apply_noise(depth: np.ndarray, noise: NoiseConfig, rng: np.random.Generator, K: np.ndarray | None = None,
                gravity_cam: np.ndarray | None = None) -> np.ndarray:
    """Sensor-like corruption of an exact (H, W) depth map in metres; 0 marks missing pixels.

    The sensor model (`noise.sensor`) acts first, then the generic corruptions (rel_sigma,
    quant_coeff, missing_fraction, flying_pixels). K (3, 3) is needed by the kinect, stereo
    (unless their focal_px is set) and lidar models, `gravity_cam` (3,) by lidar (its scan
    lines are level).
    """
    return _apply_noise(depth, noise, rng, K, gravity_cam)[0]


def _corrupt(depth: np.ndarray, noise: NoiseConfig, rng: np.random.Generator) -> np.ndarray:
    """The generic corruptions of `NoiseConfig` on an (H, W) depth map in metres (0 = missing)."""
    z = depth.astype(np.float64).copy()
    if noise.flying_pixels:
        # pixels on a depth discontinuity take a value between the two sides
        pad = np.pad(z, 1, mode="edge")
        nb = np.stack([pad[1:-1, 2:], pad[1:-1, :-2], pad[2:, 1:-1], pad[:-2, 1:-1]])
        far = nb.max(axis=0)
        near = nb.min(axis=0)
        edge = (far - near) > 0.1 * z
        a = rng.uniform(0.0, 1.0, size=z.shape)
        z = np.where(edge, near + a * (far - near), z)
    if noise.rel_sigma > 0:
        z = z * (1.0 + rng.normal(0.0, noise.rel_sigma, size=z.shape))
    if noise.quant_coeff > 0:
        step = noise.quant_coeff * z * z
        z = np.round(z / step) * step
    if noise.missing_fraction > 0:
        # seeds dilated into small blobs (3x3) until about the requested fraction is gone
        seeds = rng.random(z.shape) < noise.missing_fraction / 9.0
        pad = np.pad(seeds, 1)
        blob = np.zeros_like(seeds)
        for dy in range(3):
            for dx in range(3):
                blob |= pad[dy:dy + z.shape[0], dx:dx + z.shape[1]]
        z[blob] = 0.0
    return z.astype(np.float32)


# ----------------------------------------------------------------------------- sensor model functions
def _shift_stack(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """(2r+1, H, W) copies of `a` shifted by -r..r along `axis`, edge-padded."""
    pad = [(0, 0), (0, 0)]
    pad[axis] = (r, r)
    p = np.pad(a, pad, mode="edge")
    n = a.shape[axis]
    return np.stack([np.take(p, np.arange(k, k + n), axis=axis) for k in range(2 * r + 1)])


def _max_filter(a: np.ndarray, r: int) -> np.ndarray:
    """Maximum over the (2r+1)^2 window around each pixel of an (H, W) array (edge-padded)."""
    return _shift_stack(_shift_stack(a, r, 1).max(axis=0), r, 0).max(axis=0) if r > 0 else a


def _min_filter(a: np.ndarray, r: int) -> np.ndarray:
    return -_max_filter(-a, r)


def _box_blur(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window around each pixel of an (H, W) array (edge-padded)."""
    if r <= 0:
        return a
    out = a
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (r + 1, r)
        c = np.cumsum(np.pad(out, pad, mode="edge"), axis=axis)
        n = out.shape[axis]
        hi, lo = np.take(c, np.arange(2 * r + 1, 2 * r + 1 + n), axis=axis), np.take(c, np.arange(n), axis=axis)
        out = (hi - lo) / (2 * r + 1)
    return out


def _smooth_field(shape: tuple[int, int], cell_px: float, rng) -> np.ndarray:
    """(H, W) smooth random field: unit Gaussians on a grid of `cell_px` pixels, bilinearly
    interpolated (values vary over ~cell_px pixels)."""
    H, W = shape
    gh, gw = int(math.ceil(H / cell_px)) + 2, int(math.ceil(W / cell_px)) + 2
    g = rng.normal(0.0, 1.0, size=(gh, gw))
    y = np.arange(H) / cell_px + 0.5
    x = np.arange(W) / cell_px + 0.5
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    a = g[np.ix_(y0, x0)]
    b = g[np.ix_(y0, x0 + 1)]
    c = g[np.ix_(y0 + 1, x0)]
    d = g[np.ix_(y0 + 1, x0 + 1)]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _discontinuity(z: np.ndarray, rel: float) -> np.ndarray:
    """(H, W) bool: pixels with a valid 4-neighbour whose depth differs by more than rel * z."""
    pad = np.pad(z, 1, mode="edge")
    nb = np.stack([pad[1:-1, 2:], pad[1:-1, :-2], pad[2:, 1:-1], pad[:-2, 1:-1]])
    return np.any((np.abs(nb - z) > rel * np.maximum(z, nb)) & (nb > 0), axis=0) & (z > 0)


def _focal(m, K) -> float:
    if m.focal_px is not None:
        return float(m.focal_px)
    if K is None:
        raise ValueError(f"the {m.name} model needs K (or focal_px)")
    return float(K[0, 0])


def projector_shadow(z: np.ndarray, focal_px: float, baseline_m: float, side: str = "left") -> np.ndarray:
    """(H, W) bool: pixels of an (H, W) depth map (metres, 0 = none) that a projector
    `baseline_m` beside the camera (same image rows) cannot light: the background strip of
    width f b (1/z_near - 1/z_far) pixels on `side` of every nearer surface."""
    H, W = z.shape
    disp = np.where(z > 0, focal_px * baseline_m / np.where(z > 0, z, 1.0), 0.0)
    u = np.arange(W, dtype=np.float64)[None, :]
    if side == "left":  # projector coordinate u - d; shadowed if some pixel to the right maps further left
        xp = u - disp
        run = np.minimum.accumulate(xp[:, ::-1], axis=1)[:, ::-1]
        nxt = np.concatenate([run[:, 1:], np.full((H, 1), np.inf)], axis=1)
        return (xp > nxt + 0.25) & (z > 0)
    if side == "right":
        xp = u + disp
        run = np.maximum.accumulate(xp, axis=1)
        prv = np.concatenate([np.full((H, 1), -np.inf), run[:, :-1]], axis=1)
        return (xp < prv - 0.25) & (z > 0)
    raise ValueError(f"shadow_side must be left or right, got {side!r}")


def _kinect(z: np.ndarray, m: KinectModel, rng, K) -> tuple[np.ndarray, dict]:
    f = _focal(m, K)
    fb = f * m.baseline_m
    valid = z > 0
    holes = projector_shadow(z, f, m.baseline_m, m.shadow_side)
    holes |= valid & ((z < m.min_range_m) | (z > m.max_range_m))
    if m.dropout_fraction > 0:
        field_ = _box_blur(_smooth_field(z.shape, m.patch_px, rng), max(1, m.patch_px // 3))  # round blobs
        holes |= field_ > np.quantile(field_, 1.0 - m.dropout_fraction)
    if m.edge_dropout > 0:
        holes |= _discontinuity(z, 0.05) & (rng.random(z.shape) < m.edge_dropout)
    a, b = m.noise_sigma
    zn = z + rng.normal(0.0, 1.0, z.shape) * (a + b * (z - 0.4) ** 2)
    disp = fb / np.where(zn > 0, zn, 1.0)
    if m.disparity_step_px > 0:
        disp = np.maximum(np.round(disp / m.disparity_step_px), 1.0) * m.disparity_step_px
    out = np.where(valid & ~holes & (zn > 0), fb / disp, 0.0)
    return out, {"model": "kinect"}


def _lidar(z: np.ndarray, m: LidarModel, rng, K, gravity_cam) -> tuple[np.ndarray, dict]:
    if K is None or gravity_cam is None:
        raise ValueError("the lidar model needs K and gravity_cam")
    H, W = z.shape
    G = gravity_frame(gravity_cam)  # columns: level x, down, level forward (camera frame)
    # azimuths that can reach the image: those of the image border rays (+ a margin)
    u = np.concatenate([np.arange(W), np.arange(W), np.zeros(H), np.full(H, W - 1)])
    v = np.concatenate([np.zeros(W), np.full(W, H - 1), np.arange(H), np.arange(H)])
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=1) @ G
    az = np.arctan2(rays[:, 0], rays[:, 2])
    step = math.radians(m.azimuth_step_deg)
    ks = np.arange(math.floor(az.min() / step) - 1, math.ceil(az.max() / step) + 2)
    a = ks * step
    e = np.radians(np.linspace(m.elevation_deg[0], m.elevation_deg[1], m.n_lines))
    ee, aa = np.meshgrid(e, a, indexing="ij")
    dirs_g = np.stack([np.cos(ee) * np.sin(aa), -np.sin(ee), np.cos(ee) * np.cos(aa)], axis=-1).reshape(-1, 3)
    d = dirs_g @ G.T  # camera frame
    front = d[:, 2] > 1e-6
    d = d[front]
    uu = np.floor(K[0, 0] * d[:, 0] / d[:, 2] + K[0, 2] + 0.5).astype(np.int64)
    vv = np.floor(K[1, 1] * d[:, 1] / d[:, 2] + K[1, 2] + 0.5).astype(np.int64)
    inside = (uu >= 0) & (uu < W) & (vv >= 0) & (vv < H)
    uu, vv = uu[inside], vv[inside]
    idx = np.unique(vv * W + uu)
    vv, uu = idx // W, idx % W
    zz = z[vv, uu].astype(np.float64)
    norm = np.sqrt(((uu - K[0, 2]) / K[0, 0]) ** 2 + ((vv - K[1, 2]) / K[1, 1]) ** 2 + 1.0)  # range / z
    keep = (zz > 0) & (zz * norm <= m.max_range_m) & (rng.random(len(zz)) >= m.dropout)
    zz = zz + rng.normal(0.0, m.range_sigma_m, len(zz)) / norm
    out = np.zeros_like(z, dtype=np.float64)
    out[vv[keep], uu[keep]] = np.maximum(zz[keep], 1e-3)
    return out, {"model": "lidar", "returns": int(keep.sum())}


def _stereo(z: np.ndarray, m: StereoModel, rng, K) -> tuple[np.ndarray, dict]:
    f = _focal(m, K)
    fb = f * m.baseline_m
    valid = z > 0
    disp = np.where(valid, fb / np.where(valid, z, 1.0), 0.0)  # sky: disparity 0
    dmax, dmin = _max_filter(disp, m.fatten_px), _min_filter(disp, m.fatten_px)
    band = (dmax - dmin) > np.maximum(m.edge_jump_px, 0.1 * dmax)
    d = np.where(band, dmax, disp)  # the foreground fattens over the background
    if m.blur_px > 0:
        wide = _max_filter(band.astype(np.float64), m.blur_px) > 0
        d = np.where(wide, _box_blur(d, m.blur_px), d)
    err = rng.normal(0.0, m.disparity_sigma_px, z.shape) + m.disparity_bias_px
    if m.correlated_sigma_px > 0:
        err = err + m.correlated_sigma_px * _smooth_field(z.shape, m.correlated_cell_px, rng)
    d = d + err * (d > 0)
    holes = d <= 0.5
    if m.hole_fraction > 0:
        seeds = rng.random(z.shape) < m.hole_fraction / 9.0
        holes |= _max_filter(seeds.astype(np.float64), 1) > 0
    return np.where(holes, 0.0, fb / np.where(holes, 1.0, d)), {"model": "stereo"}


def _mono(z: np.ndarray, m: MonoModel, rng) -> tuple[np.ndarray, dict]:
    valid = z > 0
    if not valid.any():
        return np.zeros_like(z, dtype=np.float64), {"model": "mono", "scale": 1.0}
    logz = np.log(np.where(valid, z, z[valid].max()))  # sky: as far as the farthest surface
    scale = float(rng.uniform(*m.scale_range))
    H, W = z.shape
    fld = _smooth_field(z.shape, max(H, W) / max(1, m.distortion_cells), rng)
    fld = (fld - np.median(fld)) / max(float(fld.std()), 1e-9) * m.distortion
    out = np.exp(_box_blur(logz + fld, m.blur_px) + math.log(scale))
    return out, {"model": "mono", "scale": scale}


def _apply_noise(depth: np.ndarray, noise: NoiseConfig, rng: np.random.Generator, K=None,
                 gravity_cam=None) -> tuple[np.ndarray, dict]:
    """`apply_noise` that also returns the sensor model's name and random draws (mono: scale)."""
    info: dict = {}
    if noise.sensor is not None:
        z = depth.astype(np.float64)
        name = noise.sensor.name
        if name == "kinect":
            z, info = _kinect(z, noise.sensor, rng, K)
        elif name == "lidar":
            z, info = _lidar(z, noise.sensor, rng, K, gravity_cam)
        elif name == "stereo":
            z, info = _stereo(z, noise.sensor, rng, K)
        elif name == "mono":
            z, info = _mono(z, noise.sensor, rng)
        else:
            raise ValueError(f"unknown sensor model {name!r}")
        depth = z.astype(np.float32)
    return _corrupt(depth, noise, rng), info


# ----------------------------------------------------------------------------- dataset files
def scene_annotations(scene: Scene, image_id: int, file_name: str, depth_file: str, ann_id_start: int,
                      include_gravity: bool = True, depth_scale: float = 1000.0,
                      boxes_2d: str | None = None) -> tuple[dict, list[dict]]:
    """Omni3D-style COCO image entry and annotation entries of a scene (DESIGN.md "Inputs").

    One annotation per annotated object with visible pixels: `bbox` is the modal box of its
    visible mask (like KITTI, SUN RGB-D, COCO) or, with `boxes_2d` "amodal" (None: the scene's
    `boxes_2d`), the GT box's projection clipped to the image (like nuScenes); `bbox2D_proj`
    is always the latter, `bbox2D_tight` the former ([x0, y0, x1, y1], Omni3D's names). The 3D
    box is amodal. Category ids index ALL_CATEGORIES.
    """
    from pycocotools import mask as mask_utils

    H, W = scene.depth.shape
    image = {
        "id": image_id,
        "file_name": file_name,
        "width": W,
        "height": H,
        "K": scene.K.tolist(),
        "depth_file": depth_file,
        "depth_scale": depth_scale,
    }
    if include_gravity:
        image["gravity_cam"] = [float(x) for x in scene.gravity_cam]
    if scene.sensor and scene.sensor.get("model"):
        image["depth_sensor"] = scene.sensor["model"]  # kinect | lidar | stereo | mono (-> record extra)
    boxes_2d = boxes_2d or scene.boxes_2d
    if boxes_2d not in BOXES_2D:
        raise ValueError(f"boxes_2d must be one of {BOXES_2D}, got {boxes_2d!r}")
    anns = []
    for k, ob in enumerate(scene.objects):
        if ob.visible_pixels == 0 or not ob.annotated:
            continue
        rle = mask_utils.encode(np.asfortranarray(scene.mask(ob.instance_id).astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")
        omni = ob.box.to_omni3d()
        proj = project_box(ob.box, scene.K, (W, H))
        x0, y0, x1, y1 = ob.bbox_xyxy if boxes_2d == "modal" else proj
        anns.append(
            {
                "id": ann_id_start + k,
                "image_id": image_id,
                "category_id": ALL_CATEGORIES.index(ob.category) + 1,
                "category_name": ob.category,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "bbox2D_proj": list(proj) if proj else None,
                "bbox2D_tight": list(ob.bbox_xyxy),
                "segmentation": rle,
                "area": float(ob.visible_pixels),
                "iscrowd": 0,
                "center_cam": omni["center_cam"],
                "dimensions": omni["dimensions"],
                "R_cam": omni["R_cam"],
                "bbox3D_cam": omni["bbox3D_cam"],
                "visibility": round(ob.visibility, 4),
                "truncation": round(ob.truncation, 4),
                "shape": ob.shape,
            }
        )
    return image, anns


def depth_scale_for(config: SceneConfig | None) -> float:
    """PNG units per metre that hold every depth of `config`'s scenes in 16 bits: millimetres
    (1000, up to 65.535 m) unless an outdoor street's far wall may stand beyond ~59 m (its
    z-depth, seen up to 5 deg off the street axis, stays under 65.5 m below that), then 1/256 m
    (256, KITTI's depth-map unit: up to 256 m in steps of 3.9 mm, under a LiDAR's 2 cm noise)."""
    cfg = config or SceneConfig()
    return 256.0 if cfg.layout == "outdoor" and cfg.street.street_length[1] > 59.0 else 1000.0


def write_dataset(out_dir, n_scenes: int = 4, seed: int = 0, config: SceneConfig | None = None,
                  noise: NoiseConfig | None = None, include_gravity: bool = True) -> Path:
    """Write `n_scenes` scenes as an Omni3D-style RGB-D dataset; returns the annotations path.

    Layout: out_dir/annotations.json, out_dir/images/NNNNNN.jpg (colour, JPEG q95),
    out_dir/images/depth/NNNNNN.png (16-bit depth `scene.depth_noisy`, 0 = missing, in units
    of 1/`depth_scale_for(config)` m: millimetres, at most 65.535 m, except for far streets).
    Paths in the JSON are relative to out_dir/images. Scene i uses seed (seed * 100003 + i).
    The 2D boxes are `config.boxes_2d`'s (modal by default). The category list is CATEGORIES
    for the basic layout, ALL_CATEGORIES for the realistic ones (same ids for shared names).
    """
    from PIL import Image

    out = Path(out_dir)
    (out / "images" / "depth").mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    next_ann = 1
    scale = depth_scale_for(config)
    for i in range(n_scenes):
        scene = generate_scene(seed * 100003 + i, config, noise)
        fn, dfn = f"{i:06d}.jpg", f"depth/{i:06d}.png"
        Image.fromarray(scene.rgb).save(out / "images" / fn, quality=95)
        units = np.clip(np.round(scene.depth_noisy * scale), 0, 65535).astype(np.uint16)
        Image.fromarray(units).save(out / "images" / dfn)
        img, a = scene_annotations(scene, i + 1, fn, dfn, next_ann, include_gravity, depth_scale=scale)
        next_ann += len(scene.objects)
        images.append(img)
        anns.extend(a)
    doc = {
        "info": {"description": "lift3d synthetic RGB-D scenes", "seed": seed,
                 "scene_config": asdict(config or SceneConfig()), "noise": asdict(noise or NoiseConfig())},
        "images": images,
        "annotations": anns,
        "categories": [{"id": i + 1, "name": c} for i, c in
                       enumerate(CATEGORIES if (config or SceneConfig()).layout == "basic" else ALL_CATEGORIES)],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(doc))
    return path
