"""Property tests of the QA predicates: swaps flip, viewpoint changes flip left/right and
front/behind but keep above/below, and nothing within a margin is asked."""
from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from lifting.qa import Margins, QAConfig, generate_qa
from lifting.qa.families import _ego
from lifting.qa.scene import AXES, CAMERA_VIEW, OPPOSITE, OPPOSITE_VIEW, Scene
from test_qa_answers import Rec, check_question
from test_qa_scenes import gravity_from_tilt, make_object, make_record, random_record

coord = st.floats(-4, 4, allow_nan=False)
size = st.floats(0.05, 2.0, allow_nan=False)


def _scene(pa, pb, da, db, g, pc=None):
    objs = [make_object("a", "cup", pa, da, 0.2, g), make_object("b", "lamp", pb, db, -0.4, g)]
    if pc is not None:
        objs.append(make_object("c", "book", pc, [0.2, 0.2, 0.2], 0.0, g))
    rec = make_record("prop", objs, g)
    s = Scene(rec, QAConfig(), random.Random(0))
    return s, s.by_id["a"], s.by_id["b"]


@settings(max_examples=150, deadline=None)
@given(st.tuples(coord, coord, st.floats(1, 8)), st.tuples(coord, coord, st.floats(1, 8)),
       st.tuples(size, size, size), st.tuples(size, size, size),
       st.floats(-25, 25), st.floats(-10, 10))
def test_swap_flips_and_viewpoint_change_flips_horizontal_and_depth(pa, pb, da, db, pitch, roll):
    s, a, b = _scene(pa, pb, da, db, gravity_from_tilt(pitch, roll))
    for axis in AXES:
        for view in (CAMERA_VIEW, OPPOSITE_VIEW):
            d_ab, scale_ab, kind = s.axis_diff(axis, a, b, view)
            d_ba, scale_ba, _ = s.axis_diff(axis, b, a, view)
            assert abs(d_ab + d_ba) < 1e-9 and scale_ab == scale_ba  # swap flips, same margin test
            assert s.is_separated(d_ab, scale_ab, kind) == s.is_separated(d_ba, scale_ba, kind)
        cam = s.axis_diff(axis, a, b, CAMERA_VIEW)[0]
        opp = s.axis_diff(axis, a, b, OPPOSITE_VIEW)[0]
        if axis in ("horizontal", "depth"):
            assert abs(cam + opp) < 1e-9  # left<->right, front<->behind
        else:
            assert cam == opp  # above/below and sizes do not depend on the viewpoint
    for pos, neg, _ in AXES.values():
        assert OPPOSITE[pos] == neg and OPPOSITE[neg] == pos


@settings(max_examples=150, deadline=None)
@given(st.tuples(coord, st.floats(-1, 1), st.floats(1, 8)), st.tuples(coord, st.floats(-1, 1), st.floats(1, 8)),
       st.tuples(coord, st.floats(-1, 1), st.floats(1, 8)))
def test_facing_the_other_object_flips_the_side(pa, pb, pc):
    s, a, b = _scene(pa, pb, [0.3] * 3, [0.3] * 3, [0.0, 1.0, 0.0], pc)
    c = s.by_id["c"]
    v1, n1, right1, _ = _ego(a, b, c)
    v2, n2, right2, _ = _ego(a, c, b)
    if n1 > 1e-6 and n2 > 1e-6 and abs(right1) > 1e-6:
        assert (right1 > 0) != (right2 > 0)


def test_generated_viewpoint_questions_flip_against_the_camera_view():
    n = 0
    for seed in range(60):
        rec = random_record(seed)
        s = generate_qa(rec, QAConfig(families={"viewpoint_opposite": 1.0}, max_per_family=4))
        scene = Scene(rec, QAConfig(), random.Random(0))
        for q in (s["questions"] if s else []):
            a, b = (scene.by_id[i] for i in q["object_ids"])
            axis = q["params"]["axis"]
            opp = scene.axis_diff(axis, a, b, OPPOSITE_VIEW)[0]
            cam = scene.axis_diff(axis, a, b, CAMERA_VIEW)[0]
            assert (opp > 0) != (cam > 0) if axis != "vertical" else (opp > 0) == (cam > 0)
            n += 1
    assert n > 100


def test_nothing_within_the_margin_is_asked():
    g = [0.0, 1.0, 0.0]
    # a and b differ by less than every margin on every axis and in size: no relation between them
    objs = [make_object("a", "cup", [0.0, 1.0, 3.0], [0.30, 0.30, 0.30], 0.0, g),
            make_object("b", "lamp", [0.10, 0.95, 3.08], [0.32, 0.31, 0.30], 0.0, g),
            make_object("c", "sofa", [1.5, 0.6, 5.0], [2.0, 0.8, 0.9], 0.0, g),
            make_object("d", "plant", [-1.5, 0.8, 2.0], [0.4, 1.2, 0.4], 0.0, g)]
    rec = make_record("tight", objs)
    fams = {"relation_position": 1.0, "relation_size": 1.0, "viewpoint_opposite": 1.0}
    pairs = 0
    for seed in range(60):
        s = generate_qa(rec, QAConfig(seed=seed, families=fams, max_per_family=6, max_questions=18))
        for q in s["questions"]:
            assert set(q["object_ids"]) != {"a", "b"}
            check_question(Rec(rec), q)
            pairs += 1
    assert pairs > 100


def test_larger_margins_are_respected_everywhere():
    big = Margins(position_m=0.6, position_rel=0.15, size_m=0.2, volume_m3=0.05, size_rel=0.3,
                  distance_m=0.5, distance_rel=0.2, clock_deg=10.0)
    cfg = QAConfig(margins=big, max_per_family=3, max_questions=14)
    n = 0
    for seed in range(50):
        rec = random_record(1000 + seed)
        s = generate_qa(rec, cfg)
        for q in s["questions"]:
            assert q["params"]["margins"]["position_m"] == 0.6
            check_question(Rec(rec), q)  # the checker applies the margins carried in params
            n += 1
    assert n > 300
