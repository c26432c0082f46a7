"""Which predicted objects a user should look at first: those that look like several objects merged.

Few strokes rarely say where two touching objects part, so a network trained on them (and a threshold, and
the forest) merges touching objects; on the real sets of ``bench.fewlabel`` those merges are most of what
separates a scribble-trained model from a densely trained one, and a few short background lines painted in
the gaps fix them (the ``lines`` protocol). This module finds the predicted objects where such a line is
most likely needed, so the annotate page can show them one by one.

An object looks merged when it is not convex (a neck or notch between two parts: its *solidity*, area over
convex-hull area, is low) and large for its kind, compared with the other objects of the prediction (the
median area) and with the painted object radius when the model has one; or, on an annotated image, when
it holds most of two or more separately painted objects (strokes, painted instances), whatever its size:
the case of a colony predicted as one object, where no object is typical. ``suspect_merges`` applies the
rule and returns the objects worst first. Measured on the real sets (threshold and forest predictions
from scribbles and painted objects, ``bench.fewlabel`` labels; README "Objects to check"), it points at
objects that match no true object 28-89 % of the time (the share of all objects: 20-76 %) and covers
34-78 % of the true objects lost in merges, at 3-5 objects per 256 px test image: an order for review, not
a verdict.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

#: Below this solidity an object is not convex enough to be one round or rod-like object ...
SOLIDITY = 0.9
#: ... when it is also at least this many times the typical object's area (one irregular object is not).
MIN_AREA_RATIO = 1.5
#: Objects this many times larger than the typical one are suspect whatever their shape.
AREA_RATIO = 3.0
#: At most this many suspects are returned (the worst first); the total is reported beside them.
MAX_SUSPECTS = 50


def _convex_area(mask: np.ndarray) -> float:
    """Area of the convex hull of a 2-D mask's pixels (pixel squares, so a filled rectangle's hull is its
    area): the hull of the pixels' corner points, by the shoelace formula."""
    from scipy.spatial import ConvexHull, QhullError

    ys, xs = np.nonzero(mask)
    if len(ys) < 3:
        return float(len(ys))
    # each pixel contributes its four corners; only the boundary pixels can be hull vertices
    edge = mask & ~ndi.binary_erosion(mask)
    ys, xs = np.nonzero(edge)
    pts = np.concatenate([np.stack([ys + dy, xs + dx], 1) for dy in (0, 1) for dx in (0, 1)]).astype(np.float64)
    try:
        return float(ConvexHull(pts).volume)  # 2-D "volume" is the area
    except QhullError:  # all points on a line
        return float(mask.sum())


def solidity(mask: np.ndarray) -> float:
    """Area over convex-hull area of a 2-D mask (1 for a convex object)."""
    area = float(np.count_nonzero(mask))
    return min(1.0, area / max(_convex_area(np.asarray(mask, bool)), 1.0)) if area else 0.0


def typical_area(areas: np.ndarray, radius: float | None = None) -> float:
    """The area of one object: the median object area, or, when the model knows the painted objects'
    radius, at most the area of a disc of twice that radius (a merged colony can be the median object)."""
    typical = float(np.median(areas)) if len(areas) else 0.0
    if radius is not None and radius > 0:
        disc = float(np.pi * (2.0 * radius) ** 2)
        typical = min(typical, disc) if typical > 0 else disc
    return typical


def painted_objects(classes: np.ndarray | None, instances: np.ndarray | None = None) -> np.ndarray | None:
    """One id per separately painted object of an annotation (int32): its painted instances (instance
    mode), and each 4-connected stroke of an object class (values >= 2) outside them. None without any."""
    if classes is None:
        return None
    classes = np.asarray(classes)
    out = np.zeros(classes.shape, np.int32)
    if instances is not None and np.asarray(instances).any():
        out[...] = instances
    strokes, n = ndi.label((classes >= 2) & (out == 0), structure=ndi.generate_binary_structure(2, 1),
                           output=np.int32)
    if n:
        top = int(out.max())
        out[strokes > 0] = strokes[strokes > 0] + top
    return out if out.any() else None


def holds_painted(instances: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """Per predicted id, how many painted objects have more than half of their pixels in it. One painted
    object's box at a time, so memory is a box's, not the image's."""
    pred = np.asarray(instances)
    pid = np.asarray(painted)
    if pred.shape != pid.shape:
        raise ValueError("painted objects and predicted instances differ in shape")
    held = np.zeros(int(pred.max()) + 1 if pred.size else 1, np.int64)
    for k, box in enumerate(ndi.find_objects(pid), start=1):
        if box is None:
            continue
        inside = pred[box][pid[box] == k]
        counts = np.bincount(inside)
        best = int(np.argmax(counts))
        if best > 0 and 2 * counts[best] > len(inside):
            held[best] += 1
    return held


def suspect_merges(instances: np.ndarray, *, radius: float | None = None, groups: np.ndarray | None = None,
                   painted: np.ndarray | None = None, by_shape: bool = True, limit: int = MAX_SUSPECTS) -> dict:
    """The objects of ``instances`` (2-D ids, 0 = none) that look like several merged, worst first.

    ``radius``: the painted objects' radius when the model has one (bounds the typical area). ``groups``:
    the group (object class) of each id, ``groups[id]``; the typical area is then each group's own. An
    object is suspect when its area is at least ``AREA_RATIO`` times the typical area, or at least
    ``MIN_AREA_RATIO`` times with a solidity below ``SOLIDITY``, or (``painted``: ids of the separately
    painted objects of the image's annotation, ``painted_objects``) when it holds most of two or more of
    them, whatever its size: the user said they are separate. ``by_shape`` False: only that last rule
    (objects enclosed by painted membranes have any shape and size). Returns ``{"total": n, "objects": [{"id",
    "bbox": [x, y, w, h], "area", "solidity", "area_ratio", "reason"}, ...]}`` with at most ``limit``
    objects (``total`` counts them all). A group of fewer than 3 objects without a radius has no typical
    object: nothing in it is suspect. Solidity is measured only on objects large enough to matter."""
    labels = np.asarray(instances)
    if labels.ndim != 2:
        raise ValueError(f"instances must be 2-D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu" or (labels.size and labels.min() < 0):
        raise ValueError("instances must be non-negative integer ids")
    top = int(labels.max()) if labels.size else 0
    areas = np.zeros(top + 1, np.float64)
    for row in range(0, labels.shape[0], 1024):  # a row block at a time: no int64 copy of a large map
        areas += np.bincount(labels[row:row + 1024].ravel(), minlength=top + 1)
    areas[0] = 0
    ids = np.flatnonzero(areas)
    group_of = np.zeros(len(areas), np.int64)
    if groups is not None:
        g = np.asarray(groups, np.int64)[: len(areas)]
        group_of[: len(g)] = g
    ratio = np.zeros(len(areas))
    for group in np.unique(group_of[ids]) if by_shape else ():
        members = ids[group_of[ids] == group]
        if len(members) < 3 and not radius:
            continue
        ratio[members] = areas[members] / max(typical_area(areas[members], radius), 1.0)
    held = np.zeros(len(areas), np.int64)
    if painted is not None:
        h = holds_painted(labels, painted)[: len(areas)]
        held[: len(h)] = h
    candidates = ids[(ratio[ids] >= MIN_AREA_RATIO) | (held[ids] >= 2)]
    boxes = ndi.find_objects(labels, max_label=int(candidates.max()) if len(candidates) else 0)
    picked = []
    for i in candidates:
        box = boxes[i - 1]
        sol = solidity(labels[box] == i) if ratio[i] < AREA_RATIO and held[i] < 2 else None
        if ratio[i] >= AREA_RATIO or held[i] >= 2 or sol < SOLIDITY:
            picked.append((i, box, sol))
    # the painted evidence first (the user said so), then the largest
    picked.sort(key=lambda t: (-min(held[t[0]], 2), -ratio[t[0]], -areas[t[0]]))
    objects = []
    for i, box, sol in picked[:max(0, int(limit))]:
        if sol is None:
            sol = solidity(labels[box] == i)
        reasons = []
        if held[i] >= 2:
            reasons.append(f"holds {held[i]} separately painted objects")
        if ratio[i] >= AREA_RATIO:
            reasons.append(f"{ratio[i]:.1f}x the typical object's area")
        elif sol < SOLIDITY and ratio[i] >= MIN_AREA_RATIO:
            reasons.append(f"{ratio[i]:.1f}x the typical object's area and not convex")
        reason = "; ".join(reasons)
        rows, cols = box
        objects.append({"id": int(i), "bbox": [cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start],
                        "area": int(areas[i]), "solidity": round(float(sol), 3),
                        "area_ratio": round(float(ratio[i]), 2), "reason": reason})
    return {"total": len(picked), "objects": objects}
