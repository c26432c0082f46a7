"""The real-data benchmark's labelling protocols and scoring, on synthetic crops (tests never download)."""
import json

import numpy as np
import pytest

from bench import fewlabel, realdata
from labseg.ml.io import normalize
from labseg.ml.metrics import f1_at_iou
from labseg.ml.synthetic import make_nuclei


@pytest.fixture
def crop():
    image, inst = make_nuclei((96, 96), n=10, seed=3)
    valid = np.ones(inst.shape, bool)
    valid[:, 70:] = False  # labels known on the left only (as Huh7's mask, CREMI's labelled half)
    return realdata.Crop(image, np.where(valid, inst, 0).astype(np.int32), valid)


def test_scribbles_stay_where_labels_are_known_and_inside_one_object_each(crop):
    classes = realdata.scribbles(crop, seed=1, n_strokes=10, radius=2, length=12)
    assert not classes[~crop.valid].any()
    assert (crop.instances[classes == 2] > 0).all()  # object strokes never leave the objects
    far = np.ones_like(crop.valid)
    from scipy import ndimage as ndi
    far = ndi.distance_transform_edt(crop.instances == 0) > 8.0
    assert far[classes == 1].all()  # background strokes keep their distance
    near = realdata.scribbles(crop, seed=1, n_strokes=10, radius=2, length=12, bg_margin=2.0)
    assert (near == 1).any()


def test_painted_objects_are_whole_with_ids_and_an_outline_of_background(crop):
    classes, instances = realdata.painted_objects(crop, seed=2, n_objects=3, radius=2, length=12)
    ids = [i for i in np.unique(instances) if i]
    assert len(ids) == 3
    for k in ids:
        source = np.unique(crop.instances[instances == k])
        assert len(source) == 1 and ((crop.instances == source[0]) == (instances == k)).all()
    assert (classes[instances > 0] == 2).all()


def test_dense_labels_every_known_pixel_and_nothing_else(crop):
    classes, instances = realdata.dense(crop)
    assert (classes[crop.valid] > 0).all() and not classes[~crop.valid].any()
    assert ((classes == 2) == (crop.instances > 0)).all()


def test_score_counts_only_objects_where_labels_are_known(crop):
    gt = crop.instances
    pred = gt.copy()
    outside = np.zeros_like(pred)
    outside[10:20, 80:90] = 99  # a predicted object entirely where nothing is known: not a false positive
    pred = np.where(outside > 0, outside, pred)
    s = fewlabel.score([pred], [crop])
    assert s["f1"] == pytest.approx(1.0) and s["fp"] == 0 and s["iou"] == pytest.approx(1.0)
    # against the reference F1 on the known part
    half = pred.copy()
    half[half == np.unique(gt)[1]] = 0  # miss one object
    f1, *_ = f1_at_iou(np.where(crop.valid, half, 0), gt, 0.5)
    assert fewlabel.score([half], [crop])["f1"] == pytest.approx(f1)


def test_cremi_carving_makes_membranes_between_labelled_neurites_only():
    ids = np.zeros((6, 8), np.int64)
    ids[:, :4], ids[:, 4:7] = 1, 2  # column 7 unlabelled
    carved = realdata._carve(ids)
    assert (carved[:, 3] == 0).all() and (carved[:, 4] == 0).all()  # both sides of the 1|2 border
    assert (carved[:, :3] == 1).all() and (carved[:, 5:7] == 2).all() and (carved[:, 7] == 0).all()


@pytest.fixture
def small_task(crop):
    test_img, test_inst = make_nuclei((96, 96), n=10, seed=4)
    return realdata.Task("synthetic", crop, [realdata.Crop(test_img, test_inst.astype(np.int32),
                                                           np.ones(test_inst.shape, bool))], "bright")


TINY = {"steps": 2, "base_channels": 4, "depth": 2, "tile_output": 24, "batch_size": 1, "max_seconds": None}


def test_run_one_scores_every_method_on_a_small_task(small_task):
    out = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, unet_overrides=TINY,
                           log=lambda *_: None)
    for method in ("threshold", "forest", "unet", "unet+tta", "unet-plain", "threshold-plain", "forest-plain"):
        assert 0.0 <= out[method]["f1"] <= 1.0 and 0.0 <= out[method]["iou"] <= 1.0, method
    assert out["unet_steps"] == {"unet": 2}
    table = fewlabel.summarise([{"set": "synthetic", **out}])
    assert "| threshold |" in table and "| unet+tta |" in table
    json.dumps(out)  # the --json output is plain JSON


def test_run_one_gates_the_unet_as_the_app_does_and_keeps_the_ungated_row(small_task, tmp_path):
    from scipy import ndimage as ndi

    out = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, log=lambda *_: None,
                           unet_overrides={**TINY, "edge_calibration": False}, dump=tmp_path)  # the gate alone
    gate = out["gate"]
    assert "off" not in gate and gate["kept"]["2"] >= 0.9  # bright synthetic nuclei: the gate is on
    assert 0.0 <= out["unet-nogate"]["f1"] <= 1.0
    saved = np.load(tmp_path / "synthetic-scribbles-0.npz")
    x = normalize(small_task.tests[0].raw)[0].astype(np.float64)
    keep = ndi.gaussian_filter(x, gate["smooth"]) > gate["threshold"]  # by hand, from the stored numbers
    plain, gated = saved["unet-nogate/0"].astype(np.float32), saved["unet/0"].astype(np.float32)
    np.testing.assert_allclose(gated, np.where(keep, plain, 0.0), atol=1e-3)
    assert "| unet-nogate |" in fewlabel.summarise([{"set": "synthetic", **out}])
    off = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, log=lambda *_: None,
                           unet_overrides={**TINY, "intensity_gate": False})
    assert "intensity_gate: false" in off["gate"]["off"] and "unet-nogate" not in off


def test_run_one_calibrates_the_unets_edges_after_the_gate_and_keeps_the_row_without(small_task, tmp_path):
    from labseg.ml.baselines import calibrate_edges_at

    out = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, log=lambda *_: None,
                           unet_overrides={**TINY, "edge_calibration": True}, dump=tmp_path)
    assert out["edges"] == {"on": True} and 0.0 <= out["unet-noedges"]["f1"] <= 1.0
    saved = np.load(tmp_path / "synthetic-scribbles-0.npz")
    own = saved["unet-noedges/0"].astype(np.float32)  # gated, edges as the network drew them
    probs = np.stack([1.0 - own, own])
    info = calibrate_edges_at(probs, normalize(small_task.tests[0].raw), None)
    calibrated = saved["unet/0"].astype(np.float32) > 0.5
    assert info["added"] + info["removed"] > 0 and np.sum(calibrated != (own > 0.5)) > 0  # it moved edges
    assert np.sum(calibrated != (probs[1] > 0.5)) <= 2  # the same edges (the dumps are float16)
    assert "| unet-noedges |" in fewlabel.summarise([{"set": "synthetic", **out}])
    off = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, log=lambda *_: None,
                           unet_overrides=TINY)  # the default, auto, with nothing held out: off
    assert "no held-out labels" in off["edges"]["off"] and "unet-noedges" not in off


def test_run_one_predicts_with_the_normalisation_the_network_was_trained_with(small_task, monkeypatch):
    seen = []
    real = fewlabel.unet_foreground
    monkeypatch.setattr(fewlabel, "unet_foreground", lambda net, x, *a, **k: seen.append(x) or real(net, x, *a, **k))
    fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, log=lambda *_: None,
                     unet_overrides={**TINY, "norm_low": 5.0, "norm_high": 90.0})
    raw = small_task.tests[0].raw
    assert seen and all(np.array_equal(x, normalize(raw, 5.0, 90.0)) for x in seen)
    assert not np.allclose(seen[0], normalize(raw))  # the default percentiles give other values


def rod_rows() -> realdata.Crop:
    """Two rows of rods 2 px apart (a gap a user would paint), labels known everywhere."""
    inst = np.zeros((60, 80), np.int32)
    for k, x0 in enumerate(range(4, 76, 12)):
        inst[5:25, x0:x0 + 10] = k + 1
        inst[27:47, x0:x0 + 10] = k + 7
    return realdata.Crop(np.random.default_rng(0).random((1, 60, 80)).astype(np.float32), inst,
                         np.ones(inst.shape, bool))


def test_lines_are_background_in_gaps_between_nearby_objects_added_to_the_scribbles():
    from scipy import ndimage as ndi

    crop = rod_rows()
    inst = crop.instances
    plain = realdata.scribbles(crop, seed=4, n_strokes=6, radius=2, length=10, bg_margin=3.0)
    lined = realdata.scribbles_with_lines(crop, seed=4, n_lines=4, line_length=10, n_strokes=6, radius=2,
                                          length=10, bg_margin=3.0)
    added = (lined == 1) & (plain == 0)
    assert added.any()
    assert ((lined == plain) | added).all()  # the scribbles are kept, only background is added
    assert (inst[added] == 0).all()  # on background only
    # every added pixel lies in a gap: two different objects within 3 px of it
    hi = ndi.maximum_filter(inst, size=7)
    lo = ndi.minimum_filter(np.where(inst > 0, inst, 10**6), size=7)
    assert ((hi[added] > 0) & (lo[added] < 10**6) & (hi[added] != lo[added])).all()


def test_guided_lines_go_only_where_the_app_points():
    crop = rod_rows()
    inst = crop.instances
    kw = dict(seed=4, n_lines=6, line_length=10, n_strokes=6, radius=2, length=10, bg_margin=3.0)
    plain = realdata.scribbles(crop, seed=4, n_strokes=6, radius=2, length=10, bg_margin=3.0)
    where = np.zeros(inst.shape, bool)
    where[:, :28] = True  # the two left columns of rods
    added = (realdata.scribbles_with_lines(crop, where=where, **kw) == 1) & (plain == 0)
    assert added.any() and where[added].all()
    nowhere = realdata.scribbles_with_lines(crop, where=np.zeros(inst.shape, bool), **kw)
    assert np.array_equal(nowhere, plain)  # nothing to check: no line


def test_guided_ft_fine_tunes_round_one_with_its_own_overrides_and_is_tabulated_apart(small_task, monkeypatch):
    import labseg.ml.train as train

    calls, real_fit = [], train.fit

    def recording_fit(*args, **kwargs):
        net, history = real_fit(*args, **kwargs)
        calls.append((kwargs.get("init"), kwargs["config"].steps, net))
        return net, history

    monkeypatch.setattr(train, "fit", recording_fit)
    quiet = dict(variants=["unet"], threads=1, unet_overrides=TINY, log=lambda *_: None)
    out = fewlabel.run_one(small_task, "guided-ft", 0, finetune_overrides={"steps": 3}, **quiet)
    (init1, steps1, net1), (init2, steps2, _) = calls
    assert init1 is None and steps1 == 2  # round 1: from scratch, the shared overrides
    assert init2 is net1 and steps2 == 3  # round 2: from round 1's network, its own overrides
    assert out["unet_steps"] == {"unet": 3} and out["finetune"] == {"steps": 3}
    calls.clear()
    scratch = fewlabel.run_one(small_task, "guided", 0, finetune_overrides={"steps": 3}, **quiet)
    assert [c[0] for c in calls] == [None, None] and "finetune" not in scratch  # guided: both from scratch
    results = [{"set": "s", **out}, {"set": "s", **{**out, "finetune": {}}}, {"set": "s", **scratch}]
    assert len(fewlabel.merge([results])) == 3
    # --resume skips a planned run only when the file holds it with the same fine-tune overrides
    planned = {"set": "s", "protocol": "guided-ft", "seed": 0, "finetune": {"steps": 3}}
    assert fewlabel.result_key(planned) == fewlabel.result_key(results[0]) != fewlabel.result_key(results[1])
    table = fewlabel.summarise(results)
    assert "guided-ft steps=3 F1@0.5" in table and "| guided-ft F1@0.5" in table and "| guided F1@0.5" in table


def test_edge_strokes_paint_background_where_a_prediction_runs_wide_and_stop_at_the_edge(crop):
    from scipy import ndimage as ndi

    objects = crop.valid & (crop.instances > 0)
    wide = ndi.binary_dilation(objects, iterations=6)  # a prediction with a 6-px halo around every object
    strokes = realdata.edge_strokes(crop, wide, seed=0, radius=2, length=10)
    assert strokes.any()
    assert not (strokes & ~crop.valid).any() and not (strokes & objects).any()
    assert not (strokes & ndi.binary_dilation(objects)).any()  # never the pixel beside an object
    # centred in the halo: every stroke pixel within a stroke's reach of a falsely predicted pixel
    halo = wide & crop.known_background
    assert (ndi.distance_transform_edt(~halo)[strokes] <= 2 + 5).all()
    assert not realdata.edge_strokes(crop, objects, seed=0).any()  # no halo, nothing to paint
    assert np.array_equal(strokes, realdata.edge_strokes(crop, wide, seed=0, radius=2, length=10))


def test_guided_edges_adds_the_edge_strokes_to_the_guided_labels_and_fine_tunes(small_task, monkeypatch):
    import labseg.ml.train as train

    seen, real_fit = [], train.fit

    def recording_fit(image, classes, *args, **kwargs):
        seen.append((classes.copy(), kwargs.get("init")))
        return real_fit(image, classes, *args, **kwargs)

    monkeypatch.setattr(train, "fit", recording_fit)
    quiet = dict(variants=["unet"], threads=1, unet_overrides=TINY, log=lambda *_: None)
    out = fewlabel.run_one(small_task, "guided-edges", 0, **quiet)
    (round1_labels, init1), (round2_labels, init2) = seen
    assert init1 is None and init2 is not None  # round 2 fine-tunes round 1's network
    added = (round2_labels == 1) & (round1_labels == 0)
    assert out["edge_pixels"] <= added.sum() and out["protocol"] == "guided-edges"
    assert not (added & (small_task.train.instances > 0)).any()  # only background is added


def test_run_one_splits_every_method_with_the_projected_intensity_and_keeps_the_plain_rows(small_task, tmp_path):
    from labseg.ml.metrics import f1_at_iou
    from labseg.ml.postprocess import instances_from_probs

    out = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, unet_overrides=TINY,
                           log=lambda *_: None, dump=tmp_path)
    assert out["split_intensity"]["weights"] == [1.0]  # one channel, bright objects
    saved = np.load(tmp_path / "synthetic-scribbles-0.npz")
    crop = small_task.tests[0]
    x = normalize(crop.raw)[0]
    for method in ("threshold", "forest", "unet"):
        fg = saved[f"{method}/0"].astype(np.float32)
        for row, image in ((method, x), (f"{method}-plain", None)):  # by hand: the image itself is the landscape
            pred = instances_from_probs(fg, image=image)
            _, tp, fp, fn = f1_at_iou(pred, crop.instances, 0.5)
            assert (out[row]["tp"], out[row]["fp"], out[row]["fn"]) == (tp, fp, fn), row
    assert "| unet-plain |" in fewlabel.summarise([{"set": "synthetic", **out}])
    off = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, log=lambda *_: None,
                           unet_overrides={**TINY, "intensity_split": False})
    assert "intensity_split: false" in off["split_intensity"]["off"] and "unet-plain" not in off


def test_rescore_scores_the_dumped_foregrounds_again_and_keeps_the_runs_training_times(small_task, tmp_path,
                                                                                      monkeypatch):
    out = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, unet_overrides=TINY,
                           log=lambda *_: None, dump=tmp_path)
    monkeypatch.setitem(realdata.SETS, "synthetic", lambda seed: small_task)
    again = fewlabel.rescore(tmp_path, log=lambda *_: None)
    assert len(again) == 1 and again[0]["rescored"] == "synthetic-scribbles-0.npz"
    for method in ("threshold", "forest", "unet", "unet+tta", "unet-plain", "threshold-plain"):
        assert {k: again[0][method][k] for k in ("tp", "fp", "fn")} == {k: out[method][k] for k in ("tp", "fp", "fn")}
        assert "seconds" not in again[0][method]
    merged = fewlabel.merge([[{"set": "synthetic", **out}], again])
    assert merged[0]["unet"]["seconds"] == out["unet"]["seconds"]  # the run's time, the rescored scores
    plain = fewlabel.rescore(tmp_path, {"intensity_split": False}, log=lambda *_: None)[0]
    assert "unet-plain" not in plain and plain["unet"]["tp"] == out["unet-plain"]["tp"]
    np.savez_compressed(tmp_path / "synthetic-scribbles-0.npz", classes=np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="labels made again differ"):
        fewlabel.rescore(tmp_path, log=lambda *_: None)


def test_run_one_holds_out_the_labels_the_app_would_and_lets_them_choose_the_edge_calibration(small_task, tmp_path,
                                                                                          monkeypatch):
    """``holdout``: every method trains without the app's held-out quarter of the labels of one labelled image
    (``holdout_strip``) and, with ``edge_calibration`` auto, the network's choice is made on those held-out labels
    (their foreground IoU without and with it, by hand here), with both rows beside."""
    from labseg.ml.baselines import EDGE_AUTO_MARGIN, edges_on
    from labseg.ml.metrics import holdout_strip
    from labseg.ml.train import validate_config_overrides

    trained = []
    real_fit = __import__("labseg.ml.train", fromlist=["fit"]).fit
    monkeypatch.setattr("labseg.ml.train.fit", lambda raw, classes, *a, **k: trained.append(classes.copy())
                        or real_fit(raw, classes, *a, **k))
    nets = []
    real_held = fewlabel.held_out_edges
    monkeypatch.setattr(fewlabel, "held_out_edges", lambda net, *a: nets.append(net) or real_held(net, *a))
    out = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, log=lambda *_: None,
                           unet_overrides={**TINY, "edge_calibration": None}, dump=tmp_path, holdout=True)
    labels, _ = fewlabel.labels_for(small_task, "scribbles", 0)
    strip = holdout_strip(labels)
    assert strip is not None and out["holdout"] == strip.describe()
    inside = strip.mask(labels.shape)
    assert len(trained) == 1 and not trained[0][inside].any()
    np.testing.assert_array_equal(trained[0][~inside], labels[~inside])
    x = normalize(small_task.train.raw)
    held = np.where(inside, labels, 0)
    gate, _ = fewlabel.intensity_gate(validate_config_overrides(TINY), x, trained[0], "shape")
    known, truth = held > 0, held >= 2
    ious = []
    for on in (False, True):
        fg = fewlabel.unet_foreground(nets[0], x, gate, edges=on) > 0.5
        ious.append(((fg & truth) & known).sum() / ((fg | truth) & known).sum())
    chosen = out["edges_chosen"]["unet"]
    assert (chosen["iou_fg_without"], chosen["iou_fg_with"]) == pytest.approx(tuple(ious), abs=1e-4)
    assert edges_on(chosen) == (ious[1] > ious[0] + EDGE_AUTO_MARGIN)
    same = "unet+edges" if edges_on(chosen) else "unet-noedges"
    assert out["unet"]["f1"] == out[same]["f1"] and out["unet"]["iou"] == out[same]["iou"]
    table = fewlabel.summarise([{"set": "synthetic", **out}])
    assert "| unet-noedges |" in table and "| unet+edges |" in table
    # the dump of a hold-out run (the labels it trained on) is scored again like any other
    monkeypatch.setitem(realdata.SETS, "synthetic", lambda seed: small_task)
    again = fewlabel.rescore(tmp_path, log=lambda *_: None)[0]
    assert again["holdout"] == out["holdout"] and again["split"] == out["split"]
    for method in ("threshold", "forest", "unet", "unet-noedges", "unet+edges"):
        assert [again[method][k] for k in ("tp", "fp", "fn")] == [out[method][k] for k in ("tp", "fp", "fn")], method


@pytest.fixture
def scribbles_dump(small_task, tmp_path, monkeypatch):
    """One tiny run of every method on ``small_task``'s scribbles, dumped to ``tmp_path`` (registered as the set
    "synthetic" so ``rescore`` finds it): ``(result, saved foregrounds, the test crop, its normalised image)``."""
    out = fewlabel.run_one(small_task, "scribbles", 0, variants=["unet"], threads=1, unet_overrides=TINY,
                           log=lambda *_: None, dump=tmp_path)
    monkeypatch.setitem(realdata.SETS, "synthetic", lambda seed: small_task)
    crop = small_task.tests[0]
    return out, np.load(tmp_path / "synthetic-scribbles-0.npz"), crop, normalize(crop.raw)[0]


def test_the_probability_weight_of_the_instance_step_is_chosen_for_every_method_and_recorded(scribbles_dump,
                                                                                           tmp_path):
    """``--confidence``: every method's foregrounds go through the instance step with the chosen weight (by hand
    here, from the dumped foregrounds), the result records it, and "app" is the app's ``CONFIDENCE_POWER``."""
    import argparse

    from labseg.ml.metrics import f1_at_iou
    from labseg.ml.postprocess import CONFIDENCE_POWER, instances_from_probs

    out, saved, crop, x = scribbles_dump
    assert out["confidence_power"] == CONFIDENCE_POWER
    for power in (None, 2.0):
        again = fewlabel.rescore(tmp_path, log=lambda *_: None, power=power)[0]
        assert again["confidence_power"] == power
        for method in ("threshold", "forest", "unet"):
            pred = instances_from_probs(saved[f"{method}/0"].astype(np.float32), image=x, confidence_power=power)
            _, tp, fp, fn = f1_at_iou(pred, crop.instances, 0.5)
            assert (again[method]["tp"], again[method]["fp"], again[method]["fn"]) == (tp, fp, fn), (power, method)
    assert fewlabel.parse_power("none") is None and fewlabel.parse_power("app") == "app"
    assert fewlabel.parse_power("2") == 2.0
    for bad in ("0", "-1", "17", "x"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            fewlabel.parse_power(bad)


def test_the_seed_probability_of_the_instance_step_is_chosen_for_every_method_and_recorded(scribbles_dump,
                                                                                           tmp_path):
    """``--seed-prob``: every method's objects are dropped where their probability never reaches it (by hand here,
    from the dumped foregrounds: the objects of the plain step whose peak is below it go), the result records it,
    and "app" is the app's ``SEED_PROB``."""
    import argparse

    from labseg.ml.metrics import f1_at_iou
    from labseg.ml.postprocess import SEED_PROB, instances_from_probs

    out, saved, crop, x = scribbles_dump
    assert out["seed_prob"] == SEED_PROB
    peaks = sorted(float(fg[pred == i].max()) for fg in (saved[f"{m}/0"].astype(np.float32)
                                                         for m in ("threshold", "forest", "unet"))
                   for pred in [instances_from_probs(fg, image=x)] for i in np.unique(pred[pred > 0]))
    level = (peaks[0] + peaks[-1]) / 2  # between the least and the most sure object: some go, some stay
    assert 0.5 < peaks[0] < level < peaks[-1], peaks
    dropped = 0
    for seed_prob in (None, level):
        again = fewlabel.rescore(tmp_path, log=lambda *_: None, seed_prob=seed_prob)[0]
        assert again["seed_prob"] == seed_prob
        for method in ("threshold", "forest", "unet"):
            fg = saved[f"{method}/0"].astype(np.float32)
            pred = instances_from_probs(fg, image=x, seed_prob=None)
            if seed_prob is not None:  # the objects whose largest probability stays below it, dropped by hand
                for i in np.unique(pred[pred > 0]):
                    if fg[pred == i].max() < seed_prob:
                        pred[pred == i] = 0
                        dropped += 1
            _, tp, fp, fn = f1_at_iou(pred, crop.instances, 0.5)
            assert (again[method]["tp"], again[method]["fp"], again[method]["fn"]) == (tp, fp, fn), (seed_prob, method)
    assert dropped > 0  # the case is not empty: some method has objects below 0.97
    assert fewlabel.parse_seed_prob("none") is None and fewlabel.parse_seed_prob("app") == "app"
    assert fewlabel.parse_seed_prob("0.9") == 0.9
    for bad in ("0.5", "1.1", "-1", "x"):
        with pytest.raises((argparse.ArgumentTypeError, ValueError)):
            fewlabel.parse_seed_prob(bad)
