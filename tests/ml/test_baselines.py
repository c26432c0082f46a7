"""The threshold and forest baselines, and the object size used for splitting: checked against cases
worked by hand and against scikit-image."""
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk
from skimage.filters import threshold_otsu

from labseg.ml.baselines import (
    ForestBaseline,
    IntensityGate,
    SplitIntensity,
    ThresholdBaseline,
    fit_intensity_gate,
    fit_split_intensity,
    object_direction,
    outlined_share,
)
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


def _reference_keep(gate_dict, image):
    """The gate computed by hand from its stored numbers: weighted channel sum, scipy Gaussian, > threshold."""
    projected = sum(w * image[c] for c, w in enumerate(gate_dict["weights"]))
    return ndi.gaussian_filter(projected.astype(np.float64), gate_dict["smooth"]) > gate_dict["threshold"]


def test_gate_drops_a_halo_the_network_adds_around_a_bright_object():
    """A bright disk (r 10) on a dark field; the network's foreground runs 5 px wide of it (a halo). The
    gate keeps the disk and drops the halo: what the threshold fitted on the same strokes calls background."""
    inst = _disks()
    rng = np.random.default_rng(1)
    image = (np.where(inst > 0, 0.9, 0.1) + rng.normal(0, 0.02, inst.shape))[None]
    gate, info = fit_intensity_gate(image, _strokes(inst))
    assert gate is not None and info["kept"] == {"2": 1.0} and "off" not in info
    halo = ndi.binary_dilation(inst > 0, iterations=5)
    probs = np.stack([np.where(halo, 0.1, 0.9), np.where(halo, 0.9, 0.1)]).astype(np.float32)
    gate.apply(probs, image)
    fg = probs[1] > 0.5
    assert (fg & (inst == 0)).sum() <= 0.02 * (inst > 0).sum()  # the halo is gone (the smoothed edge may stay)
    assert (fg & (inst > 0)).sum() >= 0.98 * (inst > 0).sum()  # the disks are kept
    np.testing.assert_allclose(probs.sum(0), 1.0)  # still a distribution: dropped pixels are background
    assert np.array_equal(fg, halo & _reference_keep(gate.to_dict(), image))


def test_gate_in_bands_equals_the_whole_image_and_the_hand_computed_mask():
    rng = np.random.default_rng(2)
    image = ndi.gaussian_filter(rng.normal(size=(3, 150, 70)), (0, 3, 3)).astype(np.float32)
    gate = IntensityGate(np.array([0.6, -0.3, 0.74], np.float32), 0.01, smooth=1.5)
    ref = _reference_keep(gate.to_dict(), image)
    for rows in (1, 7, 64, 1024):
        assert np.array_equal(gate.keep(image, rows=rows), ref), rows
    probs = rng.dirichlet([1, 1, 1], size=(150, 70)).transpose(2, 0, 1).astype(np.float32)
    before = probs.copy()
    gate.apply(probs, image, rows=11)
    assert np.array_equal(probs[:, ref], before[:, ref])  # kept pixels untouched
    assert (probs[0][~ref] == 1).all() and (probs[1:][:, ~ref] == 0).all()
    with pytest.raises(ValueError, match="3 channel"):
        gate.keep(image[:2])


def test_gate_is_off_where_it_would_drop_painted_objects_or_on_membranes_or_when_switched_off():
    inst = _disks()
    rng = np.random.default_rng(3)
    image = (np.where(inst > 0, 0.9, 0.1) + rng.normal(0, 0.02, inst.shape))[None]
    classes = _strokes(inst)
    dim = np.zeros(inst.shape, bool)
    dim[40:56, 5:25] = True  # painted as a second object class, but as dark as the background
    classes[dim] = 3
    gate, info = fit_intensity_gate(image, classes)
    assert gate is None and info["kept"]["2"] > 0.95 and info["kept"]["3"] < 0.1
    assert "class 3" in info["off"] and "90%" in info["off"]
    assert IntensityGate.from_dict(info) is None  # stored off: predictions keep every pixel
    gate, info = fit_intensity_gate(image, _strokes(inst), split="boundaries")
    assert gate is None and "membranes" in info["off"]
    gate, info = fit_intensity_gate(image, _strokes(inst), enabled=False)
    assert gate is None and "intensity_gate: false" in info["off"]
    gate, info = fit_intensity_gate(image, np.where(_strokes(inst) == 1, 1, 0).astype(np.uint8))
    assert gate is None and "painted background and painted objects" in info["off"]
    gate, _ = fit_intensity_gate(image, _strokes(inst))
    again = IntensityGate.from_dict(gate.to_dict())
    assert np.array_equal(again.keep(image), gate.keep(image)) and again.threshold == gate.threshold
    for bad in ({"weights": ["a"], "threshold": 0.5}, {"weights": [1.0]}, {"weights": [float("nan")], "threshold": 0},
                {"weights": [1.0], "threshold": 0.5, "smooth": 1e9}, {"weights": [[1.0]], "threshold": 0.5}):
        with pytest.raises(ValueError, match="intensity gate is malformed"):
            IntensityGate.from_dict(bad)


def test_outlined_share_by_hand_and_the_gate_stays_off_for_outlined_objects():
    square = np.zeros((12, 12), np.uint8)
    square[3:8, 3:8] = 2  # 5 x 5 object: 16 edge pixels
    assert outlined_share(square) == 0.0  # a stroke inside an object: no painted background beside it
    ring = square.copy()
    ring[2:9, 2:9][ring[2:9, 2:9] == 0] = 1  # its 1-px outline painted as background
    assert outlined_share(ring) == 1.0
    half = square.copy()
    half[2:9, 2] = 1  # background along the left side only: the 5 edge pixels of column 3 touch it
    assert outlined_share(half) == pytest.approx(5 / 16)
    inst = _disks()
    rng = np.random.default_rng(4)
    image = (np.where(inst > 0, 0.9, 0.1) + rng.normal(0, 0.02, inst.shape))[None]
    whole = np.where(inst > 0, 2, 0).astype(np.uint8)
    whole[ndi.binary_dilation(inst > 0, iterations=2) & (inst == 0)] = 1  # objects painted whole, outlined
    gate, info = fit_intensity_gate(image, whole)
    assert gate is None and info["outlined"] == 1.0 and "outlines" in info["off"]
    gate, info = fit_intensity_gate(image, _strokes(inst))
    assert gate is not None and info["outlined"] == 0.0


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


def test_the_split_intensity_is_the_unit_direction_from_painted_background_to_painted_objects():
    inst = _disks()
    classes = _strokes(inst)
    rng = np.random.default_rng(3)
    image = np.stack([np.where(inst > 0, 0.2, 0.8), np.where(inst > 0, 0.9, 0.3), np.full(inst.shape, 0.5)])
    image = (image + rng.normal(0, 0.02, image.shape)).astype(np.float32)
    # by hand: mean painted object pixel minus mean painted background pixel, scaled to length 1
    d = image[:, classes >= 2].mean(1) - image[:, classes == 1].mean(1)
    expected = d / np.sqrt((d ** 2).sum())
    np.testing.assert_allclose(object_direction(image, classes), expected, rtol=1e-5, atol=1e-6)
    splitter, info = fit_split_intensity(image, classes)
    assert info == {"weights": [float(w) for w in splitter.weights]}
    landscape = splitter.landscape(image)
    np.testing.assert_allclose(landscape, sum(w * c for w, c in zip(expected, image)), atol=1e-5)
    assert landscape[inst > 0].mean() > landscape[inst == 0].mean()  # objects bright on it
    # in bands (of 7 rows) and into a given array: the same values
    out = np.zeros(inst.shape, np.float32)
    assert splitter.landscape(image, rows=7, out=out) is out
    np.testing.assert_allclose(out, landscape, atol=1e-6)
    # one channel, dark objects: the image negated
    dark, _ = fit_split_intensity(image[:1], classes)
    assert dark.weights.tolist() == [-1.0]
    np.testing.assert_allclose(dark.landscape(image[0]), -image[0])
    with pytest.raises(ValueError, match="fitted on 3 channel"):
        splitter.landscape(image[:1])


def test_the_split_intensity_is_off_for_membranes_when_switched_off_or_unpainted_and_refuses_bad_dicts():
    inst = _disks()
    image = np.where(inst > 0, 0.9, 0.1).astype(np.float32)
    splitter, info = fit_split_intensity(image, _strokes(inst), split="boundaries")
    assert splitter is None and "membranes" in info["off"]
    splitter, info = fit_split_intensity(image, _strokes(inst), enabled=False)
    assert splitter is None and "intensity_split: false" in info["off"]
    splitter, info = fit_split_intensity(image, np.where(_strokes(inst) == 2, 2, 0).astype(np.uint8))
    assert splitter is None and "painted background" in info["off"]
    splitter, info = fit_split_intensity(image, _strokes(inst), painted_radius=9.5)
    assert splitter is None and info["off"] == ("objects were painted whole, so their size (radius 9.5 px) sets the "
                                                "split")
    stored = SplitIntensity.from_dict({"weights": [0.6, -0.8]})
    assert stored.weights.tolist() == pytest.approx([0.6, -0.8])
    assert SplitIntensity.from_dict({"off": "switched off"}) is None and SplitIntensity.from_dict(None) is None
    for bad in ({"weights": "x"}, {"weights": []}, {"weights": [float("nan")]}, {"weights": [[1.0]]},
                {"weights": [1.0] * 65}):
        with pytest.raises(ValueError, match="stored split intensity is malformed"):
            SplitIntensity.from_dict(bad)
