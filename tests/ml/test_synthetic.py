"""The synthetic nuclei and scribbles that tests, the demo and the few-label evaluation are built on."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from labseg.ml.synthetic import classes_from_instances, make_nuclei, scribbles, separation_line, touching_pairs


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


def test_separation_lines_follow_the_shared_border_of_touching_nuclei():
    inst = np.zeros((20, 30), np.int32)
    inst[5:15, 3:10] = 1
    inst[5:15, 10:18] = 2  # touches 1 along x = 9 | 10
    inst[5:15, 22:27] = 3  # alone
    assert touching_pairs(inst) == [(1, 2)]
    line = separation_line(inst, np.random.default_rng(0), length=100)
    expected = np.zeros_like(line)
    expected[5:15, 9:11] = True  # the last column of 1 and the first of 2
    assert np.array_equal(line, expected)
    short = separation_line(inst, np.random.default_rng(1), length=4)
    assert short.sum() <= 2 * 5 and short[:, 9:11].sum() == short.sum()
    assert separation_line(np.where(inst == 2, 0, inst), np.random.default_rng(0)) is None


def test_scribbles_with_separations_paint_background_between_touching_nuclei():
    _, inst = make_nuclei((160, 160), seed=2)
    plain = scribbles(inst, 15, radius=3, length=20, seed=4, bg_margin=2.0)
    s = scribbles(inst, 15, radius=3, length=20, seed=4, bg_margin=2.0, separations=3)
    on_nuclei = (s == 1) & (inst > 0)
    assert on_nuclei.any() and not ((plain == 1) & (inst > 0)).any()
    # every background pixel on a nucleus has a 4-neighbour in another nucleus (a shared border)
    ys, xs = np.nonzero(on_nuclei)
    pad = np.pad(inst, 1)
    for y, x in zip(ys, xs):
        around = {pad[y, x + 1], pad[y + 2, x + 1], pad[y + 1, x], pad[y + 1, x + 2]}
        assert any(v > 0 and v != inst[y, x] for v in around), (y, x)
    assert (inst[s == 2] > 0).all()
