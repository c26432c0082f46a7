"""Segmentation metrics of the ISBI 2012 EM challenge and the cell tracking challenge (numpy/scipy).

- :func:`pixel_error`: fraction of pixels whose binary label (``label > 0``) differs.
- :func:`rand_error`: ``1 - Rand index`` over all pixel pairs (``sklearn.metrics.rand_score``), from a
  contingency table in O(N) memory.
- :func:`adapted_rand_error`: the ISBI 2012 form, ``1 - max F-score`` of the foreground-restricted
  Rand index, equal to ``skimage.metrics.adapted_rand_error(gt, pred)[0]``.
- :func:`warping_error`: Jain et al. 2010 (CVPR, "Boundary learning by optimization with topological
  constraints"): the ground truth is warped towards the prediction by flipping only *simple* pixels
  (whose flip keeps the topology), then the disagreements left are topological errors, classified as
  splits, mergers, additions, removals and holes, as in the ISBI evaluation (Fiji's WarpingError).
- :func:`iou`, :func:`iou_per_class`, :func:`f1_at_iou` (one-to-one instance matching), :func:`f1_per_class`
  (the same per object class, for projects with several), and
  :func:`score_all`, the one call the training/inference apps make.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

STRUCT4 = ndi.generate_binary_structure(2, 1)
STRUCT8 = ndi.generate_binary_structure(2, 2)


# --- helpers --------------------------------------------------------------------------------
def _pair(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != gt.shape:
            raise ValueError(f"mask shape {mask.shape} != ground truth shape {gt.shape}")
        return pred[mask], gt[mask]
    return pred.ravel(), gt.ravel()


def _dense_ids(x: np.ndarray) -> tuple[np.ndarray, int]:
    """Relabel any integer ids to 0..k-1 (sorted order); returns (ids intp, k)."""
    values, inverse = np.unique(x, return_inverse=True)
    return inverse.ravel().astype(np.intp), len(values)


def contingency(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero cells of the contingency table of two flat labelings.

    Returns ``(ia, ib, n)``: dense row index, dense column index and count of every non-empty cell,
    plus nothing else (row/column sums follow from ``np.bincount``). O(N) memory, no k_a x k_b table.
    """
    ia, ka = _dense_ids(a)
    ib, kb = _dense_ids(b)
    key = ia.astype(np.int64) * kb + ib
    cells, n = np.unique(key, return_counts=True)
    return cells // kb, cells % kb, n.astype(np.int64)


def _pairs(n: np.ndarray) -> float:
    n = n.astype(np.float64)
    return float(np.sum(n * (n - 1.0) / 2.0))


# --- pixel and clustering metrics --------------------------------------------------------------
def pixel_error(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of pixels (within ``mask``) where ``pred > 0`` differs from ``gt > 0``."""
    p, g = _pair(pred, gt, mask)
    if p.size == 0:
        return 0.0
    return float(np.mean((p > 0) != (g > 0)))


def rand_error(pred_labels: np.ndarray, gt_labels: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``1 - RI``: the fraction of pixel pairs on which the two labelings disagree (same / different)."""
    p, g = _pair(pred_labels, gt_labels, mask)
    n = p.size
    if n < 2:
        return 0.0
    _, _, nij = contingency(g, p)
    a = np.bincount(_dense_ids(g)[0])
    b = np.bincount(_dense_ids(p)[0])
    total = n * (n - 1) / 2.0
    same_both = _pairs(nij)
    disagree = _pairs(a) + _pairs(b) - 2.0 * same_both
    return float(disagree / total)


def adapted_rand_scores(pred_labels: np.ndarray, gt_labels: np.ndarray) -> tuple[float, float, float]:
    """``(error, precision, recall)`` of the ISBI 2012 / SNEMI3D adapted Rand index; gt label 0 ignored.

    Over pixels with ``gt != 0``, counting ordered pairs of distinct pixels: with contingency counts
    n_ij, gt sizes a_i and pred sizes b_j (N pixels), T = sum n_ij^2 - N, A = sum a_i^2 - N,
    B = sum b_j^2 - N; precision = T / B (pairs the prediction joins that are truly together), recall
    = T / A, error = 1 - 2T / (A + B) (1 - F1). NaNs when undefined (no gt foreground, or only
    one-pixel segments in both). Note skimage returns the precision/recall pair in the other order.
    """
    p, g = _pair(pred_labels, gt_labels)
    keep = g != 0
    p, g = p[keep], g[keep]
    n = float(g.size)
    _, _, nij = contingency(g, p) if g.size else (None, None, np.zeros(0, np.int64))
    a = np.bincount(_dense_ids(g)[0]).astype(np.float64) if g.size else np.zeros(0)
    b = np.bincount(_dense_ids(p)[0]).astype(np.float64) if g.size else np.zeros(0)
    t = float(np.sum(nij.astype(np.float64) ** 2)) - n
    sa, sb = float(np.sum(a * a)) - n, float(np.sum(b * b)) - n
    nan = float("nan")
    precision = t / sb if sb > 0 else nan
    recall = t / sa if sa > 0 else nan
    error = 1.0 - 2.0 * t / (sa + sb) if sa + sb > 0 else nan
    return error, precision, recall


def adapted_rand_error(pred_labels: np.ndarray, gt_labels: np.ndarray) -> float:
    """ISBI 2012 Rand error: ``skimage.metrics.adapted_rand_error(gt, pred)[0]`` (see above)."""
    return adapted_rand_scores(pred_labels, gt_labels)[0]


# --- IoU and instance F1 -------------------------------------------------------------------------
def iou(pred_binary: np.ndarray, gt_binary: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Intersection over union of ``pred > 0`` and ``gt > 0``; 1.0 when both are empty."""
    p, g = _pair(pred_binary, gt_binary, mask)
    p, g = p > 0, g > 0
    union = int(np.count_nonzero(p | g))
    return 1.0 if union == 0 else float(np.count_nonzero(p & g) / union)


def iou_per_class(
    pred_classes: np.ndarray, gt_classes: np.ndarray, classes, mask: np.ndarray | None = None
) -> dict[int, float | None]:
    """IoU of ``pred == c`` and ``gt == c`` for every ``c`` in ``classes`` (within ``mask``).

    ``None`` for a class that appears in neither (undefined, not perfect).
    """
    p, g = _pair(pred_classes, gt_classes, mask)
    out: dict[int, float | None] = {}
    for c in classes:
        pc, gc = p == c, g == c
        union = int(np.count_nonzero(pc | gc))
        out[int(c)] = None if union == 0 else float(np.count_nonzero(pc & gc) / union)
    return out


def instance_iou_pairs(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """IoU of every overlapping (pred object, gt object) pair; 0 is background in both.

    Returns ``(pred_index, gt_index, iou, n_pred, n_gt)`` with dense object indices.
    """
    p, g = _pair(pred, gt)
    pid, kp = _dense_ids(p)
    gid, kg = _dense_ids(g)
    p_bg = int(np.searchsorted(np.unique(p), 0)) if (p == 0).any() else -1
    g_bg = int(np.searchsorted(np.unique(g), 0)) if (g == 0).any() else -1
    area_p = np.bincount(pid, minlength=kp)
    area_g = np.bincount(gid, minlength=kg)
    key = pid.astype(np.int64) * kg + gid
    cells, inter = np.unique(key, return_counts=True)
    ip, ig = cells // kg, cells % kg
    keep = (ip != p_bg) & (ig != g_bg)
    ip, ig, inter = ip[keep], ig[keep], inter[keep]
    ious = inter / (area_p[ip] + area_g[ig] - inter)

    def compact(idx: np.ndarray, bg: int) -> np.ndarray:  # drop the background index from the numbering
        return idx - (idx > bg) if bg >= 0 else idx

    n_pred = kp - (1 if p_bg >= 0 else 0)
    n_gt = kg - (1 if g_bg >= 0 else 0)
    return compact(ip, p_bg), compact(ig, g_bg), ious, n_pred, n_gt


def f1_at_iou(
    pred_instances: np.ndarray, gt_instances: np.ndarray, threshold: float = 0.5
) -> tuple[float, int, int, int]:
    """Instance F1 with one-to-one matching of objects whose IoU is ``> threshold``.

    Returns ``(f1, tp, fp, fn)``. For ``threshold >= 0.5`` a match is unique (two disjoint objects
    cannot both overlap one object by more than half of the union); below, matches are chosen by the
    Hungarian algorithm maximising the number of matches, then the total IoU. F1 = 1 when both are
    empty.
    """
    ip, ig, ious, n_pred, n_gt = instance_iou_pairs(pred_instances, gt_instances)
    ok = ious > threshold
    ip, ig, ious = ip[ok], ig[ok], ious[ok]
    if threshold >= 0.5:
        tp = int(ok.sum())
    elif len(ious) == 0:
        tp = 0
    else:
        rows, r_inv = np.unique(ip, return_inverse=True)
        cols, c_inv = np.unique(ig, return_inverse=True)
        score = np.zeros((len(rows), len(cols)))
        score[r_inv, c_inv] = 1.0 + ious  # any match beats none; ties broken by IoU
        r, c = linear_sum_assignment(score, maximize=True)
        tp = int(np.count_nonzero(score[r, c] > 0))
    fp, fn = n_pred - tp, n_gt - tp
    f1 = 1.0 if n_pred + n_gt == 0 else 2.0 * tp / (2.0 * tp + fp + fn)
    return f1, tp, fp, fn


# --- warping error (Jain et al. 2010) ---------------------------------------------------------
# neighbour offsets in ring order (N, NE, E, SE, S, SW, W, NW); bit k of a code = neighbour k is fg
_RING = ((-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1))


def _simple_lut(fg_connectivity: int) -> np.ndarray:
    """``lut[code]``: is the centre of this 3x3 neighbourhood a simple point (2-D, fg/bg = 4/8 or 8/4)?

    A point is simple iff exactly one fg component of the punctured neighbourhood is adjacent to it
    (under the fg connectivity) and exactly one bg component is adjacent to it (under the other one).
    """
    s_fg = STRUCT4 if fg_connectivity == 4 else STRUCT8
    s_bg = STRUCT8 if fg_connectivity == 4 else STRUCT4
    lut = np.zeros(256, bool)
    for code in range(256):
        fg = np.zeros((3, 3), bool)
        for k, (dy, dx) in enumerate(_RING):
            fg[1 + dy, 1 + dx] = bool(code >> k & 1)
        bg = ~fg
        bg[1, 1] = False

        def touching(mask: np.ndarray, struct: np.ndarray) -> int:
            lab, _ = ndi.label(mask, struct)
            adj = struct & mask  # neighbours adjacent to the centre under this connectivity
            return len(set(lab[adj].tolist()) - {0})

        lut[code] = touching(fg, s_fg) == 1 and touching(bg, s_bg) == 1
    return lut


_LUTS = {4: _simple_lut(4), 8: _simple_lut(8)}


@dataclass
class WarpingResult:
    """Outcome of :func:`warping_error`. ``error`` = pixels in topological-error clusters / all pixels."""

    error: float
    error_pixels: int
    splits: int
    mergers: int
    additions: int
    removals: int
    holes: int
    mismatch_before: int
    mismatch_after: int
    warped: np.ndarray | None = None

    @property
    def topological_errors(self) -> int:
        return self.splits + self.mergers + self.additions + self.removals + self.holes

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("warped")
        d["topological_errors"] = self.topological_errors
        return d


def warp_simple_points(source: np.ndarray, target: np.ndarray, fg_connectivity: int = 4) -> np.ndarray:
    """Flip simple pixels of binary ``source`` where it disagrees with ``target`` until none is left.

    Pixels of one parity class ``(y % 2, x % 2)`` are never 8-neighbours of each other, so all simple
    mismatches of one class are flipped at once (each stays simple after the others' flips: its
    neighbourhood does not change); the four classes take turns until none has a pixel to examine.
    The image is padded with background (outside is background).
    """
    lut = _LUTS[fg_connectivity]
    h, w = source.shape
    W = np.pad(source.astype(bool), 1).ravel()
    T = np.pad(target.astype(bool), 1).ravel()
    stride = w + 2
    offsets = np.array([dy * stride + dx for dy, dx in _RING], np.intp)
    weights = (1 << np.arange(8)).astype(np.int32)

    # only pixels whose 3x3 neighbourhood changed since they were last examined can have become simple:
    # each phase examines its queued ("dirty") mismatches, flips the simple ones and queues their
    # mismatched neighbours, so the total work is O(mismatches + 8 * flips), not O(sweeps * mismatches)
    mis = np.flatnonzero(W != T)
    ph = (mis // stride % 2) * 2 + (mis % stride % 2)
    queues = [mis[ph == k] for k in range(4)]
    idle = 0
    k = 0
    while idle < 4:
        cand = queues[k]
        queues[k] = cand[:0]
        if len(cand):
            cand = np.unique(cand)
            cand = cand[W[cand] != T[cand]]
        if len(cand):
            codes = (W[cand[:, None] + offsets[None, :]].astype(np.int32) * weights).sum(axis=1)
            simple = cand[lut[codes]]
        else:
            simple = cand
        if len(simple):
            W[simple] = T[simple]
            nb = (simple[:, None] + offsets[None, :]).ravel()
            nb = nb[W[nb] != T[nb]]
            nph = (nb // stride % 2) * 2 + (nb % stride % 2)
            for j in range(4):
                if j != k:
                    queues[j] = np.concatenate([queues[j], nb[nph == j]])
            idle = 0
        else:
            idle += 1
        k = (k + 1) % 4
    return W.reshape(h + 2, w + 2)[1:-1, 1:-1].copy()


def _pieces(region: np.ndarray, struct: np.ndarray) -> int:
    return int(ndi.label(region, struct)[1])


def _euler(img: np.ndarray, fg_connectivity: int) -> int:
    """Euler number x 4 of the 2x2 quads inside ``img`` (Gray 1971 bit-quads): 4 (objects - holes).

    Differences of this between two images that agree outside ``img`` equal 4x the global change,
    because only quads containing a changed pixel differ and all of them lie inside the window.
    """
    a, b, c, d = img[:-1, :-1], img[:-1, 1:], img[1:, :-1], img[1:, 1:]
    n = a.astype(np.int8) + b + c + d
    q1 = int(np.count_nonzero(n == 1))
    q3 = int(np.count_nonzero(n == 3))
    qd = int(np.count_nonzero((n == 2) & (a == d)))
    return q1 - q3 + 2 * qd if fg_connectivity == 4 else q1 - q3 - 2 * qd


def _classify(warped: np.ndarray, target: np.ndarray, fg_connectivity: int) -> tuple[dict[str, int], int]:
    """Classify each connected cluster of ``warped != target`` by how flipping it changes topology.

    Missing fg (target bg where warped fg): removes a whole object -> removal, cuts one into several
    -> split, else a change of the background (a hole made or opened) -> hole. Extra fg (target fg
    where warped bg): touches no object -> addition, joins several -> merger, else a background change
    (a hole filled or closed off) -> hole. The background change is read from the change of the
    Euler number (computed locally), so no global relabelling per cluster is needed. Clusters whose
    flip changes no component count are not topological errors. Returns the counts and the number of
    pixels in error clusters.
    """
    s_fg = STRUCT4 if fg_connectivity == 4 else STRUCT8
    counts = dict(splits=0, mergers=0, additions=0, removals=0, holes=0)
    err_pixels = 0
    wp = np.pad(warped, 1)  # outside is background, as in the warp
    tp = np.pad(target.astype(bool), 1)
    fg_lab, _ = ndi.label(wp, s_fg)
    fg_boxes = ndi.find_objects(fg_lab)

    def pieces_without(lab: np.ndarray, boxes, comp: int, cy: np.ndarray, cx: np.ndarray, struct) -> int:
        """Number of components of component ``comp`` once the cluster pixels (cy, cx) are removed."""
        box = boxes[comp - 1]
        rest = lab[box] == comp
        inside = (cy >= box[0].start) & (cy < box[0].stop) & (cx >= box[1].start) & (cx < box[1].stop)
        rest[cy[inside] - box[0].start, cx[inside] - box[1].start] = False
        return _pieces(rest, struct)

    def euler_change(grown: tuple[slice, slice], local: np.ndarray) -> int:
        """Change of the Euler number (objects - holes) when the cluster is flipped (local bit-quads)."""
        before = wp[grown]
        return _euler(before ^ local, fg_connectivity) - _euler(before, fg_connectivity)

    for extra in (False, True):
        clusters, _ = ndi.label((tp & ~wp) if extra else (wp & ~tp), STRUCT8)
        for k, box in enumerate(ndi.find_objects(clusters), start=1):
            grown = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
            local = clusters[grown] == k
            ly, lx = np.nonzero(local)
            cy, cx = ly + grown[0].start, lx + grown[1].start
            kind = None
            if extra:
                near = ndi.binary_dilation(local, s_fg) & ~local
                touched = set(np.unique(fg_lab[grown][near]).tolist()) - {0}
                if not touched:
                    kind = "additions"
                elif len(touched) > 1:
                    kind = "mergers"
                elif euler_change(grown, local) != 0:  # one object, so the background changed
                    kind = "holes"
            else:
                pieces = [pieces_without(fg_lab, fg_boxes, a, cy, cx, s_fg)
                          for a in set(np.unique(fg_lab[cy, cx]).tolist()) - {0}]
                if any(p == 0 for p in pieces):
                    kind = "removals"
                elif any(p > 1 for p in pieces):
                    kind = "splits"
                elif euler_change(grown, local) != 0:
                    kind = "holes"
            if kind is not None:
                counts[kind] += 1
                err_pixels += len(cy)
    return counts, err_pixels


def warping_error(
    pred_binary: np.ndarray, gt_binary: np.ndarray, *, fg_connectivity: int = 4, return_warped: bool = False
) -> WarpingResult:
    """Warping error of Jain et al. 2010 as in the ISBI 2012 evaluation.

    The ground truth (``gt > 0``) is warped towards the prediction (``pred > 0``) by flipping simple
    points only (:func:`warp_simple_points`), so the warped ground truth keeps the ground truth's
    topology while matching the prediction wherever a non-topological (boundary) difference allows.
    What is left is topological disagreement; its clusters are classified (splits, mergers,
    additions, removals, holes: named from the prediction's point of view, e.g. a split = the
    prediction cuts one true object in two). ``fg_connectivity`` 4 (objects 4-connected, background
    8-connected: a one-pixel diagonal border separates cells, as for ISBI membranes) or 8.
    """
    if fg_connectivity not in (4, 8):
        raise ValueError(f"fg_connectivity must be 4 or 8, got {fg_connectivity}")
    pred, gt = np.asarray(pred_binary), np.asarray(gt_binary)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"need two 2-D images of one shape, got {pred.shape} and {gt.shape}")
    p, g = pred > 0, gt > 0
    warped = warp_simple_points(g, p, fg_connectivity)
    counts, err_pixels = _classify(warped, p, fg_connectivity)
    return WarpingResult(
        error=err_pixels / max(p.size, 1), error_pixels=err_pixels, **counts,
        mismatch_before=int(np.count_nonzero(p != g)), mismatch_after=int(np.count_nonzero(warped != p)),
        warped=warped if return_warped else None,
    )


# --- everything at once -----------------------------------------------------------------------
def _components(fg: np.ndarray) -> np.ndarray:
    return ndi.label(fg, STRUCT4)[0]


def score_all(
    pred_classes: np.ndarray,
    pred_instances: np.ndarray | None,
    gt_classes: np.ndarray,
    gt_instances: np.ndarray | None,
    labelled_mask: np.ndarray | None = None,
) -> dict:
    """All metrics for one image, JSON-ready (floats / ints / None, never NaN).

    Classes: 0 unlabelled, 1 background, 2.. object classes; foreground = class >= 2. Pixel metrics
    (pixel error, accuracy, IoU per class, foreground IoU) use labelled pixels only (``labelled_mask``,
    default ``gt_classes > 0``). Instance and topology metrics (Rand, adapted Rand, warping, F1 at IoU
    0.5) need a dense ground truth (every pixel labelled); otherwise they are listed in ``skipped``
    with the reason. Missing instance images are replaced by connected components of the foreground.
    """
    pred_classes, gt_classes = np.asarray(pred_classes), np.asarray(gt_classes)
    if pred_classes.shape != gt_classes.shape:
        raise ValueError(f"prediction shape {pred_classes.shape} != ground truth shape {gt_classes.shape}")
    mask = gt_classes > 0 if labelled_mask is None else np.asarray(labelled_mask, bool) & (gt_classes > 0)
    n_lab = int(mask.sum())
    out: dict = {"n_pixels": int(mask.size), "n_labelled": n_lab, "skipped": {}}
    pred_fg, gt_fg = pred_classes >= 2, gt_classes >= 2
    if n_lab == 0:
        for name in ("pixel_error", "accuracy", "iou_fg", "iou_per_class", "mean_iou"):
            out["skipped"][name] = "no labelled ground-truth pixels"
    else:
        out["pixel_error"] = pixel_error(pred_fg, gt_fg, mask)
        out["accuracy"] = float(np.mean(pred_classes[mask] == gt_classes[mask]))
        out["iou_fg"] = iou(pred_fg, gt_fg, mask)
        classes = sorted(int(c) for c in np.unique(gt_classes[mask]))
        per = iou_per_class(pred_classes, gt_classes, classes, mask)
        out["iou_per_class"] = {str(c): v for c, v in per.items()}
        vals = [v for v in per.values() if v is not None]
        out["mean_iou"] = float(np.mean(vals)) if vals else None
    dense_names = ("rand_error", "adapted_rand_error", "warping_error", "f1_iou50")
    if n_lab < mask.size:
        reason = f"ground truth is sparse ({n_lab} of {mask.size} pixels labelled); needs a dense mask"
        for name in dense_names:
            out["skipped"][name] = reason
        return out
    gi = gt_instances if gt_instances is not None else _components(gt_fg)
    pi = pred_instances if pred_instances is not None else _components(pred_fg)
    gi = np.where(gt_fg, gi, 0) if gt_instances is not None else gi
    pi = np.where(pred_fg, pi, 0) if pred_instances is not None else pi
    out["instances_from"] = {
        "gt": "instances" if gt_instances is not None else "connected components",
        "pred": "instances" if pred_instances is not None else "connected components",
    }
    out["rand_error"] = rand_error(pi, gi)
    are = adapted_rand_error(pi, gi) if gt_fg.any() else float("nan")
    if np.isfinite(are):
        out["adapted_rand_error"] = are
    else:
        out["skipped"]["adapted_rand_error"] = "undefined: ground truth has no object larger than one pixel"
    warp = warping_error(pred_fg, gt_fg)
    out["warping_error"] = warp.error
    out["warping"] = warp.as_dict()
    f1, tp, fp, fn = f1_at_iou(pi, gi, 0.5)
    out["f1_iou50"] = f1
    out["instances"] = {"tp": tp, "fp": fp, "fn": fn}
    object_classes = sorted(int(c) for c in np.union1d(np.unique(gt_classes[gt_fg]), np.unique(pred_classes[pred_fg])))
    if len(object_classes) > 1:
        out["f1_iou50_per_class"] = f1_per_class(pred_classes, pi, gt_classes, gi, object_classes)
    return out


def f1_per_class(pred_classes: np.ndarray, pred_instances: np.ndarray, gt_classes: np.ndarray,
                 gt_instances: np.ndarray, object_classes: list[int], threshold: float = 0.5) -> dict:
    """``{str(class): {"value", "tp", "fp", "fn"}}``: instance F1 at IoU > ``threshold`` of each object class,
    the predicted objects of that class matched against the ground-truth objects of that class (an object
    counts for the class of its pixels; a nucleus predicted as mitosis is a miss in both classes). The pooled
    ``f1_iou50`` of ``score_all`` matches objects whatever their class."""
    out = {}
    for c in object_classes:
        pi = np.where(pred_classes == c, pred_instances, 0)
        gi = np.where(gt_classes == c, gt_instances, 0)
        f1, tp, fp, fn = f1_at_iou(pi, gi, threshold)
        out[str(c)] = {"value": f1, "tp": tp, "fp": fp, "fn": fn}
    return out


def metric_rows(result: dict) -> dict:
    """``score_all``'s dict -> ``{name: value or {"value", details...}}``: the names and details under which a
    training run's validation and a prediction's scoring store their scores (one row per name)."""
    rows: dict = {}
    for name in ("pixel_error", "accuracy", "iou_fg", "mean_iou", "rand_error", "adapted_rand_error"):
        if result.get(name) is not None:
            rows[name] = {"value": result[name], "n_labelled": result.get("n_labelled")}
    if result.get("warping_error") is not None:
        rows["warping_error"] = {"value": result["warping_error"], **(result.get("warping") or {})}
    if result.get("f1_iou50") is not None:
        rows["f1_iou50"] = {"value": result["f1_iou50"], **(result.get("instances") or {})}
    for cls, row in (result.get("f1_iou50_per_class") or {}).items():
        rows[f"f1_iou50_class_{cls}"] = dict(row)
    for cls, value in (result.get("iou_per_class") or {}).items():
        if value is not None:
            rows[f"iou_class_{cls}"] = value
    return rows


#: With one labelled image and no validation image, a strip of this share of its labelled columns (or rows) is
#: held out: the right-most one unless some class's share in it strays from this by more than this (holds
#: more than half of that class's labels, at a quarter).
HOLDOUT_FRACTION = 0.25
HOLDOUT_SIDES = ("right", "left", "bottom", "top")


@dataclass(frozen=True)
class HoldoutStrip:
    """The labels held out of one labelled image: ``rows`` x ``cols`` (slices of the image), at its ``side``;
    ``shares``: ``((class, share of that class's labelled pixels in the strip), ...)``; ``deviation``: the
    largest distance of one of them from the hold-out's fraction."""

    side: str
    rows: slice
    cols: slice
    shares: tuple
    deviation: float

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        held = np.zeros(shape, bool)
        held[self.rows, self.cols] = True
        return held

    def describe(self) -> dict:
        """JSON-able: the side, the rows and columns as ``[start, stop)`` (None: to the image's edge), the shares."""
        return {"side": self.side, "rows": [self.rows.start, self.rows.stop],
                "columns": [self.cols.start, self.cols.stop],
                "class_shares": {str(k): round(v, 4) for k, v in self.shares}}


def _strip(side: str, lines: np.ndarray, fraction: float) -> tuple[slice, slice]:
    """The rows x cols of ``side``'s strip; ``lines``: the labelled columns (right, left) or rows (bottom, top)."""
    first, end = int(lines[0]), int(lines[-1]) + 1
    cut = int(first + (end - first) * (1 - fraction))  # the far side's strip starts here
    strip = slice(cut, None) if side in ("right", "bottom") else slice(None, first + end - cut)
    return (slice(None), strip) if side in ("right", "left") else (strip, slice(None))


def holdout_strip(classes: np.ndarray, fraction: float = HOLDOUT_FRACTION) -> HoldoutStrip | None:
    """The labels held out of one labelled image (``classes`` (H, W), 0 = unlabelled): the last (right-most) or
    first ``fraction`` of its labelled columns, or of its labelled rows (bottom, top). The right-most strip,
    unless the share of some class's labelled pixels in it strays from ``fraction`` by more than ``fraction``
    (at a quarter: it holds more than half of a class, and training would lose most of that class: on the real
    EM set one seed's membrane strokes lay 84 % in the right quarter, and the network trained on the rest drew
    no membranes). Then the side (right, left, bottom, top: the first on ties) whose shares stray least (a strip
    holding a quarter of every class scores what training saw; one holding almost nothing scores nothing). A
    side that would leave training without two classes, or the strip without labels, is never taken; None where
    no side is left (nothing is held out then)."""
    counts = np.bincount(classes.ravel(), minlength=2)
    present = [int(k) for k in np.flatnonzero(counts[1:]) + 1]
    if not present:
        return None
    labelled = classes > 0
    columns, rows = np.flatnonzero(labelled.any(axis=0)), np.flatnonzero(labelled.any(axis=1))
    del labelled
    best = None
    for side in HOLDOUT_SIDES:
        region = _strip(side, columns if side in ("right", "left") else rows, fraction)
        held = np.bincount(classes[region].ravel(), minlength=counts.size)
        kept = counts - held
        if int((kept[1:] > 0).sum()) < 2 or not held[1:].any():
            continue
        shares = tuple((k, float(held[k] / counts[k])) for k in present)
        deviation = max(abs(share - fraction) for _, share in shares)
        candidate = HoldoutStrip(side, *region, shares, deviation)
        if side == "right" and deviation <= fraction:
            return candidate
        if best is None or deviation < best.deviation:
            best = candidate
    return best
