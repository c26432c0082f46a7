"""The threshold and forest baselines, and the object size used for splitting: checked against cases
worked by hand and against scikit-image."""
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.filters import threshold_otsu

from labseg.ml.baselines import ForestBaseline, ThresholdBaseline
from labseg.ml.postprocess import inscribed_radii, instances_from_probs, min_object_size, object_radius


def _disks(shape=(96, 96), centres=((24, 24), (24, 70), (70, 40)), r=10):
    inst = np.zeros(shape, np.int32)
    for k, c in enumerate(centres, start=1):
        inst[disk(c, r, shape=shape)] = k
    return inst


def _strokes(inst):
    classes = np.zeros(inst.shape, np.uint8)
    classes[ndi.binary_erosion(inst > 0, iterations=4)] = 2
    classes[:4, :] = 1
    classes[-4:, :] = 1
    return classes


def test_threshold_finds_dark_objects_on_a_bright_background_from_the_painted_contrast():
    inst = _disks()
    rng = np.random.default_rng(0)
    image = np.where(inst > 0, 0.2, 0.8) + rng.normal(0, 0.03, inst.shape)  # dark objects
    model = ThresholdBaseline().fit(image[None], _strokes(inst))
    assert model.weights[0] < 0  # the projection flips the channel: objects score higher than background
    classes, fg = model.predict(image[None])
    assert ((classes == 2) == (inst > 0)).mean() > 0.97
    assert fg.min() >= 0 and fg.max() <= 1


def test_threshold_on_one_channel_is_otsu_of_the_smoothed_image():
    inst = _disks()
    rng = np.random.default_rng(1)
    image = np.where(inst > 0, 0.9, 0.1) + rng.normal(0, 0.05, inst.shape)
    model = ThresholdBaseline(smooth=1.0).fit(image[None], _strokes(inst))
    assert model.threshold == pytest.approx(threshold_otsu(ndi.gaussian_filter(image, 1.0)), rel=1e-5)


def test_threshold_projects_rgb_on_the_colour_that_tells_objects_from_background():
    # H&E-like: purple nuclei on pink; red is alike in both, so only the other channels separate them
    inst = _disks()
    rng = np.random.default_rng(2)
    rgb = np.stack([np.full(inst.shape, 0.8), np.where(inst > 0, 0.2, 0.6), np.where(inst > 0, 0.7, 0.5)])
    rgb = rgb + rng.normal(0, 0.02, rgb.shape)
    model = ThresholdBaseline().fit(rgb, _strokes(inst))
    assert abs(model.weights[0]) < 0.2 and model.weights[1] < 0 < model.weights[2]
    assert ((model.predict(rgb)[0] == 2) == (inst > 0)).mean() > 0.97


def test_threshold_falls_back_to_the_painted_separation_when_otsu_splits_elsewhere():
    # dim cells with very bright nucleoli: Otsu separates the nucleoli, the strokes say whole cells
    inst = _disks(r=14)
    image = np.where(inst > 0, 0.3, 0.05)
    for c in ((24, 24), (24, 70), (70, 40)):
        image[disk(c, 3, shape=inst.shape)] = 1.0
    model = ThresholdBaseline(smooth=0).fit(image[None], _strokes(inst))
    assert 0.05 < model.threshold < 0.3
    assert ((model.predict(image[None])[0] == 2) == (inst > 0)).mean() > 0.99


def test_forest_learns_texture_that_a_threshold_cannot():
    inst = _disks(r=12)
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 1, inst.shape)
    image = np.where(inst > 0, 0.5 + 0.4 * noise, 0.5 + 0.02 * noise)  # same mean, different texture
    classes = _strokes(inst)
    forest = ForestBaseline(trees=30, seed=0).fit(image[None], classes)
    pred, fg = forest.predict(image[None])
    assert ((pred == 2) == (inst > 0)).mean() > 0.9
    assert fg.shape == inst.shape and 0 <= fg.min() and fg.max() <= 1


def test_forest_predicts_a_large_image_in_bands_like_one_piece(monkeypatch):
    import labseg.ml.baselines as b

    inst = _disks((120, 80), ((30, 30), (80, 40)), 12)
    image = np.where(inst > 0, 0.8, 0.2) + np.random.default_rng(4).normal(0, 0.05, inst.shape)
    forest = ForestBaseline(trees=10, seed=0).fit(image[None], _strokes(inst))
    whole = forest.predict(image[None])[1]
    monkeypatch.setattr(b, "FOREST_BAND_PIXELS", 80 * 16)  # 16-row bands
    assert np.allclose(forest.predict(image[None])[1], whole)


def test_baselines_need_both_background_and_objects_painted():
    image = np.zeros((1, 32, 32))
    only_bg = np.ones((32, 32), np.uint8)
    with pytest.raises(ValueError, match="painted"):
        ThresholdBaseline().fit(image, only_bg)
    with pytest.raises(ValueError, match="two painted classes"):
        ForestBaseline(trees=2).fit(image, only_bg)


def test_object_radius_of_painted_disks_and_of_a_foreground_with_touching_objects():
    inst = _disks(r=10)
    # the inscribed radius of a digital disk of radius 10 is its distance-transform maximum: 10 or 11
    assert 9.5 <= object_radius(inst) <= 11.0
    # two touching disks merged into one component keep one disk's radius
    merged = np.zeros((60, 100), bool)
    merged[disk((30, 30), 10, shape=merged.shape)] = True
    merged[disk((30, 48), 10, shape=merged.shape)] = True
    assert 9.5 <= object_radius(foreground=merged) <= 11.0
    # a rod 8 px wide: half its width, not its length
    rods = np.zeros((60, 200), bool)
    for y in (10, 30, 50):
        rods[y - 4:y + 4, 20:180] = True
    assert 3.5 <= object_radius(foreground=rods) <= 4.5
    assert object_radius(np.zeros((9, 9), int), default=7.0) == 7.0  # nothing to measure


def test_inscribed_radii_match_the_whole_image_distance_transform():
    inst = _disks(r=9)
    mask = inst > 0
    whole = ndi.distance_transform_edt(mask)
    expected = sorted(whole[inst == k].max() for k in (1, 2, 3))
    assert sorted(inscribed_radii(mask)) == pytest.approx(expected)


def test_splitting_scales_with_the_object_size():
    # two touching disks of radius 20 are split; a min size that follows the radius drops debris of r=3
    mask = np.zeros((80, 140), bool)
    mask[disk((40, 45), 20, shape=mask.shape)] = True
    mask[disk((40, 80), 20, shape=mask.shape)] = True
    mask[disk((10, 125), 3, shape=mask.shape)] = True
    labels = instances_from_probs(mask.astype(np.float32), radius=20.0)
    assert labels.max() == 2
    assert min_object_size(20.0) == round(0.2 * np.pi * 400)
