"""U-Net training: it learns, it stops when asked, it refuses mismatched init weights, checkpoints round-trip."""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from labseg.ml.io import normalize
from labseg.ml.synthetic import classes_from_instances, make_nuclei, scribbles
from labseg.ml.tiling import predict_tiled
from labseg.ml.train import (
    TrainConfig,
    TrainingCancelled,
    apply_normalization,
    crf_loss,
    fit,
    load_checkpoint,
    pseudo_labels,
    save_checkpoint,
    validate_config_overrides,
)
from labseg.ml.unet import UNet

torch.set_num_threads(1)

TINY = dict(base_channels=6, depth=2, dropout=0.0, batch_size=2, tile_output=40, max_seconds=None, num_threads=1,
            device="cpu", lr=5e-3, warmup_steps=5)


def foreground_iou(model, image, instances):
    probs = predict_tiled(model, normalize(image), tile_output=64)
    pred, gt = probs[1] > 0.5, instances > 0
    return (pred & gt).sum() / max((pred | gt).sum(), 1)


@pytest.fixture(scope="module")
def nuclei():
    image, instances = make_nuclei((96, 96), radius=(6.0, 9.0), seed=3, blur=1.0, noise=0.02)
    held_out, held_instances = make_nuclei((96, 96), radius=(6.0, 9.0), seed=4, blur=1.0, noise=0.02)
    return image, instances, held_out, held_instances


def test_fit_on_synthetic_nuclei_lowers_loss_and_raises_iou(nuclei):
    image, instances, held_out, held_instances = nuclei
    classes = classes_from_instances(instances)
    torch.manual_seed(0)
    untrained = UNet(1, 2, base_channels=6, depth=2, dropout=0.0).eval()
    model, history = fit(image, classes, instances, config=TrainConfig(steps=80, **TINY))
    losses = history["loss"]
    assert history["steps"] == 80 and history["stop_reason"] == "steps"
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    before, after = foreground_iou(untrained, held_out, held_instances), foreground_iou(model, held_out, held_instances)
    assert after > 0.6 and after > before + 0.2


def test_progress_returning_false_or_raising_cancels(nuclei):
    image, instances, *_ = nuclei
    classes = classes_from_instances(instances)
    calls = []

    def stop_at_3(step, loss, **info):
        calls.append((step, loss, info["steps"]))
        return step < 3

    _, history = fit(image, classes, config=TrainConfig(steps=50, log_every=1, **TINY), progress=stop_at_3)
    assert history["steps"] == 3 and history["stop_reason"] == "cancelled"
    assert [c[0] for c in calls] == [1, 2, 3] and all(np.isfinite(c[1]) and c[2] == 50 for c in calls)

    def raise_at_2(step, loss, **info):
        if step == 4:
            raise TrainingCancelled()

    _, history = fit(image, classes, config=TrainConfig(steps=50, log_every=2, **TINY), progress=raise_at_2)
    assert history["steps"] == 4 and history["stop_reason"] == "cancelled"


def test_same_seed_reproduces_training_exactly(nuclei):
    image, instances, *_ = nuclei
    classes = classes_from_instances(instances)
    cfg = TrainConfig(steps=4, **TINY)
    a, ha = fit(image, classes, instances, config=cfg)
    b, hb = fit(image, classes, instances, config=cfg)
    assert ha["loss"] == hb["loss"]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c, hc = fit(image, classes, instances, config=TrainConfig(**{**cfg.to_dict(), "seed": 1}))
    assert hc["loss"] != ha["loss"]


def test_precomputed_weight_maps_train_exactly_like_the_computed_ones_and_are_checked(nuclei):
    from labseg.ml.weights import weight_map

    image, instances, *_ = nuclei
    classes = classes_from_instances(instances)
    classes[:, :20] = 0  # some unlabelled pixels
    cfg = TrainConfig(steps=3, **TINY)
    wmap = weight_map(classes, instances, w0=cfg.w0, sigma=cfg.sigma, balance=cfg.balance)
    _, computed = fit(image, classes, instances, config=cfg)
    _, given = fit(image, classes, instances, config=cfg, weights=[wmap])
    assert given["loss"] == computed["loss"]
    _, flat = fit(image, classes, instances, config=cfg, weights=[(classes > 0).astype(np.float32)])
    assert flat["loss"] != computed["loss"]  # the maps are really used
    with pytest.raises(ValueError, match="0 on unlabelled"):
        fit(image, classes, instances, config=cfg, weights=[np.ones_like(wmap)])
    with pytest.raises(ValueError, match="weight map"):
        fit(image, classes, instances, config=cfg, weights=[wmap[:-1]])


def test_init_with_other_channels_or_classes_raises_clear_error(nuclei):
    image, instances, *_ = nuclei
    classes = classes_from_instances(instances)
    cfg = TrainConfig(steps=1, **TINY)
    with pytest.raises(ValueError, match="expects 2 input channel"):
        fit(image, classes, config=cfg, init=UNet(2, 2, base_channels=6, depth=2).state_dict())
    with pytest.raises(ValueError, match="predicts 3 classes, the masks need 2"):
        fit(image, classes, config=cfg, init=UNet(1, 3, base_channels=6, depth=2).state_dict())
    with pytest.raises(ValueError, match="not a LabSeg U-Net"):
        fit(image, classes, config=cfg, init={"weight": torch.zeros(1)})


def test_fine_tuning_starts_from_init_and_keeps_its_architecture(nuclei):
    image, instances, *_ = nuclei
    classes = classes_from_instances(instances)
    parent = UNet(1, 2, base_channels=5, depth=3, dropout=0.0)
    cfg = TrainConfig(steps=1, **{**TINY, "lr": 1e-12, "warmup_steps": 0})
    child, history = fit(image, classes, config=cfg, init=parent.state_dict())
    assert child.config["base_channels"] == 5 and child.depth == 3
    for (name, p), q in zip(parent.state_dict().items(), child.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-6, msg=name)


def test_checkpoint_round_trip_gives_identical_outputs(nuclei, tmp_path):
    image, instances, held_out, _ = nuclei
    classes = classes_from_instances(instances)
    cfg = TrainConfig(steps=3, **TINY)
    model, history = fit(image, classes, config=cfg)
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, cfg, history["normalization"], ["background", "nucleus"], history,
                    {"note": np.int64(3)})
    loaded, ckpt = load_checkpoint(path)
    x = apply_normalization(held_out, ckpt["normalization"])
    np.testing.assert_array_equal(x, normalize(held_out, 1.0, 99.8))
    assert np.array_equal(predict_tiled(loaded, x, tile_output=48), predict_tiled(model, x, tile_output=48))
    assert ckpt["class_names"] == ["background", "nucleus"] and ckpt["train_config"]["steps"] == 3
    assert ckpt["history"]["loss"] == history["loss"] and ckpt["extra"] == {"note": 3}
    assert ckpt["model_config"] == model.config
    fine, _ = fit(image, classes, config=TrainConfig(steps=1, **TINY), init=path)  # a path works as init
    assert fine.config == model.config


def test_checkpoint_loader_rejects_other_files(tmp_path):
    path = tmp_path / "x.pt"
    torch.save({"a": 1}, path)
    with pytest.raises(ValueError, match="not a LabSeg U-Net checkpoint"):
        load_checkpoint(path)


def test_validate_config_overrides_accepts_good_and_rejects_bad_values():
    cfg = validate_config_overrides({"steps": 12, "lr": 1, "optimizer": "sgd", "max_seconds": None, "elastic": False})
    assert (cfg.steps, cfg.lr, cfg.optimizer, cfg.max_seconds, cfg.elastic) == (12, 1.0, "sgd", None, False)
    assert cfg.base_channels == TrainConfig().base_channels
    for bad, message in [
        ({"stepz": 3}, "unknown training option.*stepz"),
        ({"steps": "many"}, "steps must be an integer"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"steps": 0}, "steps must be between 1 and"),
        ({"lr": -1}, "lr must be between 0.0 and 10.0"),
        ({"lr": 0}, "lr must be > 0"),
        ({"optimizer": "rmsprop"}, "optimizer must be"),
        ({"elastic": "yes"}, "elastic must be true or false"),
        ({"device": "tpu"}, "device must be one of"),
        ({"batch_size": None}, "batch_size must not be null"),
        ({"lr": float("nan")}, "lr must be a finite number"),
    ]:
        with pytest.raises(ValueError, match=message):
            validate_config_overrides(bad)


def test_fit_rejects_unlabelled_or_mismatched_inputs():
    image = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ValueError, match="no labelled pixels"):
        fit(image, np.zeros((32, 32), np.uint8), config=TrainConfig(steps=1, **TINY))
    with pytest.raises(ValueError, match="do not match"):
        fit(image, np.zeros((32, 31), np.uint8), config=TrainConfig(steps=1, **TINY))


def naive_crf_loss(probs, image, sigma, radius):
    """Loop over every pixel pair at the documented offsets; mean per offset, then over offsets."""
    b, k, h, w = probs.shape
    per_offset = []
    d = 1
    while d <= radius:
        for dy, dx in ((0, d), (d, 0), (d, d), (d, -d)):
            terms = []
            for n in range(b):
                for y in range(h):
                    for x in range(w):
                        y2, x2 = y + dy, x + dx
                        if 0 <= y2 < h and 0 <= x2 < w:
                            a = np.exp(-np.sum((image[n, :, y, x] - image[n, :, y2, x2]) ** 2) / (2 * sigma**2))
                            terms.append(a * (1 - np.dot(probs[n, :, y, x], probs[n, :, y2, x2])))
            per_offset.append(np.mean(terms))
        d *= 2
    return np.mean(per_offset)


def test_crf_loss_matches_pairwise_definition_and_prefers_boundaries_on_edges():
    rng = np.random.default_rng(0)
    probs = torch.softmax(torch.from_numpy(rng.normal(size=(2, 3, 9, 11))), 1)
    image = torch.from_numpy(rng.normal(size=(2, 2, 9, 11)))
    got = crf_loss(probs, image, sigma=0.7, radius=4).item()
    assert got == pytest.approx(naive_crf_loss(probs.numpy(), image.numpy(), 0.7, 4), rel=1e-9)
    # a step edge in the image at column 10: a label boundary there costs less than one 4 px away
    image = torch.zeros(1, 1, 16, 20)
    image[..., 10:] = 1.0
    on_edge, off_edge = torch.zeros(1, 2, 16, 20), torch.zeros(1, 2, 16, 20)
    on_edge[:, 1, :, 10:], on_edge[:, 0, :, :10] = 1, 1
    off_edge[:, 1, :, 6:], off_edge[:, 0, :, :6] = 1, 1
    assert crf_loss(on_edge, image, 0.15, 8) < 0.1 * crf_loss(off_edge, image, 0.15, 8)


def _two_touching_squares_probs():
    """A hand-built prediction: two touching squares (foreground 0.95), a faint blob (0.5), background 0.02."""
    fg = np.full((20, 30), 0.02, np.float32)
    fg[4:14, 3:10] = 0.95
    fg[4:14, 10:17] = 0.95
    fg[4:14, 22:27] = 0.5  # unsure: stays unlabelled
    image = np.where(fg > 0.9, 1.0, 0.0).astype(np.float32)
    image[4:14, 9:11] = 0.3  # a dim line where the two squares touch, as between two nuclei
    return np.stack([1 - fg, fg]), image


def test_pseudo_labels_keep_user_labels_and_put_background_between_touching_objects():
    probs, image = _two_touching_squares_probs()
    user = np.zeros((20, 30), np.uint8)
    user[0, 0] = 2  # the user says object here (the network said background): the user wins
    user[6, 5] = 1  # and background inside the first square
    classes, instances = pseudo_labels(probs, user, image[None])
    assert classes[0, 0] == 2 and classes[6, 5] == 1
    assert (classes[15:, :] == 1).all()  # confident background
    assert (classes[4:14, 22:27] == 0).all()  # the unsure blob stays unlabelled
    # two objects, split where they touch: the columns on both sides of the border are background
    ids_left, ids_right = set(np.unique(instances[4:14, 3:9])) - {0}, set(np.unique(instances[4:14, 11:17])) - {0}
    assert len(ids_left) == 1 and len(ids_right) == 1 and ids_left != ids_right
    border = (instances == 0) & (classes == 1) & (probs[1] > 0.9) & (user == 0)
    assert border.any() and set(np.nonzero(border)[1]) <= {8, 9, 10, 11}  # next to the touching line
    assert (instances[classes != 2] == 0).all() and (classes[instances > 0] == 2).all()
    # edge=1: the outermost object pixels (the squares' outline) stay unlabelled; the inside keeps its label
    edged, _ = pseudo_labels(probs, np.zeros_like(user), image[None], edge=1)
    outline = np.zeros_like(edged, bool)
    outline[4, 3:17] = outline[13, 3:17] = outline[4:14, 3] = outline[4:14, 16] = True
    outline[:, 9:11] = False  # where the squares touch, the separation border (background) wins
    assert (edged[outline] == 0).all() and (edged[4:14, 9:11] == 1).all()
    assert (edged[6:12, 5:8] == 2).all() and (edged[15:, :] == 1).all()


def test_self_training_runs_a_pseudo_label_round_on_scribbles_only(nuclei):
    image, instances, *_ = nuclei
    sparse = scribbles(instances, 8, radius=2, seed=1)
    seen = []
    cfg = TrainConfig(steps=40, log_every=10, self_training=1, **TINY)  # an option: off by default
    _, history = fit(image, sparse, config=cfg, progress=lambda step, loss, **info: seen.append((step, info["steps"])))
    assert cfg.self_training == 1 and history["steps"] == 80 and len(history["rounds"]) == 2
    assert [r["pseudo_labels"] for r in history["rounds"]] == [False, True]
    # the pseudo-labelled round trains on far more pixels than the strokes
    assert history["rounds"][1]["labelled_fraction"] > 2 * history["rounds"][0]["labelled_fraction"]
    assert [s for s, _ in seen] == list(range(10, 81, 10)) and {t for _, t in seen} == {80}
    # a time budget is shared: the first round stops at its half, the second still trains
    _, timed = fit(image, sparse, config=TrainConfig(steps=10**6, self_training=1, **{**TINY, "max_seconds": 0.5}))
    assert timed["stop_reason"] == "time" and [r["pseudo_labels"] for r in timed["rounds"]] == [False, True]
    assert all(r["steps"] > 0 for r in timed["rounds"]) and timed["rounds"][0]["seconds"] < 0.5
    # dense labels or self_training=0: one round
    _, dense = fit(image, classes_from_instances(instances), config=TrainConfig(steps=6, self_training=1, **TINY))
    _, off = fit(image, sparse, config=TrainConfig(steps=6, self_training=0, **TINY))
    assert dense["steps"] == 6 and off["steps"] == 6 and len(dense["rounds"]) == len(off["rounds"]) == 1


def test_threshold_prior_labels_only_clear_unlabelled_pixels_with_its_weight():
    from labseg.ml.train import _prepare_samples, _with_threshold_prior

    image = np.full((1, 60, 60), 0.1, np.float32)
    image[0, 10:25, 10:25] = image[0, 35:50, 35:50] = 0.9  # two bright squares on a dark background
    labels = np.zeros((60, 60), np.uint8)
    labels[15:20, 15:20] = 2  # a stroke inside the first square
    labels[2:5, 40:55] = 1  # and one in the background
    config = TrainConfig(**TINY)
    [plain] = _prepare_samples([image], [labels], None, config, normalized=True)
    [prior] = _with_threshold_prior([plain], 0.25)
    painted = labels > 0
    assert (prior.targets[painted] == plain.targets[painted]).all()
    assert (prior.weights[painted] == plain.weights[painted]).all()  # the user's labels keep their weights
    assert (prior.targets[38:47, 38:47] == 1).all() and (prior.weights[38:47, 38:47] == 0.25).all()  # the other square
    assert (prior.targets[53:, :] == 0).all() and (prior.weights[53:, :] == 0.25).all()  # clear background
    assert (prior.weights[34, 40:45] == 0).all()  # the blurred edge is unsure: stays unlabelled
    assert (prior.labels == labels).all() and prior.by_class[0].size == plain.by_class[0].size  # crops: strokes
    # several object classes painted: only background is filled in (the threshold cannot tell classes)
    two = labels.copy()
    two[20:22, 20:22] = 3
    [multi] = _with_threshold_prior(_prepare_samples([image], [two], None, config, normalized=True), 0.25)
    assert (multi.weights[38:47, 38:47] == 0).all() and (multi.weights[53:, :] == 0.25).all()
    # a switch on the config, bounded, and fit trains with it
    _, history = fit(image, labels, config=TrainConfig(steps=3, prior_weight=0.3, **TINY))
    assert history["steps"] == 3
    with pytest.raises(ValueError, match="prior_weight"):
        validate_config_overrides({"prior_weight": 1.5})


def test_the_prior_is_on_by_default_only_where_membranes_were_painted(nuclei):
    from labseg.ml.train import MEMBRANE_PRIOR_WEIGHT

    image, instances, *_ = nuclei
    strokes = scribbles(instances, 8, radius=3, seed=1)
    _, history = fit(image, strokes, config=TrainConfig(steps=2, **TINY))
    assert TrainConfig().prior_weight is None and history["prior_weight"] == 0.0
    # background painted as 1-px lines between the nuclei (membranes), plus strokes inside two of them
    membranes = np.zeros(instances.shape, np.uint8)
    grown = ndi.grey_dilation(instances, size=3)
    membranes[(grown != instances) & (instances > 0)] = 1
    membranes[(instances == instances.max()) & (membranes == 0)] = 2
    _, history = fit(image, membranes, config=TrainConfig(steps=2, **TINY))
    assert history["prior_weight"] == MEMBRANE_PRIOR_WEIGHT
    _, history = fit(image, membranes, config=TrainConfig(steps=2, **{**TINY, "prior_weight": 0.0}))
    assert history["prior_weight"] == 0.0  # an explicit value wins


def test_training_crops_grow_to_hold_three_object_diameters_and_keep_the_pixels_per_step():
    from labseg.ml.train import CROP_DIAMETERS, SIZED_TILE_MAX, sized_crops

    base = TrainConfig()  # 64-px output crops, batches of 4; depth 3: inputs of 156 px
    assert (base.tile_output, base.batch_size, base.depth, CROP_DIAMETERS, SIZED_TILE_MAX) == (64, 4, 3, 3, 256)
    # 3 diameters of radius 26 = 156 px: they fit (Huh7's 17.9-px cells too)
    assert sized_crops(base, None) is base and sized_crops(base, 17.9) is base and sized_crops(base, 26.0) is base
    # by hand: the output grows by 8 px until the input (input_size_for, depth 3: 72 -> 164, 88 -> 180,
    # 104 -> 196, 152 -> 244, 256 -> 348) holds 6 radii; batch 4 * (156 / input)^2, rounded
    grown = sized_crops(base, 30.0)  # 180 px: output 88; 4 * (156 / 180)^2 = 3.00
    assert (grown.tile_output, grown.batch_size) == (88, 3) and (base.tile_output, base.batch_size) == (64, 4)
    assert grown.steps == base.steps and grown.seed == base.seed  # nothing else changes
    for radius, expected in ((26.1, (72, 4)), (32.0, (104, 3)), (40.0, (152, 2)), (500.0, (256, 1))):
        # 156.6 -> 164: 3.62; 192 -> 196: 2.53; 240 -> 244: 1.63; capped at 256 px, 0.80: at least one crop
        sized = sized_crops(base, radius)
        assert (sized.tile_output, sized.batch_size) == expected, radius
    chosen = validate_config_overrides({"tile_output": 300})  # larger than the cap already: left as it is
    assert sized_crops(chosen, 500.0) is chosen
    assert sized_crops(base, float("nan")) is base
