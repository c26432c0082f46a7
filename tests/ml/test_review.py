"""Objects to check (labseg.ml.review): solidity against a hand-computed case and scikit-image, and which
objects the rule picks on drawn cases whose answer is known."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk, ellipse
from skimage.measure import regionprops

from labseg.ml.review import AREA_RATIO, SOLIDITY, holds_painted, painted_objects, solidity, suspect_merges


def discs(shape, centres, radius, start=1, labels=None):
    labels = np.zeros(shape, np.int32) if labels is None else labels
    for k, (y, x) in enumerate(centres, start=start):
        rr, cc = disk((y, x), radius, shape=shape)
        labels[rr, cc] = k
    return labels


def test_solidity_of_an_l_of_three_pixels_is_three_over_three_and_a_half():
    # pixel squares (0,0), (0,1), (1,0): hull of their corners = the 2x2 square less a half-pixel triangle
    m = np.zeros((4, 4), bool)
    m[0, 0] = m[0, 1] = m[1, 0] = True
    assert solidity(m) == pytest.approx(3 / 3.5)
    assert solidity(np.ones((5, 9), bool)) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solidity_agrees_with_scikit_image(seed):
    # two overlapping ellipses at random: a convex-ish and a notched shape; scikit-image takes the hull of
    # pixel centres (slightly smaller), so the two agree to a few hundredths
    rng = np.random.default_rng(seed)
    m = np.zeros((120, 120), bool)
    for _ in range(2):
        rr, cc = ellipse(rng.uniform(40, 80), rng.uniform(40, 80), rng.uniform(8, 25), rng.uniform(8, 25),
                         shape=m.shape, rotation=rng.uniform(0, np.pi))
        m[rr, cc] = True
    ref = regionprops(m.astype(np.uint8))[0].solidity
    assert solidity(m) == pytest.approx(ref, abs=0.04)
    assert solidity(m) <= ref + 1e-9  # the corner hull holds the centre hull


def test_round_objects_of_one_size_give_nothing_to_check():
    labels = discs((200, 200), [(30, 30), (30, 90), (30, 150), (100, 30), (100, 90), (160, 150)], 12)
    assert suspect_merges(labels) == {"total": 0, "objects": []}


def test_a_chain_of_four_merged_discs_is_the_one_to_check_with_its_box():
    labels = discs((200, 200), [(30, 30), (30, 90), (30, 150), (100, 30), (100, 90)], 12)
    chain = discs((200, 200), [(160, 30), (160, 52), (160, 74), (160, 96)], 12, start=6) > 0
    labels[chain] = 6
    out = suspect_merges(labels)
    assert out["total"] == 1
    (obj,) = out["objects"]
    ys, xs = np.nonzero(labels == 6)
    assert obj["id"] == 6
    assert obj["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert obj["area"] == int(chain.sum())
    assert obj["area_ratio"] == pytest.approx(chain.sum() / (labels == 1).sum(), abs=0.01)
    assert obj["area_ratio"] >= AREA_RATIO and "typical object's area" in obj["reason"]


def test_two_discs_joined_by_a_neck_are_checked_for_their_shape_not_their_size():
    labels = discs((200, 200), [(30, 30), (30, 90), (30, 150), (100, 30), (100, 90)], 12)
    pair = discs((200, 200), [(160, 40), (160, 76)], 12, start=6) > 0
    pair[158:163, 40:76] = True  # a 5 px neck: a dumbbell
    labels[pair] = 6
    (obj,) = suspect_merges(labels)["objects"]
    assert obj["id"] == 6 and obj["area_ratio"] < AREA_RATIO
    assert obj["solidity"] < SOLIDITY and "not convex" in obj["reason"]
    # the same pair with a fat waist (nearly convex) is one object as far as shape tells
    labels[pair] = 0
    fat = discs((200, 200), [(160, 40), (160, 58)], 12, start=6) > 0
    labels[fat] = 6
    assert suspect_merges(labels)["total"] == 0


def test_rods_are_not_merges_but_a_colony_is():
    rng = np.random.default_rng(0)
    labels = np.zeros((300, 300), np.int32)
    for k in range(8):  # single rods: long and convex
        rr, cc = ellipse(30 + 35 * k, 60, 5, 22, shape=labels.shape, rotation=rng.uniform(-0.3, 0.3))
        labels[rr, cc] = k + 1
    assert suspect_merges(labels)["total"] == 0
    colony = np.zeros_like(labels, bool)
    for dy, rot in ((0, 0.0), (9, 0.6), (18, -0.5), (27, 1.2)):  # rods side by side, one object
        rr, cc = ellipse(120 + dy, 200, 5, 22, shape=labels.shape, rotation=rot)
        colony[rr, cc] = True
    labels[colony] = 9
    assert [o["id"] for o in suspect_merges(labels)["objects"]] == [9]


def test_the_painted_radius_bounds_the_typical_object_when_the_merges_are_most_objects():
    # two colonies and one single cell: the median object is a colony; the painted radius (8) says a
    # single object is about a disc of radius 8, so both colonies are to check
    labels = discs((200, 300), [(40, 40)], 8)
    labels[100:160, 20:120] = 2
    labels[100:170, 150:260] = 3
    assert suspect_merges(labels)["total"] == 0  # 3 objects, the median a colony: nothing looks big
    out = suspect_merges(labels, radius=8.0)
    assert [o["id"] for o in out["objects"]] == [3, 2]  # the larger first


def test_each_class_has_its_own_typical_object():
    # class 1: small discs; class 2: discs 3x as wide (9x the area) -> each class is typical of its own kind
    labels = discs((300, 300), [(20, 20), (20, 60), (20, 100), (20, 140), (20, 180)], 6)
    labels = discs((300, 300), [(120, 50), (120, 160), (230, 50)], 18, start=6, labels=labels)
    groups = np.array([0, 1, 1, 1, 1, 1, 2, 2, 2])
    assert suspect_merges(labels, groups=groups)["total"] == 0
    assert suspect_merges(labels)["total"] == 3  # one typical size for all: the large class looks merged


def test_at_most_limit_objects_and_the_total_of_all():
    labels = discs((400, 400), [(20 + 40 * (k % 9), 20 + 40 * (k // 9)) for k in range(27)], 6)
    for k in range(5):
        labels[300:330, 10 + 60 * k:50 + 60 * k] = 100 + k  # 5 blocks of 1200 px: ~10x a disc
    out = suspect_merges(labels, limit=2)
    assert out["total"] == 5 and len(out["objects"]) == 2


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="2-D"):
        suspect_merges(np.zeros((2, 3, 4), np.int32))
    with pytest.raises(ValueError, match="non-negative"):
        suspect_merges(np.array([[0, -1], [1, 1]]))
    assert suspect_merges(np.zeros((5, 5), np.uint16)) == {"total": 0, "objects": []}


def test_painted_objects_are_instances_and_separate_object_strokes():
    classes = np.zeros((20, 30), np.uint8)
    classes[2:5, 2:8] = 2  # a stroke
    classes[10:13, 2:8] = 3  # a stroke of another object class
    classes[2:8, 20:28] = 2  # painted as instance 7
    classes[15:18, 15:25] = 1  # background
    inst = np.zeros(classes.shape, np.int32)
    inst[2:8, 20:28] = 7
    out = painted_objects(classes, inst)
    assert len(np.unique(out[out > 0])) == 3
    assert (out[2:8, 20:28] == 7).all() and (out[15:18, 15:25] == 0).all()
    assert out[3, 3] != out[11, 3] and out[3, 3] > 7
    assert painted_objects(np.ones((4, 4), np.uint8)) is None  # background only


def test_one_colony_holding_three_painted_strokes_is_to_check_though_no_object_is_typical():
    labels = np.zeros((100, 100), np.int32)
    labels[10:90, 10:90] = 1  # the whole colony predicted as one object: no typical object, no radius
    classes = np.zeros(labels.shape, np.uint8)
    for y in (20, 50, 80):
        classes[y:y + 3, 30:60] = 2  # three strokes, each in its own rod
    assert suspect_merges(labels)["total"] == 0
    (obj,) = suspect_merges(labels, painted=painted_objects(classes))["objects"]
    assert obj["id"] == 1 and obj["reason"].startswith("holds 3 separately painted objects")
    # a stroke split in halves over two predicted objects counts for neither
    labels[50:90, 10:90] = 2
    classes[:] = 0
    classes[20:23, 30:60] = 2
    classes[48:52, 30:60] = 2
    assert holds_painted(labels, painted_objects(classes)).tolist() == [0, 1, 0]
    classes[52, 30:60] = 2  # now 3 of its 5 rows lie in object 2
    assert holds_painted(labels, painted_objects(classes)).tolist() == [0, 1, 1]
