"""All thresholds of the lifting core in one place, with the reason codes they produce.

`None` switches a filter off (datatrove style). Lengths in metres, angles in degrees.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

#: Stable reason codes for rejected objects (snake_case; the filter that emits each).
REASONS = {
    "crowd": "crowd annotation (a group, not one object)",
    "bbox_outside_image": "the 2D box has no area inside the image",
    "mask_empty": "the mask has no pixel inside the image",
    "mask_invalid": "the mask could not be decoded",
    "depth_invalid": "too few mask pixels have valid depth",
    "depth_out_of_range": "the object's depth is measured but outside [min_depth_m, max_depth_m]",
    "too_few_points": "fewer than min_points points survive cleaning",
    "no_foreground_cluster": "box-only segmentation found no object cluster in the box",
    "implausible_size": "a box dimension is outside [min_size_m, max_size_m]",
    "size_vs_prior": "the box is far smaller or larger than the category allows",
    "degenerate_aspect": "largest / smallest dimension exceeds max_aspect",
    "truncated": "the object is cut by the image border beyond max_truncation",
    "low_projected_iou": "the projected 3D box disagrees with the source 2D box",
}


@dataclass(frozen=True)
class LiftConfig:
    # --- depth validity
    min_depth_m: float = 0.1
    max_depth_m: float = 100.0
    #: budget: no point may lie farther than this from the camera along any axis (the largest
    #: valid depth times the steepest ray of K); checked before any per-object allocation,
    #: whose metric grids grow with the extent (`scene_extent_over_budget`)
    max_scene_extent_m: float = 5000.0
    # --- pixels (organised point cloud)
    depth_edge_rel: float = 0.04  # neighbour jump > rel * z marks a depth discontinuity (flying pixels)
    erode_frac: float = 0.01  # erosion radius = erode_frac * sqrt(mask area) pixels ...
    erode_max_px: int = 2  # ... at most this ...
    erode_keep_frac: float = 0.4  # ... and reduced while erosion would keep less than this fraction
    component_merge_rel: float = 0.08  # other mask components within this relative depth join the main one
    smooth_px: int = 5  # masked box filter of the object's depth (0 or 1: off) ...
    smooth_min_noise: float = 0.002  # ... applied when the object's relative depth noise exceeds this
    max_points: int = 3000  # deterministic stride subsample before the 3D steps
    max_crop_pixels: int = 16000  # larger object crops are strided to about this many pixels
    # --- 3D cleaning
    voxel_rel: float = 0.008  # voxel edge = voxel_rel * median depth ...
    voxel_min_m: float = 0.004  # ... at least this
    sor_cell_voxels: float = 3.0  # statistical outlier removal: neighbourhood cube edge in voxels ...
    sor_std: float | None = 3.0  # ... and the std-ratio of neighbour counts below which a point is an outlier
    cluster_rel: float = 0.025  # main-cluster radius = max(cluster_min_m, cluster_rel * z)
    cluster_min_m: float = 0.03
    # --- gravity and floor
    floor_ransac_iters: int = 256
    floor_inlier_m: float = 0.03  # + floor_inlier_rel * z
    floor_inlier_rel: float = 0.01
    ground_bands_m: tuple = (0, 5, 10, 15, 20, 27, 35, 45, 60, 80, 120)  # horizontal-distance bands of the ground profile (lifting.lift.gravity.ground_profile); () = the plane only
    ground_min_points: int = 8  # points near the ground a band needs for its height to count
    floor_max_tilt_deg: float = 35.0  # floor normal within this of the upright default
    floor_tilt_scale_deg: float = 20.0  # RANSAC prefers planes nearer upright: score x exp(-(tilt / this)^2 / 2)
    floor_min_support: float = 0.04  # inlier fraction of the valid pixels to trust a floor
    floor_snap_m: float = 0.3  # box bottom within this above the floor snaps to it
    # --- fitting
    height_from_box: bool = True  # the 2D box's metric height completes what depth missed (fit_box)
    depth_prior_fusion: bool = True  # an object's depth fused with its 2D box height under the height prior
    fuse_sigma_dense: tuple[float, float] = (0.01, 0.003)  # relative depth error a + b * z of a depth camera
    fuse_sigma_stereo: tuple[float, float] = (0.01, 0.012)  # ... of stereo depth (sensor:stereo; KITTI: ~1.2 px bias + noise)
    fuse_sigma_model: tuple[float, float] = (0.08, 0.002)  # ... of a monocular depth model
    model_scale_sigma: float | None = 0.3  # log-spread of a monocular model's per-image scale error; the scale recovered from the objects' sizes (`lifting.lift.core.depth_scale_from_sizes`) is shrunk towards 1 by it; None: no recovery
    model_scale_min_objects: int = 2  # objects of known size an image needs for its depth scale to be recovered
    model_scale_min_height_m: float = 0.5  # ... and only categories typically at least this tall count
    fuse_sigma_sparse: tuple[float, float] = (0.01, 0.0005)  # ... of LiDAR
    trim_pct: float = 0.5  # percentile trimming of extents
    round_residual: float = 0.03  # circle-fit RMS / radius of the front outline below which it is round
    complete_with_priors: bool = True
    prior_fallback: bool = True  # an object depth barely sees gets its prior size where its 2D box says (core._prior_box)
    refit_below_proj_iou: float = 0.5  # ... and so does a fit projecting below this IoU, when that box agrees better
    refit_min_gain: float = 0.1  # ... by this much more projected IoU
    align_to_box: bool = True  # sparse/noisy depth, object seen whole: turn/slide its box to fit its 2D box
    align_yaw_deg: float = 30.0  # ... within this of the fitted yaw
    align_min_gain: float = 0.05  # ... when the projected IoU improves by more than this
    floor_contact_sigma: tuple[float, float] = (0.03, 0.006)  # relative error a + b * z / camera height of a distance from the floor contact (real KITTI + nuScenes GT, bias included: 0.06 to 15 m, 0.12 at z = 23 x camera height, 0.23 at 37 x)
    prior_scale_clip: tuple[float, float] = (0.6, 1.6)
    smear_cap_typical: float | None = 1.0  # stereo / model depth: extent along the view beyond this x the typical size is smear
    prior_front_bias: float = 0.3  # log-units favouring "the long side faces the camera"
    # --- box-only segmentation
    boxseg_method: str = "frustum"  # frustum (points, dense or sparse depth) | pixels (8-connected pixel components)
    frustum_max_points: int = 1500  # frustum pixels are strided (dense) or thinned (sparse) to about this many
    frustum_min_points: int = 5  # a cluster needs at least this many points
    frustum_radius_spacings: float = 2.5  # clustering radius in typical point spacings (angular)
    frustum_depth_rel: float = 0.05  # ... and a relative depth jump of this much is one radius
    frustum_floor_m: float = 0.06  # frustum points less than this (+ frustum_floor_rel * z) above the floor are floor
    frustum_floor_rel: float = 0.004
    claim_returns: bool = True  # sparse depth: a prior box skips the returns inside objects already placed (nearest first)
    returns_ground_beyond_m: float | None = 40.0  # sparse depth: returns this far are never taken for road (frustum.off_floor); None = always by height
    sparse_valid_frac: float = 0.3  # depth with fewer valid pixels than this is sparse (LiDAR)
    min_points_sparse: int | None = 8  # min_points for sparse depth (a far car has tens of returns)
    boxseg_min_component_frac: float = 0.01  # of the 2D box area (pixels method) / of the frustum's points (frustum)
    boxseg_near_score_frac: float = 0.6  # nearest among components scoring >= frac * best
    # --- filters (None disables)
    reject_crowd: bool = True
    min_valid_depth_frac: float | None = 0.2
    min_points: int | None = 30
    min_size_m: float | None = 0.02
    max_size_m: float | None = 50.0
    prior_ratio: float | None = 4.0  # reject when a dimension is beyond [min / r, max * r] of the prior
    max_aspect: float | None = 30.0
    max_truncation: float | None = 0.9  # real GT: KITTI and nuScenes keep objects cut to 15% by the border
    min_proj_iou: float | None = 0.3  # real GT: modal 2D vs amodal 3D boxes agree to only ~0.3-0.5 for occluded objects

    @classmethod
    def from_dict(cls, d: dict | None) -> "LiftConfig":
        """Build from a (YAML/JSON) mapping; unknown keys raise ValueError naming them."""
        d = dict(d or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown lifting option(s): {', '.join(unknown)}")
        for k in ("prior_scale_clip", "floor_contact_sigma", "ground_bands_m", "fuse_sigma_dense", "fuse_sigma_stereo", "fuse_sigma_model", "fuse_sigma_sparse"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)
