"""The synthetic nuclei and scribbles that tests, the demo and the few-label evaluation are built on."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from labseg.ml.synthetic import classes_from_instances, make_nuclei, scribbles


def test_nuclei_are_reproducible_touching_and_in_range():
    a, inst = make_nuclei((128, 128), seed=5)
    b, inst_b = make_nuclei((128, 128), seed=5)
    assert np.array_equal(a, b) and np.array_equal(inst, inst_b)
    assert a.dtype == np.uint16 and a.shape == (1, 128, 128) and inst.max() >= 5
    # touching: some pixel of one nucleus has a 4-neighbour in another nucleus
    right = (inst[:, :-1] > 0) & (inst[:, 1:] > 0) & (inst[:, :-1] != inst[:, 1:])
    down = (inst[:-1] > 0) & (inst[1:] > 0) & (inst[:-1] != inst[1:])
    assert right.any() or down.any()
    # nuclei are brighter than background on average
    assert a[0][inst > 0].mean() > 2 * a[0][inst == 0].mean()
    assert set(np.unique(classes_from_instances(inst))) == {1, 2}


@pytest.mark.parametrize("margin", [None, 1.0, 2.0])
def test_scribbles_never_cross_borders_and_keep_background_strokes_off_nuclei(margin):
    _, inst = make_nuclei((160, 160), seed=2)
    s = scribbles(inst, 15, radius=3, length=20, seed=4, bg_margin=margin)
    dist = ndi.distance_transform_edt(inst == 0)
    expected = 3 + 3 if margin is None else margin
    assert (s == 1).any() and (s == 2).any()
    assert dist[s == 1].min() > expected  # background strokes keep their distance to every nucleus
    assert (inst[s == 2] > 0).all()  # object strokes stay inside nuclei
    assert 0.005 < (s > 0).mean() < 0.15
