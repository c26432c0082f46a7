"""Large images: instances per connected component equal the whole-image post-processing; memory stays small."""
import tracemalloc

import numpy as np
import pytest

from apps.inference.runner import instances_by_component
from labseg.ml.io import normalize
from labseg.ml.postprocess import instances_from_probs
from labseg.ml.synthetic import make_nuclei


def threshold_probs(pixels: np.ndarray) -> np.ndarray:
    x = normalize(pixels)[0]
    p = 1.0 / (1.0 + np.exp(-25.0 * (np.maximum(x, 0) - 0.35)))
    return np.stack([1 - p, p]).astype(np.float32)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """The same objects, whatever their ids: a one-to-one map between the labels of a and b."""
    if ((a > 0) != (b > 0)).any():
        return False
    pairs = set(zip(a[a > 0].tolist(), b[b > 0].tolist()))
    return len(pairs) == len(np.unique(a[a > 0])) == len(np.unique(b[b > 0]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instances_by_component_equal_the_whole_image_call(seed):
    pixels, _ = make_nuclei((320, 288), seed=seed, touching=0.8)
    probs = threshold_probs(pixels)
    whole = instances_from_probs(probs)
    parts, object_class = instances_by_component(probs)
    assert whole.max() > 20  # many objects, many touching
    assert same_partition(whole, parts)
    assert parts.max() == len(np.unique(parts[parts > 0])) == len(object_class) - 1  # numbered 1..N
    assert (object_class[1:] == 1).all()


def test_instances_by_component_need_a_fraction_of_the_memory():
    tile, _ = make_nuclei((400, 400), seed=3)
    probs = threshold_probs(np.tile(tile, (1, 3, 3)))  # 1200 x 1200, ~1000 nuclei
    peaks = []
    for fn in (instances_from_probs, instances_by_component):
        tracemalloc.start()
        fn(probs)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    whole, parts = peaks
    pixels = probs.shape[1] * probs.shape[2]
    assert parts < 16 * pixels < whole  # bytes per pixel: ~10 by component, ~100 for the whole image


def test_stored_maps_are_decoded_once_then_memory_mapped(tmp_path):
    from apps.annotate.masks import encode_png
    from apps.inference.maps import encode_tiff
    from apps.inference.rendering import read_map

    labels = np.arange(300 * 250, dtype=np.uint32).reshape(300, 250) % 70001  # ids above 65535: uint32
    grey = (np.arange(300 * 250) % 256).astype(np.uint8).reshape(300, 250)
    (tmp_path / "instances.tif").write_bytes(encode_tiff(labels))
    (tmp_path / "classes.png").write_bytes(encode_png(grey))
    for name, want in (("instances.tif", labels), ("classes.png", grey)):
        first = read_map(str(tmp_path / name))
        again = read_map(str(tmp_path / name))
        assert first.dtype == want.dtype and np.array_equal(first, want) and np.array_equal(again, want)
        assert isinstance(again.base, np.memmap) or isinstance(again, np.memmap)
        assert (tmp_path / f"{name}.cache.npy").is_file()


def test_a_version_trained_on_painted_membranes_splits_by_boundaries_whole_or_by_component():
    from skimage.measure import label as reference_label

    from apps.inference.runner import _painted_split, instances_of

    pixels, _ = make_nuclei((200, 200), seed=4, touching=0.8)
    probs = threshold_probs(pixels)
    from scipy import ndimage as ndi

    reference = reference_label(ndi.binary_fill_holes(probs[1] > 0.5), connectivity=1)
    unfilled, _ = instances_by_component(probs, split="boundaries")
    assert unfilled.max() > 5 and same_partition(np.where(unfilled > 0, reference, 0), unfilled)
    # the whole-image call has the same objects and also fills the thin background between them
    # (fill_boundaries), which the per-component one (images too large for a whole-image watershed) leaves
    filled, _ = instances_of(probs, split="boundaries")
    assert same_partition(unfilled, np.where(unfilled > 0, filled, 0)) and filled.max() == unfilled.max()
    assert (filled > 0).sum() > (unfilled > 0).sum()
    # touching nuclei stay merged without the shape split; the watershed splits them
    assert instances_of(probs, split="boundaries")[0].max() < instances_of(probs)[0].max()
    # the split a version was trained with comes from its provenance; unknown or missing: shape
    assert _painted_split({"extra": {"provenance": {"split": "boundaries"}}}) == "boundaries"
    assert _painted_split({"extra": {"provenance": {"split": "rm -rf"}}}) == "shape"
    assert _painted_split({}) == "shape"
