"""The command line trains and predicts on real files, with the same numbers as the Python API."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image
from scipy import ndimage as ndi

from labseg.ml.baselines import calibrate_edges_at
from labseg.ml.synthetic import classes_from_instances, make_nuclei, scribbles
from labseg.ml.tiling import predict_tiled
from labseg.ml.train import apply_normalization, load_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "labseg.ml", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_train_then_predict_writes_labels_and_probabilities(tmp_path):
    image, instances = make_nuclei((48, 56), radius=(5.0, 8.0), seed=5)
    tifffile.imwrite(tmp_path / "a.tif", image[0])
    Image.fromarray(scribbles(instances, 8, radius=3, seed=1)).save(tmp_path / "a_classes.png")  # split "shape"
    Image.fromarray(instances.astype(np.uint16)).save(tmp_path / "a_inst.png")
    model = tmp_path / "model.pt"
    done = run_cli("train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "a_classes.png",
                   "--instances", tmp_path / "a_inst.png", "--out", model, "--steps", 3, "--threads", 1,
                   "--device", "cpu", "--class-names", "background,nucleus",
                   "--set", "base_channels=4", "--set", "depth=2", "--set", "tile_output=24", "--set", "batch_size=1",
                   "--set", "self_training=1", "--set", "edge_calibration=true")
    assert done.returncode == 0, done.stderr
    # strokes only, self-training on: 3 steps, then a round of 3 more; the bar grows to 6 and runs to the end
    assert "6/6" in done.stderr and "saved" in done.stderr
    net, ckpt = load_checkpoint(model)
    assert ckpt["class_names"] == ["background", "nucleus"] and ckpt["history"]["steps"] == 6
    assert net.config["base_channels"] == 4 and ckpt["extra"]["images"] == [str(tmp_path / "a.tif")]

    done = run_cli("predict", "--model", model, "--image", tmp_path / "a.tif", "--out", tmp_path / "labels.tif",
                   "--probs", tmp_path / "probs.tif", "--classes", tmp_path / "classes.png", "--tile", 16,
                   "--device", "cpu", "--threads", 1)
    assert done.returncode == 0, done.stderr
    probs = tifffile.imread(tmp_path / "probs.tif")
    x = apply_normalization(image, ckpt["normalization"])
    expected = predict_tiled(net, x, tile_output=48)
    # the intensity gate the training chose (bright nuclei painted: on), applied by hand from its numbers
    gate = ckpt["extra"]["intensity_gate"]
    assert "off" not in gate and gate["kept"]["2"] >= 0.9 and gate["weights"] == [1.0]
    keep = ndi.gaussian_filter(x[0].astype(np.float64), gate["smooth"]) > gate["threshold"]
    assert 0 < keep.mean() < 1
    gated = expected.copy()
    gated[0][~keep], gated[1][~keep] = 1.0, 0.0
    # then the edge calibration the training asked for (on: objects split by shape), at the measured radius
    assert ckpt["extra"]["edge_calibration"] == {"on": True} and "edges: {" in done.stderr
    calibrated = gated.copy()
    calibrate_edges_at(calibrated, x, None)
    np.testing.assert_allclose(probs, calibrated, atol=1e-4)
    done = run_cli("predict", "--model", model, "--image", tmp_path / "a.tif", "--out", tmp_path / "gated.tif",
                   "--probs", tmp_path / "gated_probs.tif", "--no-edges", "--tile", 16, "--device", "cpu",
                   "--threads", 1)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(tifffile.imread(tmp_path / "gated_probs.tif"), gated, atol=1e-4)
    done = run_cli("predict", "--model", model, "--image", tmp_path / "a.tif", "--out", tmp_path / "plain.tif",
                   "--probs", tmp_path / "plain_probs.tif", "--no-gate", "--no-edges", "--tile", 16, "--device", "cpu",
                   "--threads", 1)
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(tifffile.imread(tmp_path / "plain_probs.tif"), expected, atol=1e-4)
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == (48, 56) and labels.dtype == np.uint16
    # the instances given are strokes with ids, not objects painted whole (nothing painted around them): they do
    # not set the object size, and the grey values take part in the split (bright nuclei, one channel: weight +1,
    # the normalised image itself)
    assert ckpt["extra"]["intensity_split"] == {"weights": [1.0]}
    from labseg.ml.postprocess import instances_from_probs

    assert np.array_equal(labels, instances_from_probs(probs, image=x[0]))
    assert not np.array_equal(labels, instances_from_probs(probs))  # the grey values changed the split here
    # the same nuclei painted whole (dense labels): their size sets the split, the grey values do not
    Image.fromarray(classes_from_instances(instances)).save(tmp_path / "a_dense.png")
    done = run_cli("train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "a_dense.png",
                   "--instances", tmp_path / "a_inst.png", "--out", tmp_path / "dense.pt", "--steps", 1,
                   "--threads", 1, "--device", "cpu", "--set", "base_channels=4", "--set", "depth=2",
                   "--set", "tile_output=24", "--set", "batch_size=1")
    assert done.returncode == 0, done.stderr
    assert "painted whole" in load_checkpoint(tmp_path / "dense.pt")[1]["extra"]["intensity_split"]["off"]
    # a checkpoint whose training stored an intensity-aware split (weight 1: the image itself) and a radius
    import torch

    ckpt["extra"]["intensity_split"] = {"weights": [1.0]}
    torch.save(ckpt, tmp_path / "split.pt")
    for flag, image in (([], x[0]), (["--plain-split"], None)):
        done = run_cli("predict", "--model", tmp_path / "split.pt", "--image", tmp_path / "a.tif", "--out",
                       tmp_path / "s.tif", "--radius", 6, *flag, "--tile", 16, "--device", "cpu", "--threads", 1)
        assert done.returncode == 0, done.stderr
        assert np.array_equal(tifffile.imread(tmp_path / "s.tif"), instances_from_probs(probs, radius=6.0, image=image))
    classes = np.asarray(Image.open(tmp_path / "classes.png"))
    assert np.array_equal(classes, probs.argmax(0) + 1)


def test_bad_arguments_exit_2_with_a_message(tmp_path):
    image, instances = make_nuclei((32, 32), seed=1)
    tifffile.imwrite(tmp_path / "a.tif", image[0])
    Image.fromarray(classes_from_instances(instances)[:16]).save(tmp_path / "bad.png")
    done = run_cli("train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "bad.png", "--out",
                   tmp_path / "m.pt", "--steps", 1, "--quiet")
    assert done.returncode == 2 and "do not match" in done.stderr
    done = run_cli("train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "bad.png", "--out",
                   tmp_path / "m.pt", "--set", "stepz=3", "--quiet")
    assert done.returncode == 2 and "unknown training option" in done.stderr
    done = run_cli("predict", "--model", tmp_path / "missing.pt", "--image", tmp_path / "a.tif", "--out",
                   tmp_path / "x.tif", "--quiet")
    assert done.returncode == 2 and "error:" in done.stderr
    assert not (tmp_path / "m.pt").exists()


def test_fewlabel_evaluation_runs_end_to_end_and_prints_a_table(tmp_path, capsys):
    import json

    from bench import fewlabel_synthetic as fewlabel

    raw, instances = fewlabel.realistic_crop(7)
    again, _ = fewlabel.realistic_crop(7)
    assert raw.dtype == np.uint16 and np.array_equal(raw, again)
    labelled = (fewlabel.scribble_mask(instances, 1) > 0).mean()
    assert 0.02 < labelled < 0.09
    tiny = json.dumps({"steps": 2, "base_channels": 4, "depth": 2, "tile_output": 24, "batch_size": 1})
    assert fewlabel.main(["--seeds", "1", "--test", "1", "--threads", "1", "--unet", tiny,
                          "--json", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    for method in ("otsu", "forest", "unet"):
        assert f"\n{method}" in out
    result = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert 0 <= result["otsu"]["f1"] <= 1 and result["unet_steps"] == 2  # self-training is off by default


def test_an_object_diameter_sizes_the_crops_and_the_split_and_is_stored_for_predict(tmp_path):
    from labseg.ml.postprocess import instances_from_probs

    image, instances = make_nuclei((48, 56), radius=(5.0, 8.0), seed=5)
    tifffile.imwrite(tmp_path / "a.tif", image[0])
    Image.fromarray(scribbles(instances, 8, radius=3, seed=1)).save(tmp_path / "a_classes.png")
    model = tmp_path / "model.pt"
    common = ("--steps", 1, "--threads", 1, "--device", "cpu", "--quiet", "--set", "base_channels=4",
              "--set", "depth=2")
    done = run_cli("train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "a_classes.png", "--out", model,
                   "--object-diameter", 40, *common)
    assert done.returncode == 0, done.stderr
    _, ckpt = load_checkpoint(model)
    # radius 20, depth 2: inputs of 3 diameters = 120 px (output 80; 64 had inputs of 104), batches of
    # round(4 * (104 / 120)^2) = 3
    assert (ckpt["train_config"]["tile_output"], ckpt["train_config"]["batch_size"]) == (80, 3)
    assert ckpt["extra"]["object_size"] == 20.0 and ckpt["extra"]["object_radius"] is None
    done = run_cli("predict", "--model", model, "--image", tmp_path / "a.tif", "--out", tmp_path / "l.tif",
                   "--probs", tmp_path / "p.tif", "--no-gate", "--tile", 16, "--device", "cpu", "--threads", 1)
    assert done.returncode == 0, done.stderr
    probs = tifffile.imread(tmp_path / "p.tif")
    landscape = apply_normalization(image, ckpt["normalization"])[0] * ckpt["extra"]["intensity_split"]["weights"][0]
    assert np.array_equal(tifffile.imread(tmp_path / "l.tif"), instances_from_probs(probs, image=landscape, size=20.0))
    # --object-diameter at predict time wins over the stored one
    done = run_cli("predict", "--model", model, "--image", tmp_path / "a.tif", "--out", tmp_path / "m.tif",
                   "--no-gate", "--object-diameter", 12, "--tile", 16, "--device", "cpu", "--threads", 1)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(tifffile.imread(tmp_path / "m.tif"), instances_from_probs(probs, image=landscape, size=6.0))
    assert not np.array_equal(tifffile.imread(tmp_path / "m.tif"), tifffile.imread(tmp_path / "l.tif"))  # it tells
    # a given tile_output is kept; a diameter out of bounds is refused before anything is trained
    done = run_cli("train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "a_classes.png", "--out",
                   tmp_path / "t.pt", "--object-diameter", 40, "--set", "tile_output=24", *common)
    assert done.returncode == 0 and load_checkpoint(tmp_path / "t.pt")[1]["train_config"]["tile_output"] == 24
    done = run_cli("train", "--image", tmp_path / "a.tif", "--labels", tmp_path / "a_classes.png", "--out",
                   tmp_path / "n.pt", "--object-diameter", 2, *common)
    assert done.returncode == 2 and "between 4 and 1000" in done.stderr and not (tmp_path / "n.pt").exists()
