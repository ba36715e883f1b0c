"""Shared by the kernel tests that record what `lift_image` hands a kernel on synthetic scenes."""
from __future__ import annotations

from lifting.lift import lift_image
from lifting.masks import encode_mask
from lifting.records import ImageRecord, Object2D


def lift_scene(sc, seed: int, *, masks: bool, dataset_gravity: bool = True, min_visible: int = 1,
               depth_source: str = "sensor") -> dict:
    """Lift synthetic scene `sc` (lifting.synthetic.Scene) through `lift_image` as a dataset
    would give it: its objects with at least `min_visible` visible pixels, by 2D box alone or
    with their masks (`masks`), with the scene's gravity or without (`dataset_gravity`: without,
    the floor search estimates it)."""
    objs = [Object2D(object_id=f"s{seed}-{ob.instance_id}", category=ob.category, bbox_xyxy=list(ob.bbox_xyxy),
                     segmentation=encode_mask(sc.mask(ob.instance_id)) if masks else None)
            for ob in sc.objects if ob.visible_pixels >= min_visible]
    h, w = sc.depth.shape
    rec = ImageRecord(key=f"s{seed}", source="synthetic", image_id=seed, image_path="", width=w, height=h,
                      K=sc.K.tolist(), gravity_cam=sc.gravity_cam.tolist() if dataset_gravity else None, objects=objs)
    return lift_image(rec, sc.depth_noisy, sc.K, K_source="dataset", depth_source=depth_source)
