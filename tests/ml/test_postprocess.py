"""Instances from probabilities: touching nuclei separated, tiny objects removed, holes filled."""
import numpy as np
import pytest
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

from labseg.ml.io import normalize
from labseg.ml.postprocess import instances_from_probs, object_radius, split_instances
from labseg.ml.synthetic import make_nuclei


def reference_f1(pred, gt, threshold=0.5):
    """Naive one-to-one matching: IoU of every pair, Hungarian assignment, count IoU > threshold."""
    p_ids, g_ids = [i for i in np.unique(pred) if i], [i for i in np.unique(gt) if i]
    iou = np.zeros((len(g_ids), len(p_ids)))
    for a, g in enumerate(g_ids):
        for b, p in enumerate(p_ids):
            inter = np.sum((gt == g) & (pred == p))
            if inter:
                iou[a, b] = inter / np.sum((gt == g) | (pred == p))
    rows, cols = linear_sum_assignment(-iou)
    tp = int(np.sum(iou[rows, cols] > threshold))
    return 2 * tp / max(len(g_ids) + len(p_ids), 1)


def touching_pairs(seed=0):
    """Six pairs of touching discs (centres 1.5-1.8 radii apart) with a bright-centre intensity profile."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((160, 240), np.int32)
    image = np.zeros(gt.shape, np.float32)
    best = np.full(gt.shape, np.inf)
    yy, xx = np.mgrid[: gt.shape[0], : gt.shape[1]]
    k = 0
    for row in range(2):
        for col in range(3):
            r = rng.uniform(9, 12)
            cy, cx = 40 + 80 * row, 40 + 80 * col
            ang = rng.uniform(0, np.pi)
            d = rng.uniform(1.5, 1.8) * r
            for sign in (-1, 1):
                k += 1
                y, x = cy + sign * d / 2 * np.sin(ang), cx + sign * d / 2 * np.cos(ang)
                rr = np.hypot(yy - y, xx - x) / r
                take = (rr < 1) & (rr < best)
                gt[take], best[take] = k, rr[take]
                image[take] = 1 - 0.35 * rr[take] ** 2
    return gt, image


@pytest.mark.parametrize("use_image", [False, True])
def test_touching_pairs_are_separated(use_image):
    gt, image = touching_pairs()
    probs = ndi.gaussian_filter((gt > 0).astype(np.float32), 1.0)
    pred = instances_from_probs(np.stack([1 - probs, probs]), image=image if use_image else None)
    assert pred.dtype == np.int32
    assert ndi.label(gt > 0)[1] == 6 and pred.max() == 12  # six blobs, twelve nuclei
    for k in range(1, 13):
        values, counts = np.unique(pred[gt == k], return_counts=True)
        assert values[np.argmax(counts)] > 0
    majority = [np.bincount(pred[gt == k]).argmax() for k in range(1, 13)]
    assert len(set(majority)) == 12  # every nucleus has its own predicted object
    assert reference_f1(pred, gt) == 1.0


def test_synthetic_clusters_with_image_beat_connected_components():
    scores, baseline = [], []
    for seed in (20, 21):
        raw, gt = make_nuclei((256, 256), seed=seed)
        probs = ndi.gaussian_filter((gt > 0).astype(np.float32), 1.5)
        # a radius given: the grey values always take part (without one, only in merged colonies)
        pred = instances_from_probs(probs, image=normalize(raw), radius=object_radius(foreground=probs > 0.5))
        scores.append(reference_f1(pred, gt))
        baseline.append(reference_f1(ndi.label(probs > 0.5)[0], gt))
    assert np.mean(scores) > 0.6
    assert np.mean(scores) > np.mean(baseline) + 0.2


def test_tiny_objects_removed_and_holes_filled():
    mask = np.zeros((60, 60), bool)
    yy, xx = np.mgrid[:60, :60]
    ring = (np.hypot(yy - 20, xx - 20) < 10) & (np.hypot(yy - 20, xx - 20) >= 4)
    mask |= ring
    mask[50:53, 50:53] = True  # 9 px: removed at min_size 20
    labels = split_instances(mask, min_size=20)
    assert labels.max() == 1
    assert np.array_equal(labels > 0, ndi.binary_fill_holes(ring))
    kept = split_instances(mask, min_size=5, fill_holes=False)
    assert kept[51, 51] > 0 and not kept[20, 20]  # small square kept, hole left open


def test_empty_and_bad_inputs():
    assert instances_from_probs(np.zeros((2, 8, 9), np.float32)).shape == (8, 9)
    assert instances_from_probs(np.zeros((8, 9), np.float32)).max() == 0
    with pytest.raises(ValueError, match="fg_class 2 out of range"):
        instances_from_probs(np.zeros((2, 8, 9)), fg_class=2)
    with pytest.raises(ValueError, match="differ in shape"):
        instances_from_probs(np.ones((8, 9)), image=np.ones((8, 8)), min_size=1)


def three_class_probs(seed=0):
    """Softmax-like (3, H, W): touching pairs of class 1 (nucleus) and of class 2 (mitosis), and one nucleus
    touching one mitosis; the true instances and each one's class."""
    gt, _ = touching_pairs(seed)
    cls_of = np.zeros(gt.max() + 1, np.int32)
    cls_of[1:] = [1, 1, 2, 2, 1, 2, 1, 1, 2, 2, 1, 2]  # pairs 1, 4: one class; pairs 3, 6 mixed
    classes = cls_of[gt]
    probs = np.full((3, *gt.shape), 0.05, np.float32)
    for k in range(3):
        probs[k][classes == k] = 0.9
    return probs / probs.sum(0), gt, cls_of


def test_instances_by_class_finds_every_class_with_its_class():
    from labseg.ml.postprocess import instances_by_class

    probs, gt, cls_of = three_class_probs()
    labels, object_class = instances_by_class(probs, radius=10.0)
    assert reference_f1(labels, gt) > 0.95  # every object of both classes, touching ones separated
    assert len(object_class) == labels.max() + 1 and object_class[0] == 0
    assert sorted(np.unique(labels))[1:] == list(range(1, labels.max() + 1))  # ids unique, 1..N
    for g in range(1, gt.max() + 1):  # each true object's best match carries its class
        ids, counts = np.unique(labels[gt == g], return_counts=True)
        assert object_class[ids[np.argmax(counts)]] == cls_of[g]
    assert set(object_class[1:]) == {1, 2}


def test_instances_by_class_with_two_channels_equals_instances_from_probs():
    from labseg.ml.postprocess import instances_by_class

    gt, image = touching_pairs(1)
    fg = ndi.gaussian_filter((gt > 0).astype(np.float32), 2)
    probs = np.stack([1 - fg, fg])
    labels, object_class = instances_by_class(probs)
    np.testing.assert_array_equal(labels, instances_from_probs(probs))
    assert (object_class[1:] == 1).all()


def test_instances_by_class_per_component_is_the_same_partition():
    from labseg.ml.postprocess import instances_by_class

    probs, _, _ = three_class_probs(2)
    whole, whole_class = instances_by_class(probs)
    parts, parts_class = instances_by_class(probs, by_component=True)
    # the same objects (a bijection between ids, pixel for pixel) with the same classes
    pairs = np.unique(np.stack([whole.ravel(), parts.ravel()]), axis=1)
    assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]
    for a, b in pairs.T:
        assert whole_class[a] == parts_class[b]


# --- how touching objects are separated, chosen from what was painted ------------------------------
def _neurites():
    """A 60x90 field cut into six irregular regions by 2-px membranes; regions as instance ids 1..6."""
    ids = np.zeros((60, 90), np.int32)
    ids[:, :30], ids[:, 30:60], ids[:, 60:] = 1, 2, 3
    ids[30:, :] += 3
    ids[18:30, 8:20] = 4  # a bay: region 4 reaches into region 1 (non-convex shapes)
    membranes = np.zeros(ids.shape, bool)
    for a in range(ids.shape[0]):
        for b in range(ids.shape[1] - 1):
            if ids[a, b] != ids[a, b + 1]:
                membranes[a, b:b + 2] = True
    for a in range(ids.shape[0] - 1):
        membranes[a:a + 2, ids[a] != ids[a + 1]] = True
    return ids, membranes


def test_painted_split_says_boundaries_for_thin_lines_between_objects_and_shape_otherwise():
    from labseg.ml.postprocess import painted_split
    from labseg.ml.synthetic import classes_from_instances, scribbles

    ids, membranes = _neurites()
    lines = np.zeros(ids.shape, np.uint8)
    lines[membranes] = 1  # membranes painted as background, nothing else
    lines[5:10, 5:15] = 2  # and a stroke inside one neurite
    assert painted_split(lines) == "boundaries"
    # dense labels of touching objects: the lines touch objects on both sides; the instances say so
    dense = np.where(membranes, 1, 2).astype(np.uint8)
    inst = np.where(membranes, 0, ids)
    assert painted_split(dense, inst) == "boundaries"
    assert painted_split(dense) == "shape"  # without instances every line is an outline: too few count
    # thick background strokes (nuclei scribbles), or objects with only their outline painted: shape
    _, nuclei = make_nuclei((128, 128), n=10, seed=2)
    assert painted_split(scribbles(nuclei, 12, radius=5, seed=2)) == "shape"
    yy, xx = np.mgrid[0:128, 0:128]
    apart = np.zeros((128, 128), np.int32)
    for k, (cy, cx) in enumerate([(20, 20), (20, 70), (70, 30), (80, 90), (110, 50)], start=1):
        apart[(yy - cy) ** 2 + (xx - cx) ** 2 <= 100] = k
    outlined = classes_from_instances(apart)
    outlined[(outlined == 1) & ~ndi.binary_dilation(apart > 0, iterations=2)] = 0
    assert painted_split(outlined, apart) == "shape"
    # objects painted whole with nothing but lines between them say the lines are what parts them
    outlined = classes_from_instances(nuclei)
    outlined[(outlined == 1) & ~ndi.binary_dilation(nuclei > 0, iterations=2)] = 0
    assert painted_split(outlined, nuclei) == "boundaries"
    assert painted_split(np.zeros((20, 20), np.uint8)) == "shape"
    # several images count together: a thin-line image outweighed by a thick-stroke one
    thick = np.zeros((120, 120), np.uint8)
    thick[10:110, 10:110] = 1
    assert painted_split([lines, thick]) == "shape" and painted_split([lines, lines]) == "boundaries"


def test_boundaries_split_is_the_connected_components_of_the_filled_mask():
    from skimage.measure import label as reference_label

    from labseg.ml.postprocess import components, instances_by_class, instances_from_probs

    ids, membranes = _neurites()
    fg = np.where(membranes, 0.1, 0.9).astype(np.float32)
    fg[40:44, 70:74] = 0.2  # a hole inside region 6: filled
    fg[2:4, 2:4] = 0.9
    got = instances_from_probs(fg, split="boundaries", min_size=10)
    ref = reference_label(ndi.binary_fill_holes(fg > 0.5), connectivity=1)
    assert got.max() == ref.max() == 6
    # the same partition (ids may differ): every reference object is exactly one of ours
    for k in range(1, 7):
        assert len(np.unique(got[ref == k])) == 1 and (got[ref == k] > 0).all()
    # the bay of region 4 stays one object with its region (a shape split cuts such necks)
    assert len(np.unique(got[(ids == 4) & ~membranes])) == 1
    # the 2-px membranes are filled but for a 1-px line between objects: fewer background pixels than before
    plain = components(fg > 0.5, min_size=10)
    assert np.array_equal(got[plain > 0] > 0, np.ones((plain > 0).sum(), bool))
    assert 0 < (got == 0).sum() < 0.6 * (plain == 0).sum()
    # two channels through instances_by_class: the same objects, filled the same way
    probs = np.stack([1 - fg, fg])
    by_class, object_class = instances_by_class(probs, split="boundaries")
    assert by_class.max() == 6 and list(object_class) == [0] + [1] * 6
    assert np.array_equal(by_class > 0, got > 0)
    with pytest.raises(ValueError, match="split must be one of"):
        instances_from_probs(fg, split="watershed")


def test_fill_boundaries_grows_objects_over_a_thin_membrane_to_its_ridge_and_leaves_thick_background():
    from labseg.ml.postprocess import fill_boundaries

    labels = np.zeros((40, 80), np.int32)
    labels[:, :30], labels[:, 35:50] = 1, 2  # a 5-px membrane (columns 30-34), then 30 px of open background
    background = np.where(labels > 0, 0.05, 0.6).astype(np.float32)
    background[:, 33] = 0.9  # the membrane's most certain line
    background[:, 50:] = 0.95
    # by hand: object 1 floods columns 30-32, object 2 column 34, they meet on column 33, which stays a line;
    # the open region (it holds a disk of radius 8) stays background, rim included
    want = np.zeros_like(labels)
    want[:, :33], want[:, 34:50] = 1, 2
    assert np.array_equal(fill_boundaries(labels, background), want)
    # without the thick-region rule the open background would go to object 2 as well
    assert (fill_boundaries(labels, background, thick_px=0)[:, 50:] == 2).all()
    # nothing to fill, or no object: the labels unchanged
    assert np.array_equal(fill_boundaries(np.zeros((5, 5), np.int32), np.ones((5, 5))), np.zeros((5, 5)))
    with pytest.raises(ValueError, match="differ in shape"):
        fill_boundaries(labels, background[:, :10])


def test_a_recorded_split_is_read_back_and_anything_else_means_shape():
    from labseg.ml.postprocess import recorded_split

    assert recorded_split("boundaries") == "boundaries" and recorded_split("shape") == "shape"
    assert recorded_split(None) == "shape" and recorded_split("watershed") == "shape" and recorded_split(3) == "shape"


def rods_side_by_side():
    """Six dark rods (8 px wide, 40 long) lying side by side in pairs with no background between them, a
    one-pixel bright seam where two meet (phase contrast's halo), on a mid-grey background: (gt, image)."""
    gt = np.zeros((64, 120), np.int32)
    image = np.full(gt.shape, 0.6, np.float32)
    k = 0
    for x0 in (8, 48, 88):
        for dx in (0, 8):
            k += 1
            gt[12:52, x0 + dx:x0 + dx + 8] = k
    image[gt > 0] = 0.1
    for x0 in (8, 48, 88):
        image[12:52, x0 + 7:x0 + 9] = 0.9  # the bright seam between the two rods of a pair
    return gt, image


def test_the_projected_intensity_splits_dark_rods_that_shape_alone_keeps_merged():
    gt, image = rods_side_by_side()
    fg = (gt > 0).astype(np.float32)  # a perfect foreground: each pair is one 16x40 block
    plain = instances_from_probs(fg, radius=4.0)
    assert reference_f1(plain, gt) == 0.0  # by shape a 16-px block is one object
    # the landscape is the image projected so objects are bright (dark rods: the image negated)
    split = instances_from_probs(fg, radius=4.0, image=-image)
    assert reference_f1(split, gt) == 1.0
    # the polarity matters: the raw image (rods dark, seam bright) makes the seam the seed, not the rods
    assert reference_f1(instances_from_probs(fg, radius=4.0, image=image), gt) < 1.0


def test_instances_by_class_adds_the_intensity_landscape_whole_and_per_component():
    from labseg.ml.postprocess import instances_by_class

    gt, image = rods_side_by_side()
    fg = (gt > 0).astype(np.float32)
    probs = np.stack([1 - fg, fg])
    whole, _ = instances_by_class(probs, radius=4.0, image=-image)
    assert np.array_equal(whole, instances_from_probs(fg, radius=4.0, image=-image))
    boxed, _ = instances_by_class(probs, radius=4.0, image=-image, by_component=True)
    assert reference_f1(boxed, gt) == 1.0 and reference_f1(whole, gt) == 1.0


def test_debris_is_judged_on_the_objects_as_split_when_the_radius_comes_from_a_merged_colony():
    from labseg.ml.postprocess import min_object_size, object_radius

    gt, image = rod_colony()  # 12 touching dark rods with bright seams between them: one 48 x 48 block
    fg = (gt > 0).astype(np.float32)
    radius = object_radius(foreground=fg > 0.5)
    assert radius >= 20 and min_object_size(radius) > 8 * 24  # by the colony's radius a rod is debris
    pred = instances_from_probs(fg, image=-image)
    assert reference_f1(pred, gt) == 1.0  # every rod split off and kept
    # the same mask with the seams dimmed to the rods' grey: the grey values find no smaller objects, so the
    # foreground's blobs count as the objects and the plain watershed splits them
    flat = np.where(gt > 0, 0.1, 0.6).astype(np.float32)
    assert np.array_equal(instances_from_probs(fg, image=-flat), instances_from_probs(fg))


def test_the_grey_values_split_only_a_foreground_of_merged_colonies():
    from labseg.ml.postprocess import MERGED_RATIO, min_object_size, split_where_merged

    gt, image = touching_pairs()  # pairs of discs: the blobs are two objects each, not colonies
    fg = ndi.gaussian_filter((gt > 0).astype(np.float32), 1.0)
    assert np.array_equal(instances_from_probs(fg, image=image), instances_from_probs(fg))
    # by hand: a split whose objects have inscribed radius 3 (6 x 6 squares) against blobs of radius 6 is
    # merged (6 > 1.5 * 3): kept, with debris below max(10, 0.2 * pi * 9) = 10 px dropped; at radius 4 it is not
    split = np.zeros((40, 40), np.int32)
    split[2:8, 2:8], split[2:8, 8:14], split[20:23, 20:23] = 1, 2, 3
    calls = []

    def split_with(landscape, size, radius):
        calls.append((landscape is not None, size, radius))
        return split if landscape is not None else np.full(split.shape, 7, np.int32)

    kept = split_where_merged(split_with, image=np.zeros(split.shape), radius=6.0)
    assert MERGED_RATIO == 1.5 and calls == [(True, 1, 6.0)]
    assert sorted(np.bincount(kept.ravel())[1:].tolist()) == [36, 36]  # the 9-px square is debris
    calls.clear()
    assert (split_where_merged(split_with, image=np.zeros(split.shape), radius=4.0) == 7).all()
    assert calls == [(True, 1, 4.0), (False, min_object_size(4.0), 4.0)]


def test_only_objects_painted_whole_set_the_painted_radius_not_strokes_saved_with_ids():
    from labseg.ml.postprocess import painted_radius, painted_whole

    classes = np.zeros((120, 200), np.uint8)
    instances = np.zeros(classes.shape, np.int64)
    yy, xx = np.mgrid[:120, :200]
    # three discs of radius 10 painted whole, each with its 2-px outline as background (the correction workflow)
    for k, cx in zip((1, 2, 65535), (20, 50, 80)):
        d = np.hypot(yy - 20, xx - cx)
        classes[(d > 10) & (d <= 12)] = 1
        classes[d <= 10], instances[d <= 10] = 2, k
    # dense labels with no background at all: two squares that meet each other and the image border
    classes[100:120, 0:20], instances[100:120, 0:20] = 2, 7
    classes[100:120, 20:40], instances[100:120, 20:40] = 2, 8
    # seven strokes of radius 3 inside objects nobody painted, each saved as a new object (instance mode)
    for k, cy in zip(range(10, 17), range(46, 116, 10)):
        stroke = (np.abs(yy - cy) <= 3) & (xx >= 120) & (xx < 150)
        classes[stroke], instances[stroke] = 2, k
    classes[40:60, 170:190] = 1  # and a background stroke far from all of them

    whole = painted_whole(classes, instances)
    assert sorted(np.unique(whole[whole > 0])) == [1, 2, 7, 8, 65535]
    assert np.array_equal(whole > 0, np.isin(instances, [1, 2, 7, 8, 65535]))
    # by hand: a digital disc of radius 10 has the inscribed radius 10 or 11, a square of 20 px 10, a stroke 4
    assert 9.5 <= painted_radius([instances], [classes]) <= 11.0
    assert painted_radius([instances]) == pytest.approx(4.0)  # without the classes every id counts
    # a stroke that reaches painted background on one side only is still a stroke
    one_side = np.zeros_like(classes)
    one_side[10:20, 10:60], one_side[21:23, 10:60] = 2, 1
    assert not painted_whole(one_side, (one_side == 2).astype(np.int64)).any()
    # fewer than three objects painted whole: no painted radius (the split estimates one from the prediction)
    assert painted_radius([np.where(instances >= 10, instances, 0)], [classes]) is None
    with pytest.raises(ValueError, match="differ in shape"):
        painted_whole(classes, instances[:, :10])
    assert not painted_whole(classes, -instances).any()  # negative ids (a signed TIFF) are no objects
    # ids drawn whole (a polygon) count whatever was painted around them; ids not in the mask change nothing
    drawn = painted_whole(classes, instances, whole_ids={10, 11, 12, 99999})
    assert np.array_equal(drawn > 0, np.isin(instances, [1, 2, 7, 8, 10, 11, 12, 65535]))
    assert painted_radius([instances], [classes], [{10, 11, 12}]) == pytest.approx(10.0)  # 8 objects: 4,4,4,10,..


def rod_colony():
    """A colony of 2 x 6 dark rods (8 x 24 px: inscribed radius 4), touching, bright seams between them: one
    48 x 48 block of foreground (inscribed radius 24). -> (gt, image)."""
    gt = np.zeros((80, 80), np.int32)
    image = np.full(gt.shape, 0.6, np.float32)
    k = 0
    for y0 in (16, 40):
        for x0 in range(16, 64, 8):
            k += 1
            gt[y0:y0 + 24, x0:x0 + 8] = k
    image[gt > 0] = 0.1
    image[16:64, 23:57:8] = 0.9
    image[39:41, 16:64] = 0.9
    return gt, image


def test_a_set_object_size_splits_at_it_with_the_grey_values_only_in_merged_colonies():
    from labseg.ml.postprocess import instances_by_class

    gt, image = rod_colony()
    fg = (gt > 0).astype(np.float32)
    # the lab says rods are 8 px wide (radius 4): the 48-px block is 6x larger than that (> 1.5x), so it is a
    # colony and the grey values split every rod
    rods = instances_from_probs(fg, image=-image, size=4.0)
    assert reference_f1(rods, gt) == 1.0
    # the lab says objects are 40 px wide (radius 20): 24 < 1.5 * 20, the block is one object, split by shape alone
    # at that radius: exactly the plain watershed at radius 20
    big = instances_from_probs(fg, image=-image, size=20.0)
    assert np.array_equal(big, instances_from_probs(fg, radius=20.0)) and big.max() == 1
    # the same by class, whole and one component at a time
    probs = np.stack([1 - fg, fg])
    whole, _ = instances_by_class(probs, image=-image, size=4.0)
    assert np.array_equal(whole, rods)
    boxed, _ = instances_by_class(probs, image=-image, size=4.0, by_component=True)
    assert reference_f1(boxed, gt) == 1.0
    assert np.array_equal(instances_by_class(probs, image=-image, size=20.0)[0], big)
    # round touching discs at their own size: not colonies, so the same as the plain watershed at that radius
    pairs, bright = touching_pairs()
    soft = ndi.gaussian_filter((pairs > 0).astype(np.float32), 1.0)
    assert np.array_equal(instances_from_probs(soft, image=bright, size=10.0), instances_from_probs(soft, radius=10.0))
    assert reference_f1(instances_from_probs(soft, image=bright, size=10.0), pairs) == 1.0
    with pytest.raises(ValueError, match="not both"):
        instances_from_probs(fg, radius=4.0, size=4.0)
    with pytest.raises(ValueError, match="not both"):
        instances_by_class(probs, radius=4.0, size=4.0)


def test_a_set_size_tells_colonies_by_the_blobs_against_it_by_hand():
    from labseg.ml.postprocess import min_object_size, split_where_merged

    calls = []

    def split_with(landscape, least, radius):
        calls.append((landscape is not None, least, radius))
        return np.ones((4, 4), np.int32)

    # blobs of radius 6.1 > 1.5 * 4: merged colonies, split by the grey values at the colony's radius, debris
    # judged at the size
    split_where_merged(split_with, np.zeros((4, 4)), 6.1, size=4.0)
    assert calls == [(True, min_object_size(4.0), 6.1)]
    calls.clear()
    split_where_merged(split_with, np.zeros((4, 4)), 6.0, size=4.0)  # not more than 1.5x: the blobs are objects
    assert calls == [(False, min_object_size(4.0), 4.0)]


def test_a_recorded_radius_is_read_back_and_anything_else_means_none():
    from labseg.ml.postprocess import recorded_radius

    assert recorded_radius(12) == 12.0 and recorded_radius("7.5") == 7.5 and recorded_radius(10_000) == 10_000.0
    # outside data (an uploaded checkpoint's provenance): no number, out of range, or one float() cannot hold
    for bad in (None, 0.5, 10_001, float("nan"), float("inf"), "wide", [3], {"r": 3}, 10**400):
        assert recorded_radius(bad) is None, bad


def test_a_set_object_size_wins_over_the_painted_radius_for_crops_calibration_and_the_split():
    from labseg.ml.postprocess import object_scale, split_sizes

    assert object_scale(24.0, 6.0) == 24.0 and object_scale(None, 6.0) == 6.0 and object_scale(None, None) is None
    # the split: a set size splits merged colonies only (radius None), a painted radius splits every object
    assert split_sizes(24.0, 6.0) == (None, 24.0) and split_sizes(None, 6.0) == (6.0, None)
    assert split_sizes(None, None) == (None, None)


# --- the probability-weighted split: the distance weighed by how sure the method is --------------------
def _stadium(band_prob=0.7):
    """Two discs of radius 12 (centres (30, 30) and (30, 70)) joined by a full-width bar: one blob whose
    distance transform is a flat ridge (no neck), with probability 0.99 except a 6-px band across the
    middle (columns 47-52) at ``band_prob``, where a network would be less sure of two touching cells."""
    yy, xx = np.mgrid[:60, :100]
    mask = ((yy - 30) ** 2 + (xx - 30) ** 2 <= 144) | ((yy - 30) ** 2 + (xx - 70) ** 2 <= 144)
    mask |= (np.abs(yy - 30) <= 12) & (xx >= 30) & (xx <= 70)
    fg = np.where(mask, 0.99, 0.01).astype(np.float32)
    fg[mask & (xx >= 47) & (xx <= 52)] = band_prob
    return mask, fg


def test_the_probability_weighted_split_parts_a_broad_join_that_shape_alone_keeps_whole():
    from labseg.ml.postprocess import confidence_map, split_instances

    mask, fg = _stadium()
    whole = instances_from_probs(fg, radius=12.0, confidence_power=None)
    assert whole.max() == 1 and (whole > 0).sum() == mask.sum()  # the flat ridge seeds one object
    parted = instances_from_probs(fg, radius=12.0, confidence_power=2.0)
    assert parted.max() == 2
    np.testing.assert_array_equal(parted > 0, mask)  # every foreground pixel still goes to an object
    left, right = parted[30, 30], parted[30, 70]
    assert left != right and left > 0 and right > 0
    # the border lies inside the uncertain band: columns up to 46 are the left object's, from 53 the right one's
    assert (parted[:, :47][mask[:, :47]] == left).all() and (parted[:, 53:][mask[:, 53:]] == right).all()
    # the weight by hand: the probability squared; split_instances given it directly agrees
    np.testing.assert_allclose(confidence_map(fg, 2.0), np.clip(fg, 0, 1) ** 2, rtol=1e-6)
    np.testing.assert_array_equal(split_instances(mask, radius=12.0, min_size=20, confidence=fg ** 2), parted)
    # where the method is equally sure across the join there is nothing to part: one object, as without the weight
    _, sure = _stadium(band_prob=0.99)
    np.testing.assert_array_equal(instances_from_probs(sure, radius=12.0, confidence_power=2.0), whole)


def test_an_unsure_blob_stays_one_object_and_a_weight_of_one_changes_nothing():
    from labseg.ml.postprocess import confidence_map, split_instances

    mask, fg = _stadium()
    yy, xx = np.mgrid[:60, :100]
    dim = ((yy - 30) ** 2 + (xx - 92) ** 2 <= 36) & ~mask
    fg[dim] = 0.6  # foreground, but unsure everywhere: its weight is lower, the weight does not drop it
    labels = instances_from_probs(fg, radius=12.0, confidence_power=2.0)
    assert labels.max() == 3 and len(np.unique(labels[dim])) == 1 and labels[30, 92] > 0
    gt, _ = touching_pairs(3)
    objects = gt > 0
    np.testing.assert_array_equal(split_instances(objects, radius=10.0, confidence=np.ones(gt.shape, np.float32)),
                                  split_instances(objects, radius=10.0))
    assert confidence_map(fg, None) is None and confidence_map(fg, 0) is None


def test_the_probability_weighted_split_is_the_same_in_every_split_path():
    from labseg.ml.postprocess import instances_by_class

    mask, fg = _stadium()
    probs = np.stack([1 - fg, fg])
    labels, _ = instances_by_class(probs, radius=12.0, confidence_power=2.0)
    np.testing.assert_array_equal(labels, instances_from_probs(probs, radius=12.0, confidence_power=2.0))
    parts, _ = instances_by_class(probs, radius=12.0, confidence_power=2.0, by_component=True)
    pairs = np.unique(np.stack([labels.ravel(), parts.ravel()]), axis=1)  # the same partition, ids aside
    assert labels.max() == 2 and len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


# --- objects need a sure pixel (hysteresis) -------------------------------------------------------------
def _blobs_with_peaks():
    """The stadium (two objects, peak 0.99), a 0.6 blob with no sure pixel, and a 0.6 blob with one 0.95 pixel."""
    mask, fg = _stadium()
    yy, xx = np.mgrid[:60, :100]
    unsure = ((yy - 10) ** 2 + (xx - 90) ** 2 <= 36) & ~mask
    seeded = ((yy - 50) ** 2 + (xx - 90) ** 2 <= 36) & ~mask
    fg[unsure | seeded] = 0.6
    fg[50, 90] = 0.95
    return fg, unsure, seeded


def test_objects_whose_probability_never_reaches_the_seed_are_dropped_and_the_rest_renumbered():
    from labseg.ml.postprocess import SEED_PROB, drop_unsure, object_peaks

    fg, unsure, seeded = _blobs_with_peaks()
    kept_all = instances_from_probs(fg, radius=12.0, seed_prob=None)
    # off by default (it did not help the U-Net over the real sets): every object kept
    assert SEED_PROB is None
    np.testing.assert_array_equal(instances_from_probs(fg, radius=12.0), kept_all)
    assert kept_all.max() == 4 and kept_all[10, 90] > 0
    # the peaks by hand: the largest probability of each object's pixels
    peaks = object_peaks(kept_all, fg)
    for i in range(1, 5):
        assert peaks[i] == fg[kept_all == i].max()
    assert sorted(peaks[1:].round(2)) == [0.6, 0.95, 0.99, 0.99]
    labels = instances_from_probs(fg, radius=12.0, seed_prob=0.9)
    assert labels.max() == 3 and not labels[unsure].any() and (labels[seeded] > 0).all()
    np.testing.assert_array_equal(labels > 0, (kept_all > 0) & ~unsure)  # nothing else changes
    assert sorted(np.unique(labels)) == [0, 1, 2, 3]  # renumbered 1..M
    # the same partition of what is kept, ids aside
    pairs = np.unique(np.stack([kept_all[labels > 0], labels[labels > 0]]), axis=1)
    assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1] == 3
    # in place, in row blocks: the same as a whole-image lookup
    again = drop_unsure(kept_all.copy(), fg, 0.9, rows=7)
    np.testing.assert_array_equal(again, labels)
    assert drop_unsure(kept_all.copy(), fg, 0.99).max() == 2  # only the stadium's two halves reach 0.99
    np.testing.assert_array_equal(drop_unsure(kept_all.copy(), fg, None), kept_all)


def test_the_seed_rule_is_the_same_in_every_split_path(tmp_path):
    """instances_from_probs, instances_by_class (whole image and component by component, the probabilities a
    memory map as large predictions hold them) and the membrane split drop the same objects."""
    from labseg.ml.postprocess import instances_by_class

    fg, unsure, seeded = _blobs_with_peaks()
    probs = np.stack([1 - fg, fg]).astype(np.float32)
    whole = instances_from_probs(probs, radius=12.0, seed_prob=0.9)
    labels, object_class = instances_by_class(probs, radius=12.0, seed_prob=0.9)
    np.testing.assert_array_equal(labels, whole)
    assert list(object_class) == [0, 1, 1, 1]
    mapped = np.memmap(tmp_path / "probs.f32", np.float32, "w+", shape=probs.shape)
    mapped[:] = probs
    parts, _ = instances_by_class(mapped, radius=12.0, by_component=True, seed_prob=0.9)
    np.testing.assert_array_equal(parts > 0, whole > 0)
    for split in ("boundaries",):
        kept = instances_from_probs(probs, radius=12.0, split=split, seed_prob=None)
        dropped = instances_from_probs(probs, radius=12.0, split=split, seed_prob=0.9)
        assert kept.max() == dropped.max() + 1 and not dropped[unsure].any() and dropped[50, 90] > 0
        by_class, _ = instances_by_class(probs, radius=12.0, split=split, seed_prob=0.9)
        np.testing.assert_array_equal(by_class > 0, dropped > 0)
    # a second object class is held to its own class's probability
    three = np.stack([1 - fg, np.where(seeded, 0.0, fg), np.where(seeded, fg, 0.0)]).astype(np.float32)
    three[0][seeded] = 1 - fg[seeded]
    labels3, classes3 = instances_by_class(three, radius=12.0, seed_prob=0.9)
    assert (labels3[seeded] > 0).all() and classes3[labels3[50, 90]] == 2 and not labels3[unsure].any()
