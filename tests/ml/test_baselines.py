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
    calibrate_edges,
    choose_edges,
    edge_setting,
    edges_auto,
    edges_on,
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


def _cells(shape=(96, 96), centres=((26, 26), (26, 70), (70, 48)), cell=14, nucleus=6):
    """Dim cells (0.3, radius ``cell``) with bright nuclei (1.0, radius ``nucleus``) on a dark field (0)."""
    cells, nuclei = np.zeros(shape, np.int32), np.zeros(shape, bool)
    for k, c in enumerate(centres, start=1):
        cells[disk(c, cell, shape=shape)] = k
        nuclei[disk(c, nucleus, shape=shape)] = True
    rng = np.random.default_rng(2)
    image = np.where(nuclei, 1.0, np.where(cells > 0, 0.3, 0.0)) + rng.normal(0, 0.01, shape)
    return cells, nuclei, image[None].astype(np.float32)


def _probs(fg: np.ndarray) -> np.ndarray:
    return np.stack([np.where(fg, 0.1, 0.9), np.where(fg, 0.9, 0.1)]).astype(np.float32)


def _best_agreement_by_hand(projected: np.ndarray, fg: np.ndarray) -> float:
    """The best balanced accuracy of any threshold, by trying every value (the reference for the 257 quantiles)."""
    a, b = np.sort(projected[fg]), np.sort(projected[~fg])
    cuts = np.unique(projected)
    recall = 1.0 - np.searchsorted(a, cuts, side="right") / a.size
    specificity = np.searchsorted(b, cuts, side="right") / b.size
    return float(np.max(0.5 * (recall + specificity)))


def test_edge_calibration_adds_the_dim_cytoplasm_the_network_missed_and_drops_its_halo():
    """The network drew cell 1 whole with a 4-px halo, cell 2 whole, and only the nucleus of cell 3. One grey
    level reproduces its foreground best: between the background and the cytoplasm (by hand: all its objects
    but the halo, 1345 of 1747 px, and all its background but cell 3's cytoplasm, 503 of 7469 px: balanced
    accuracy 0.85-0.9; a level above the cytoplasm keeps only the nuclei, 339 px: 0.6). So cell 3's cytoplasm
    becomes object and the halo background."""
    cells, nuclei, image = _cells()
    drawn = ((cells == 1) | (cells == 2) | (nuclei & (cells == 3)))
    halo = ndi.binary_dilation(cells == 1, iterations=4) & (cells == 0)
    probs = _probs(drawn | halo)
    info = calibrate_edges(probs, image, reach=14)
    fg = probs[0] < 0.5
    assert 0.0 < info["threshold"] < 0.3 and 0.85 < info["agreement"] < 0.95
    assert info["agreement"] >= _best_agreement_by_hand(ndi.gaussian_filter(image[0], 1.0), drawn | halo) - 0.01
    # the three cells whole and nothing else, but for their edges blurred by the smoothing (the level lies just
    # above the background's noise, pulled there by the halo's inner ring, which the blur brightens)
    edge = ndi.binary_dilation(cells > 0, iterations=4) & ~ndi.binary_erosion(cells > 0, iterations=1)
    assert not ((fg ^ (cells > 0)) & ~edge).any()
    assert info["added"] == int((fg & ~(drawn | halo)).sum()) > 0.9 * ((cells == 3) & ~nuclei).sum()
    assert info["removed"] == int(((drawn | halo) & ~fg).sum()) >= 0.4 * halo.sum()
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-6)


def test_edge_calibration_keeps_gaps_between_touching_objects_and_leaves_far_pixels_alone():
    """Two cells side by side in one bright block, drawn by the network with a 2-px gap; a bright blob 30 px
    from both. The gap is bright, but filling it would join the two objects: it stays. The blob lies beyond
    ``reach``: the network's answer (background) stands."""
    image = np.zeros((60, 90), np.float32)
    image[20:40, 10:50] = 0.5
    image[24:36, 76:86] = 0.5  # the far blob
    drawn = np.zeros(image.shape, bool)
    drawn[20:40, 10:29] = True
    drawn[20:40, 31:50] = True
    probs = _probs(drawn)
    info = calibrate_edges(probs, image[None], reach=8)
    fg = probs[0] < 0.5
    labels, n = ndi.label(fg)
    assert n == 2 and not fg[20:40, 29:31].any()
    assert not fg[24:36, 76:86].any()
    assert info["added"] == int((fg & ~drawn).sum())


def test_edge_calibration_is_off_where_grey_values_do_not_tell_objects_and_gives_the_likeliest_class():
    rng = np.random.default_rng(3)
    noise = rng.random((1, 64, 64)).astype(np.float32)  # a texture: no grey level tells the disk from the rest
    disk_fg = np.zeros((64, 64), bool)
    disk_fg[disk((32, 32), 12)] = True
    probs = _probs(disk_fg)
    before = probs.copy()
    info = calibrate_edges(probs, noise, reach=12)
    assert "off" in info and info["agreement"] < 0.75
    np.testing.assert_array_equal(probs, before)
    assert "off" in calibrate_edges(_probs(np.zeros((64, 64), bool)), noise, reach=12)  # no objects at all
    # three classes: a pixel made object goes to the object class the network found likelier there
    cells, nuclei, image = _cells()
    drawn = (cells > 0) & ~((cells == 3) & ~nuclei)
    probs = np.zeros((3,) + cells.shape, np.float32)
    probs[0] = np.where(drawn, 0.1, 0.8)
    probs[1] = np.where(drawn, 0.9, 0.05)
    probs[2] = np.where(drawn, 0.0, 0.15)  # class 2 likelier than class 1 in the missed cytoplasm
    calibrate_edges(probs, image, reach=14)
    added = (probs[0] < 0.5) & ~drawn
    assert added.sum() > 0 and np.all(probs[2][added] == np.float32(0.51)) and np.all(probs[1][added] == 0)
    with pytest.raises(ValueError, match="differ in size"):
        calibrate_edges(probs, image[:, :10], reach=14)


def test_auto_edge_calibration_goes_on_only_where_it_lifts_the_held_out_labels_iou_by_more_than_the_margin():
    """``edge_calibration: null``: the run's held-out labels choose. On only with a lift above the margin; a tie,
    a lift within it, a loss, or nothing held out keep the network's own edges; both IoUs are kept either way."""
    assert edges_auto(edge_setting(enabled=None)) and not edges_on(edge_setting(enabled=None))
    assert not edges_auto(edge_setting(enabled=None, split="boundaries"))  # membranes: off whatever is asked
    assert "off" in edge_setting(enabled=None, split="boundaries")
    assert edges_on(edge_setting(enabled=True)) and not edges_auto(edge_setting(enabled=False))
    on = choose_edges(0.62, 0.70)
    assert edges_on(on) and not edges_auto({k: v for k, v in on.items() if k != "auto"})
    assert on["iou_fg_without"] == 0.62 and on["iou_fg_with"] == 0.70 and "0.620 without, 0.700 with" in on["auto"]
    for without, with_ in ((0.70, 0.70), (0.70, 0.705), (0.70, 0.60)):
        off = choose_edges(without, with_)
        assert not edges_on(off) and "off" in off and off["iou_fg_with"] == with_, (without, with_)
    assert edges_on(choose_edges(0.70, 0.705, margin=0.0)) and not edges_on(choose_edges(0.5, 0.9, margin=0.5))
    for pair in ((None, 0.9), (0.9, None), (None, None)):
        nothing = choose_edges(*pair)
        assert not edges_on(nothing) and "no held-out labels" in nothing["off"]


def test_edge_calibration_leaves_images_over_its_pixel_budget_as_they_are():
    cells, nuclei, image = _cells()
    probs = _probs(cells > 0)
    before = probs.copy()
    n = cells.size
    from labseg.ml.baselines import calibrate_edges_at

    info = calibrate_edges_at(probs, image, 14.0, max_pixels=n - 1)
    assert f"{n} pixels, more than the {n - 1}" in info["off"] and np.array_equal(probs, before)
    assert "threshold" in calibrate_edges_at(probs, image, 14.0, max_pixels=n)
    assert "threshold" in calibrate_edges_at(before.copy(), image, 14.0, max_pixels=0)  # 0: no limit


def test_auto_edge_calibration_with_nothing_held_out_is_settled_off_at_once():
    """The command line and live sessions hold nothing out: auto is not left pending there but stored off."""
    settled = edge_setting(enabled=None, held_out=False)
    assert not edges_auto(settled) and not edges_on(settled) and "no held-out labels" in settled["off"]
    assert edge_setting(enabled=True, held_out=False) == {"on": True}  # a forced setting is not touched
    assert "off" in edge_setting(enabled=None, split="boundaries", held_out=False)
