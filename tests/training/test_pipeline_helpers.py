"""Small pure helpers of the training pipeline (no database)."""
from apps.training.pipeline import whole_object_ids


def test_ids_drawn_whole_come_from_polygon_and_fill_strokes_and_malformed_entries_are_ignored():
    strokes = [
        {"tool": "polygon", "class": 2, "instance": 3, "points": [[0, 0], [5, 0], [5, 5]]},
        {"tool": "fill", "class": 2, "instance": 9, "points": [[2, 2]]},
        {"tool": "brush", "class": 2, "instance": 4, "points": [[1, 1]]},  # a brush stroke: judged by its mask
        {"tool": "polygon", "class": 2},  # no instance (not instance mode)
        {"tool": "polygon", "instance": "7"}, {"tool": "fill", "instance": True}, {"tool": "fill", "instance": -2},
        {"tool": "polygon", "instance": 2**40}, "not a stroke", None, 12,
    ]
    assert whole_object_ids(strokes) == frozenset({3, 9})
    for bad in (None, {}, "strokes", 5):
        assert whole_object_ids(bad) == frozenset()
