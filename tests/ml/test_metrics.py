"""Metrics against sklearn / skimage / brute force, and hand-built warping-error cases."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment
from skimage.metrics import adapted_rand_error as sk_adapted_rand_error
from sklearn.metrics import jaccard_score, rand_score

from labseg.ml.metrics import (
    _LUTS,
    _RING,
    STRUCT4,
    STRUCT8,
    _euler,
    adapted_rand_error,
    f1_at_iou,
    iou,
    iou_per_class,
    pixel_error,
    rand_error,
    score_all,
    warp_simple_points,
    warping_error,
)
from labseg.ml.synthetic import classes_from_instances, make_nuclei

YY, XX = np.mgrid[0:80, 0:100]


def disc(cy, cx, r):
    return (YY - cy) ** 2 + (XX - cx) ** 2 <= r * r


GT = disc(25, 25, 10) | disc(25, 60, 10) | disc(60, 40, 12)


def random_labels(shape, k, seed, huge=False):
    rng = np.random.default_rng(seed)
    lab = ndi.zoom(rng.integers(0, k, (shape[0] // 4 + 1, shape[1] // 4 + 1)), 4, order=0)[: shape[0], : shape[1]]
    return lab.astype(np.uint64) * np.uint64(2**50) + np.uint64(7) * (lab > 0) if huge else lab


# --- pixel / Rand ---------------------------------------------------------------------------
def test_pixel_error_counts_binary_disagreements():
    gt = np.array([[0, 1, 2], [3, 0, 0]])
    pred = np.array([[5, 0, 1], [1, 1, 0]])
    assert pixel_error(pred, gt) == pytest.approx(3 / 6)
    mask = np.array([[True, True, False], [False, False, True]])
    assert pixel_error(pred, gt, mask) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_rand_error_equals_one_minus_sklearn_rand_score(seed):
    gt = random_labels((37, 53), 6, seed)
    pred = random_labels((37, 53), 4 + seed, seed + 100, huge=seed % 2 == 1)
    ref = 1.0 - rand_score(gt.ravel(), pred.ravel().astype(np.int64) if seed % 2 == 0 else pred.ravel())
    assert rand_error(pred, gt) == pytest.approx(ref, abs=1e-12)
    assert rand_error(gt, gt) == 0.0
    mask = random_labels((37, 53), 2, seed + 7) > 0
    ref_m = 1.0 - rand_score(gt[mask], pred[mask])
    assert rand_error(pred, gt, mask) == pytest.approx(ref_m, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_adapted_rand_error_equals_skimage(seed):
    gt = random_labels((40, 44), 5, seed)
    pred = random_labels((40, 44), 3 + seed, seed + 50)
    ref = sk_adapted_rand_error(gt, pred)[0]
    assert adapted_rand_error(pred, gt) == pytest.approx(ref, abs=1e-12)
    _, inst = make_nuclei((96, 96), n=20, seed=seed)
    shifted = np.roll(inst, 2, axis=1)
    assert adapted_rand_error(shifted, inst) == pytest.approx(sk_adapted_rand_error(inst, shifted)[0], abs=1e-12)


# --- IoU / F1 -----------------------------------------------------------------------------------
def test_iou_and_iou_per_class_match_sklearn_jaccard():
    rng = np.random.default_rng(0)
    gt = rng.integers(1, 4, (30, 30))
    pred = np.where(rng.random((30, 30)) < 0.3, rng.integers(1, 4, (30, 30)), gt)
    per = iou_per_class(pred, gt, [1, 2, 3, 7])
    ref = jaccard_score(gt.ravel(), pred.ravel(), labels=[1, 2, 3], average=None)
    assert [per[c] for c in (1, 2, 3)] == pytest.approx(list(ref))
    assert per[7] is None
    assert iou(pred == 2, gt == 2) == pytest.approx(ref[1])
    assert iou(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def brute_f1(pred, gt, thr):
    """Independent reference: IoU of every object pair by masks, Hungarian on IoU > thr."""
    pids = [i for i in np.unique(pred) if i]
    gids = [j for j in np.unique(gt) if j]
    m = np.zeros((len(pids), len(gids)))
    for a, i in enumerate(pids):
        for b, j in enumerate(gids):
            inter = np.sum((pred == i) & (gt == j))
            m[a, b] = inter / np.sum((pred == i) | (gt == j))
    ok = np.where(m > thr, 1.0 + m, 0.0)
    tp = 0
    if ok.size:
        r, c = linear_sum_assignment(ok, maximize=True)
        tp = int(np.sum(ok[r, c] > 0))
    fp, fn = len(pids) - tp, len(gids) - tp
    return (2 * tp / (2 * tp + fp + fn) if pids or gids else 1.0), tp, fp, fn


@pytest.mark.parametrize("thr", [0.5, 0.3, 0.75])
@pytest.mark.parametrize("seed", range(3))
def test_f1_at_iou_matches_brute_force_hungarian(seed, thr):
    _, gt = make_nuclei((96, 96), n=18, seed=seed)
    rng = np.random.default_rng(seed)
    pred = ndi.grey_dilation(np.roll(gt, rng.integers(-3, 4), axis=0), size=rng.integers(1, 6))
    pred = np.where(np.isin(pred, rng.choice(np.unique(pred)[1:], 3)), 0, pred) * 1000 + 17 * (pred > 0)
    pred[5:9, 5:9] = 999_999
    assert f1_at_iou(pred, gt, thr) == pytest.approx(brute_f1(pred, gt, thr))


def test_f1_at_iou_hand_case():
    gt = np.zeros((10, 10), int)
    gt[0:4, 0:4] = 1
    gt[6:10, 6:10] = 2
    pred = np.zeros_like(gt)
    pred[0:4, 0:3] = 5  # IoU 12/16 = 0.75 with gt 1
    pred[6:10, 6:7] = 6  # IoU 4/16 with gt 2: no match
    assert f1_at_iou(pred, gt) == (pytest.approx(0.5), 1, 1, 1)
    assert f1_at_iou(np.zeros_like(gt), np.zeros_like(gt)) == (1.0, 0, 0, 0)


# --- simple points, Euler number, warping -------------------------------------------------
@pytest.mark.parametrize("conn", [4, 8])
def test_simple_point_table_equals_flip_keeping_component_counts(conn):
    """Independent check: a pixel is simple iff flipping it keeps the fg and bg component counts."""
    s_fg, s_bg = (STRUCT4, STRUCT8) if conn == 4 else (STRUCT8, STRUCT4)
    rng = np.random.default_rng(conn)
    for _ in range(120):
        img = np.pad(rng.random((6, 6)) < rng.uniform(0.2, 0.8), 1)
        base = (ndi.label(img, s_fg)[1], ndi.label(~img, s_bg)[1])
        for y, x in itertools.product(range(1, 7), repeat=2):
            code = sum(int(img[y + dy, x + dx]) << k for k, (dy, dx) in enumerate(_RING))
            flipped = img.copy()
            flipped[y, x] ^= True
            same = (ndi.label(flipped, s_fg)[1], ndi.label(~flipped, s_bg)[1]) == base
            assert _LUTS[conn][code] == same


@pytest.mark.parametrize("conn", [4, 8])
def test_bit_quad_euler_number_equals_objects_minus_holes(conn):
    s_fg, s_bg = (STRUCT4, STRUCT8) if conn == 4 else (STRUCT8, STRUCT4)
    rng = np.random.default_rng(10 + conn)
    for _ in range(100):
        img = np.pad(rng.random((12, 15)) < rng.uniform(0.2, 0.8), 1)
        objects = ndi.label(img, s_fg)[1]
        holes = ndi.label(~img, s_bg)[1] - 1
        assert _euler(img, conn) == 4 * (objects - holes)


def test_warped_ground_truth_keeps_its_topology_and_approaches_prediction():
    _, inst = make_nuclei((128, 128), n=30, seed=4)
    gt = inst > 0
    rng = np.random.default_rng(0)
    pred = ndi.gaussian_filter(gt.astype(float) + rng.normal(0, 0.8, gt.shape), 2) > 0.5
    warped = warp_simple_points(gt, pred)
    pw, pg = np.pad(warped, 1), np.pad(gt, 1)  # outside = background, as in the warp
    assert ndi.label(pw, STRUCT4)[1] == ndi.label(pg, STRUCT4)[1]  # same objects
    assert ndi.label(~pw, STRUCT8)[1] == ndi.label(~pg, STRUCT8)[1]  # same holes
    assert np.count_nonzero(warped != pred) < 0.1 * np.count_nonzero(gt != pred)


@pytest.mark.parametrize("dy,dx", [(0, 2), (3, 0), (-2, 1)])
def test_shifted_border_gives_no_topological_error(dy, dx):
    r = warping_error(np.roll(GT, (dy, dx), axis=(0, 1)), GT)
    assert r.mismatch_before > 100
    assert r.topological_errors == 0 and r.error == 0.0 and r.mismatch_after == 0
    grown = warping_error(ndi.binary_dilation(GT, iterations=2), GT)
    assert grown.topological_errors == 0 and grown.error == 0.0


def _only(result, **expected):
    names = ("splits", "mergers", "additions", "removals", "holes")
    got = {n: getattr(result, n) for n in names}
    assert got == {n: expected.get(n, 0) for n in names}
    assert result.error == pytest.approx(result.error_pixels / GT.size) and result.error > 0


def test_split_is_counted():
    pred = GT.copy()
    pred[:, 25] = False  # a one-pixel cut through the first disc
    _only(warping_error(pred, GT), splits=1)


def test_merge_is_counted():
    pred = GT.copy()
    pred[23:28, 30:56] = True  # bridge between the two upper discs
    _only(warping_error(pred, GT), mergers=1)


def test_hole_in_object_is_counted_and_filled_hole_too():
    pred = GT.copy()
    pred[58:62, 38:42] = False
    _only(warping_error(pred, GT), holes=1)
    _only(warping_error(GT, pred), holes=1)  # the prediction fills a true hole


def test_added_and_removed_objects_are_counted():
    _only(warping_error(GT | disc(70, 85, 5), GT), additions=1)
    r = warping_error(GT & ~disc(25, 60, 11), GT)
    _only(r, removals=1)
    both = warping_error((GT & ~disc(25, 60, 11)) | disc(70, 85, 5), GT)
    assert (both.additions, both.removals, both.topological_errors) == (1, 1, 2)


def test_diagonal_cut_splits_only_under_4_connectivity():
    pred = GT.copy()
    d = np.arange(-12, 13)
    pred[25 + d, 25 + d] = False  # diagonal one-pixel line through the first disc
    four = warping_error(pred, GT, fg_connectivity=4)
    assert (four.splits, four.topological_errors) == (1, 1)
    # objects 8-connected: the disc stays one object; its diagonal pixels are 4-isolated holes
    eight = warping_error(pred, GT, fg_connectivity=8)
    assert eight.splits == 0 and eight.holes >= 1


# --- score_all ------------------------------------------------------------------------------------
def test_score_all_dense_matches_individual_metrics_and_is_json_safe():
    _, inst = make_nuclei((96, 96), n=20, seed=1)
    gt_cls = classes_from_instances(inst)
    pred_inst = np.roll(inst, 1, axis=0)
    pred_cls = classes_from_instances(pred_inst)
    s = score_all(pred_cls, pred_inst, gt_cls, inst)
    assert s["skipped"] == {}
    assert s["pixel_error"] == pytest.approx(pixel_error(pred_inst, inst))
    assert s["rand_error"] == pytest.approx(1 - rand_score(inst.ravel(), pred_inst.ravel()))
    assert s["adapted_rand_error"] == pytest.approx(sk_adapted_rand_error(inst, pred_inst)[0])
    assert s["f1_iou50"] == pytest.approx(brute_f1(pred_inst, inst, 0.5)[0])
    assert s["warping"]["topological_errors"] == 0
    assert s["iou_per_class"]["2"] == pytest.approx(iou(pred_inst, inst))
    json.dumps(s, allow_nan=False)


def test_score_all_sparse_ground_truth_skips_dense_metrics_with_reason():
    _, inst = make_nuclei((64, 64), n=10, seed=2)
    gt_cls = classes_from_instances(inst)
    gt_cls[:, 32:] = 0  # half unlabelled
    pred_cls = classes_from_instances(inst)
    pred_cls[:, 40:] = 1  # wrong only where unlabelled: must not count
    s = score_all(pred_cls, None, gt_cls, None)
    assert s["pixel_error"] == 0.0 and s["accuracy"] == 1.0 and s["n_labelled"] == 64 * 32
    for name in ("rand_error", "adapted_rand_error", "warping_error", "f1_iou50"):
        assert name not in s and "sparse" in s["skipped"][name]
    empty = score_all(pred_cls, None, np.zeros_like(gt_cls), None)
    assert "pixel_error" in empty["skipped"]
    json.dumps(s, allow_nan=False)
    json.dumps(empty, allow_nan=False)


def test_score_all_dense_background_only_skips_undefined_adapted_rand():
    gt = np.ones((20, 20), np.uint8)
    pred = gt.copy()
    pred[5:9, 5:9] = 2  # one false object
    s = score_all(pred, None, gt, None)
    assert "adapted_rand_error" in s["skipped"] and "adapted_rand_error" not in s
    assert s["instances"] == {"tp": 0, "fp": 1, "fn": 0} and s["f1_iou50"] == 0.0
    assert s["warping"]["additions"] == 1
    json.dumps(s, allow_nan=False)


def test_metrics_reject_shape_mismatch():
    with pytest.raises(ValueError, match=r"prediction shape .* != ground truth shape"):
        pixel_error(np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(ValueError, match=r"need two 2-D images of one shape"):
        warping_error(np.zeros((3, 3)), np.zeros((4, 3)))


def test_holdout_strip_is_the_right_quarter_of_the_labelled_columns_when_both_sides_keep_labels():
    """Labels in columns 10..49 (40 columns): the hold-out starts at 10 + 0.75 * 40 = 40. Objects (class 2) fill
    rows 10..13 of columns 20..49 (120 px), 40 of them right of 40: a third of the class; no background."""
    import json

    from labseg.ml.metrics import holdout_strip

    classes = np.zeros((20, 60), np.uint8)
    classes[2:5, 10:30] = 1
    classes[10:14, 20:50] = 2
    strip = holdout_strip(classes)
    assert (strip.side, strip.rows, strip.cols) == ("right", slice(None), slice(40, None))
    assert strip.shares == ((1, 0.0), (2, pytest.approx(40 / 120)))
    assert strip.deviation == pytest.approx(0.25)  # the background's 0 is a quarter from a quarter: still right
    assert strip.mask(classes.shape).sum() == 20 * 20
    assert holdout_strip(classes, fraction=0.5).cols == slice(30, None)
    assert json.loads(json.dumps(strip.describe())) == {"side": "right", "rows": [None, None], "columns": [40, None],
                                                        "class_shares": {"1": 0.0, "2": 0.3333}}
    one_class = classes.copy()
    one_class[2:5, 10:30] = 0  # training would see objects only, at every side
    assert holdout_strip(one_class) is None
    assert holdout_strip(np.zeros_like(classes)) is None


def test_holdout_strip_moves_off_the_right_when_it_would_take_most_of_a_class():
    """Background lines in columns 50..57 (8 columns x 20 rows = 160 px) and a background patch of 40 px in
    columns 10..13: labelled columns 10..57, so the right quarter (columns 46.., 10 + int(48 * 0.75)) would hold
    160 / 200 of the background (0.55 from a quarter). By hand, the other sides, (background, object) shares:
    left (columns ..21, as wide): the patch (40 / 200) and the object's columns 20..21 (2 x 6 of 60): (0.2, 0.2),
    0.05 from a quarter; bottom (rows 15..): 5 rows of each line (40 / 200) and none of the object (rows 2..7):
    (0.2, 0), 0.25; top (rows ..4): 5 rows of the patch and of the lines (60 / 200) and the object's rows 2..4
    (30 / 60): (0.3, 0.5), 0.25. So the left strip."""
    import json

    from labseg.ml.metrics import holdout_strip

    classes = np.zeros((20, 60), np.uint8)
    classes[0:10, 10:14] = 1  # 40 px
    classes[2:8, 20:30] = 2  # 60 px
    classes[:, 50:58] = 1  # 160 px
    strip = holdout_strip(classes)
    assert (strip.side, strip.rows, strip.cols) == ("left", slice(None), slice(None, 22))
    assert strip.shares == ((1, pytest.approx(0.2)), (2, pytest.approx(0.2)))
    assert strip.deviation == pytest.approx(0.05)
    assert json.dumps(strip.describe())  # plain ints, not numpy's (stored in a run's provenance)
    classes[2:8, 20:22] = 0  # the object leaves the left strip: (0.2, 0) there, 0.25, a tie with bottom and top
    assert holdout_strip(classes).side == "left"  # the first in the order right, left, bottom, top
    # one labelled column: no column strip keeps labels on both sides; the bottom rows do (hand: rows 0..7
    # labelled, the bottom quarter starts at int(8 * 0.75) = 6 and holds 2 of the 3 object pixels; the top
    # quarter, rows ..1, 2 of the 3 background pixels: a tie)
    column = np.zeros_like(classes)
    column[0:3, 10], column[5:8, 10] = 1, 2
    strip = holdout_strip(column)
    assert (strip.side, strip.rows, strip.shares) == ("bottom", slice(6, None), ((1, 0.0), (2, pytest.approx(2 / 3))))
