"""What did compression change? Prediction-level comparison of two models on the same test set.

Accuracy alone hides what compression does: two models with equal accuracy can disagree on many
examples, and the damage concentrates in a few classes (Hooker et al. 2019, "What do compressed deep
neural networks forget?"). This module answers "which predictions changed, for which classes, and
did the model's confidence stay honest?" (calibration: Guo et al. 2017, "On calibration of modern
neural networks").

It is the bottom layer: pure functions on tensors and plain JSON-able values, importing only torch,
numpy and the standard library, so that every other layer (labs, store, reports, dashboard) can use it
without import cycles.

A run stores its test-set predictions once, at measurement time, with `compact_predictions`; any two
stored runs can then be compared later, without their models, with `diff_predictions`.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

__all__ = [
    "compact_predictions", "expand_predictions", "expected_calibration_error", "reliability",
    "paired_delta_ci", "diff_predictions",
]

DECIMALS = 4          # stored probabilities: 4 decimals keeps JSON small and ECE exact to ~5e-5
ECE_BINS = 15         # Guo et al. 2017 and torchmetrics' default
GALLERY_SIZE = 24
MOST_HURT = 3


# --------------------------------------------------------------------------- stored predictions

def compact_predictions(logits_or_probs: torch.Tensor, max_classes: int = 100, is_probs: bool = False) -> dict:
    """What a run stores about its test-set predictions, small and JSON-able.

    Why: comparing two runs later (flips, per-class damage, calibration) must not need the models,
    only what each run recorded. With few classes the full softmax is kept (rounded to 4 decimals),
    which also allows class-probability views later; with many classes only the top-1 label and its
    probability are kept, which is all that flips and top-1 calibration need.

    logits_or_probs: (n_test, classes) logits (any real numbers), or probabilities if `is_probs`.
    Returns {"format": "softmax", "n_classes", "label", "probs"} when classes <= max_classes, else
    {"format": "top1", "n_classes", "label", "prob"}. "label" is the argmax of the *unrounded* input,
    so rounding ties can never change a stored top-1 prediction.
    """
    t = torch.as_tensor(logits_or_probs).detach().cpu()
    if t.dim() != 2:
        raise ValueError(f"compact_predictions expects a (n_test, classes) tensor, got shape {tuple(t.shape)}")
    if t.shape[1] < 1:
        raise ValueError("compact_predictions needs at least one class")
    t = t.to(torch.float64)
    if t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError("predictions contain NaN or infinite values")
    if is_probs:
        if t.numel() and (float(t.min()) < 0.0 or float(t.max()) > 1.0 + 1e-6):
            raise ValueError("is_probs=True but values lie outside [0, 1]: were logits passed?")
        probs = t.clamp(0.0, 1.0)
    else:
        probs = torch.softmax(t, dim=1)
    n, k = probs.shape
    label = t.argmax(dim=1) if n else torch.zeros(0, dtype=torch.long)
    top = probs.gather(1, label.view(-1, 1)).view(-1) if n else torch.zeros(0, dtype=torch.float64)
    labels = [int(v) for v in label.tolist()]
    if k <= max_classes:
        rounded = np.round(probs.numpy(), DECIMALS)
        return {"format": "softmax", "n_classes": int(k), "label": labels, "probs": rounded.tolist()}
    return {"format": "top1", "n_classes": int(k), "label": labels,
            "prob": np.round(top.numpy(), DECIMALS).tolist()}


def expand_predictions(stored: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Stored predictions back to tensors: (top1_labels int64, top1_confidence float64, probs or None).

    Why: every comparison works on top-1 labels and confidences whatever format a run stored; the full
    probability matrix is returned only when it was stored ("softmax" format), else None.
    """
    if not isinstance(stored, dict) or "format" not in stored:
        raise ValueError("stored predictions must be a dict made by compact_predictions (no 'format' key)")
    fmt = stored["format"]
    if fmt == "softmax":
        rows = stored.get("probs")
        if rows is None:
            raise ValueError("softmax-format predictions lack 'probs'")
        k = int(stored.get("n_classes") or (len(rows[0]) if rows else 1))
        probs = torch.tensor(rows, dtype=torch.float64).reshape(len(rows), k)
        if stored.get("label") is not None:
            labels = torch.tensor(stored["label"], dtype=torch.long).reshape(-1)
            if len(labels) != len(probs):
                raise ValueError(f"softmax-format predictions have {len(labels)} labels but {len(probs)} rows")
        else:  # older records without labels: top-1 from the (rounded) probabilities
            labels = probs.argmax(dim=1) if len(probs) else torch.zeros(0, dtype=torch.long)
        conf = probs.gather(1, labels.view(-1, 1)).view(-1) if len(probs) else torch.zeros(0, dtype=torch.float64)
        return labels, conf, probs
    if fmt == "top1":
        if "label" not in stored or "prob" not in stored:
            raise ValueError("top1-format predictions need 'label' and 'prob'")
        labels = torch.tensor(stored["label"], dtype=torch.long).reshape(-1)
        conf = torch.tensor(stored["prob"], dtype=torch.float64).reshape(-1)
        if len(labels) != len(conf):
            raise ValueError(f"top1-format predictions have {len(labels)} labels but {len(conf)} probabilities")
        return labels, conf, None
    raise ValueError(f"unknown predictions format {fmt!r} (expected 'softmax' or 'top1')")


# --------------------------------------------------------------------------- calibration

def _bins(confidence, correct, n_bins: int):
    """Per-bin (count, sum of correctness, sum of confidence) over equal-width bins (lo, hi].

    Bin rule: confidence c goes to bin ceil(c * n_bins) - 1, clamped to [0, n_bins - 1]; i.e. bins
    are (k/n_bins, (k+1)/n_bins], c == 1.0 lands in the last bin and c == 0 in the first. This is the
    rule of Guo et al.'s reference code (conf > lo and conf <= hi). It is evaluated as comparisons
    with the edges k/n_bins in the confidence's own dtype (torch.bucketize, right=False), so a value
    that reads 0.2 lands in the bin whose hi is 0.2 instead of depending on how 0.2 * 15 rounds.
    """
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if not isinstance(confidence, torch.Tensor):  # lists / numpy: keep float64, never torch's float32 default
        confidence = torch.as_tensor(np.asarray(confidence, dtype=np.float64))
    c = confidence.detach().cpu().reshape(-1)
    if not torch.is_floating_point(c):
        c = c.to(torch.float64)
    if not isinstance(correct, torch.Tensor):
        correct = torch.as_tensor(np.asarray(correct, dtype=np.float64))
    ok = correct.detach().cpu().reshape(-1).to(torch.float64)
    if len(c) != len(ok):
        raise ValueError(f"{len(c)} confidences but {len(ok)} correctness values")
    if len(c) and (not bool(torch.isfinite(c).all()) or float(c.min()) < 0.0 or float(c.max()) > 1.0 + 1e-6):
        raise ValueError("confidences must be finite and lie in [0, 1]")
    c = c.clamp(0.0, 1.0)  # float32 softmax can exceed 1 by an ulp
    edges = torch.tensor([k / n_bins for k in range(n_bins + 1)], dtype=torch.float64).to(c.dtype)
    idx = (torch.bucketize(c, edges, right=False) - 1).clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).to(torch.float64)
    acc_sum = torch.bincount(idx, weights=ok, minlength=n_bins).to(torch.float64)
    conf_sum = torch.bincount(idx, weights=c.to(torch.float64), minlength=n_bins).to(torch.float64)
    return count.tolist(), acc_sum.tolist(), conf_sum.tolist(), len(c)


def expected_calibration_error(confidence, correct, n_bins: int = ECE_BINS) -> float:
    """Top-1 expected calibration error, ECE = sum_b (|B_b| / n) * |acc(B_b) - conf(B_b)|.

    Why: compression often keeps accuracy but makes a model over- or under-confident; ECE says by how
    much its top-1 confidence misstates its accuracy (Guo et al. 2017; torchmetrics'
    multiclass_calibration_error(norm="l1")). Equal-width bins (lo, hi], see `_bins` for the exact
    rule. Empty input gives 0.0.
    """
    count, acc_sum, conf_sum, n = _bins(confidence, correct, n_bins)
    if n == 0:
        return 0.0
    ece = 0.0
    for cnt, a, cf in zip(count, acc_sum, conf_sum):
        if cnt > 0:
            ece += (cnt / n) * abs(a / cnt - cf / cnt)
    return float(ece)


def reliability(confidence, correct, n_bins: int = ECE_BINS) -> list[dict]:
    """The reliability diagram behind the ECE: one entry per bin, lowest first.

    Why: ECE is one number; the diagram shows *where* confidence is wrong (e.g. only the
    high-confidence bins became overconfident after quantization). Each entry is
    {"lo", "hi", "count", "accuracy", "confidence" (mean), "gap"} with gap = confidence - accuracy
    (positive = overconfident); accuracy, confidence and gap are None for an empty bin.
    Same bins as `expected_calibration_error`, so sum(count/n * |gap|) equals the ECE.
    """
    count, acc_sum, conf_sum, _ = _bins(confidence, correct, n_bins)
    out = []
    for k, (cnt, a, cf) in enumerate(zip(count, acc_sum, conf_sum)):
        acc = a / cnt if cnt else None
        conf = cf / cnt if cnt else None
        out.append({"lo": k / n_bins, "hi": (k + 1) / n_bins, "count": int(cnt), "accuracy": acc,
                    "confidence": conf, "gap": (conf - acc) if cnt else None})
    return out


# --------------------------------------------------------------------------- paired difference

def _wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval for successes / n (n > 0)."""
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = (z / denom) * math.sqrt(max(0.0, p * (1.0 - p) / n + z2 / (4.0 * n * n)))
    return max(0.0, centre - half), min(1.0, centre + half)


def _as_bool_array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1).astype(bool)


def paired_delta_ci(a_correct, b_correct, z: float = 1.96) -> tuple[float, float]:
    """Confidence interval (95% for z=1.96) for acc_b - acc_a when A and B were scored on the SAME examples.

    Why paired: the two models see identical test examples, so their correctness is strongly
    correlated; treating the accuracies as independent would give intervals far too wide to notice
    that compression hurt one class. Method: Newcombe (1998) method 10, "Improved confidence intervals
    for the difference between binomial proportions based on paired data": Wilson score intervals
    (l1, u1) for acc_b and (l2, u2) for acc_a combined square-and-add with the correlation phi:

        L = d - sqrt((acc_b - l1)^2 - 2 phi (acc_b - l1)(u2 - acc_a) + (u2 - acc_a)^2)
        U = d + sqrt((u1 - acc_b)^2 - 2 phi (u1 - acc_b)(acc_a - l2) + (acc_a - l2)^2)

    with d = acc_b - acc_a and, from the paired table (both right r, only B right s, only A right t,
    both wrong u), A = r*u - s*t and phi = (A - n/2)/sqrt(efgh) if A > n/2, 0 if 0 <= A <= n/2,
    A/sqrt(efgh) if A < 0 (e, f, g, h the marginal totals; phi = 0 when any is 0), as in Newcombe's
    chapter in Altman et al., "Statistics with Confidence", and Fagerland, Lydersen & Laake (2017).
    Never NaN: n == 0 gives (-1.0, 1.0) (nothing is known); the result is clipped to [-1, 1].
    """
    a = _as_bool_array(a_correct)
    b = _as_bool_array(b_correct)
    if len(a) != len(b):
        raise ValueError(f"paired samples must have equal length, got {len(a)} and {len(b)}")
    n = len(a)
    if n == 0:
        return (-1.0, 1.0)
    both = int(np.sum(a & b))
    only_b = int(np.sum(b & ~a))
    only_a = int(np.sum(a & ~b))
    neither = n - both - only_b - only_a
    p1 = (both + only_b) / n      # acc_b
    p2 = (both + only_a) / n      # acc_a
    d = p1 - p2
    l1, u1 = _wilson(both + only_b, n, z)
    l2, u2 = _wilson(both + only_a, n, z)
    e, f, g, h = both + only_b, only_a + neither, both + only_a, only_b + neither
    phi = 0.0
    if min(e, f, g, h) > 0:
        cross = both * neither - only_b * only_a
        root = math.sqrt(float(e) * f * g * h)
        if cross > n / 2:
            phi = (cross - n / 2) / root
        elif cross < 0:
            phi = cross / root
    x1, y2 = p1 - l1, u2 - p2
    y1, x2 = u1 - p1, p2 - l2
    lo = d - math.sqrt(max(0.0, x1 * x1 - 2 * phi * x1 * y2 + y2 * y2))
    hi = d + math.sqrt(max(0.0, y1 * y1 - 2 * phi * y1 * x2 + x2 * x2))
    return (max(-1.0, float(lo)), min(1.0, float(hi)))


# --------------------------------------------------------------------------- the comparison

def _round(x: float | None) -> float | None:
    return None if x is None else round(float(x), DECIMALS)


def diff_predictions(pred_a: dict, pred_b: dict, y, class_names: Sequence[str],
                     max_flipped: int | None = None) -> dict:
    """Everything that changed between model A (e.g. the parent) and model B (e.g. its compressed child).

    Why: accuracy deltas hide churn (examples that flip both ways) and class-specific damage, which
    Hooker et al. (2019) found concentrates in a few classes. Takes two stored predictions (from
    `compact_predictions`) on the same test set and its labels `y`; returns JSON-able fields:
    n_test, flip_rate, agreement, newly_wrong, newly_right, flipped, newly_wrong_indices,
    accuracy_a, accuracy_b, correct_a, correct_b, per_class, ece_a, ece_b, reliability_a,
    reliability_b, confusion_a, confusion_b, most_hurt_classes, gallery.

    per_class is grouped by TRUE label, one entry per name in class_names; a class with n == 0 has
    None accuracies and delta, ci95_delta [-1, 1] and significant False. `max_flipped` only
    truncates the index lists `flipped` and `newly_wrong_indices` (to keep records small); counts and
    rates always cover every example. Raises ValueError on mismatched lengths, an empty test set, or
    labels outside class_names.
    """
    la, conf_a, _ = expand_predictions(pred_a)
    lb, conf_b, _ = expand_predictions(pred_b)
    y = torch.as_tensor(y).detach().cpu().reshape(-1).long()
    if not (len(la) == len(lb) == len(y)):
        raise ValueError(f"predictions and labels differ in length: A has {len(la)}, B has {len(lb)}, "
                         f"y has {len(y)}; both runs must be measured on the same test set")
    n = len(y)
    if n == 0:
        raise ValueError("cannot compare predictions on an empty test set")
    k = len(class_names)
    for what, t in (("labels y", y), ("predictions of A", la), ("predictions of B", lb)):
        if int(t.min()) < 0 or int(t.max()) >= k:
            raise ValueError(f"{what} reach class {int(t.max())} (min {int(t.min())}) but class_names has {k} names")
    if max_flipped is not None and max_flipped < 0:
        raise ValueError(f"max_flipped must be >= 0 or None, got {max_flipped}")

    ok_a = (la == y)
    ok_b = (lb == y)
    flip = (la != lb)
    newly_wrong = ok_a & ~ok_b
    newly_right = ~ok_a & ok_b
    flipped = torch.nonzero(flip).view(-1).tolist()
    newly_wrong_idx = torch.nonzero(newly_wrong).view(-1).tolist()
    flip_rate = len(flipped) / n

    per_class = []
    for c in range(k):
        mask = (y == c)
        n_c = int(mask.sum())
        entry = {"class": c, "name": str(class_names[c]), "n": n_c}
        if n_c:
            acc_a = float(ok_a[mask].double().mean())
            acc_b = float(ok_b[mask].double().mean())
            lo, hi = paired_delta_ci(ok_a[mask], ok_b[mask])
            entry.update(acc_a=acc_a, acc_b=acc_b, delta=acc_b - acc_a, ci95_delta=[lo, hi],
                         significant=bool(lo > 0.0 or hi < 0.0))
        else:
            entry.update(acc_a=None, acc_b=None, delta=None, ci95_delta=[-1.0, 1.0], significant=False)
        per_class.append(entry)

    hurt = sorted((e for e in per_class if e["delta"] is not None and e["delta"] < 0),
                  key=lambda e: (e["delta"], e["class"]))[:MOST_HURT]

    def confusion(pred: torch.Tensor) -> list[list[int]]:
        return torch.bincount(y * k + pred, minlength=k * k).view(k, k).tolist()

    order = newly_wrong_idx + [i for i in flipped if not bool(newly_wrong[i])]
    gallery = [{"index": int(i), "label": int(y[i]), "pred_a": int(la[i]), "conf_a": _round(conf_a[i]),
                "pred_b": int(lb[i]), "conf_b": _round(conf_b[i])} for i in order[:GALLERY_SIZE]]

    limit = (lambda xs: xs) if max_flipped is None else (lambda xs: xs[:max_flipped])
    correct_a, correct_b = int(ok_a.sum()), int(ok_b.sum())
    return {
        "n_test": n,
        "flip_rate": flip_rate,
        "agreement": 1.0 - flip_rate,
        "newly_wrong": int(newly_wrong.sum()),
        "newly_right": int(newly_right.sum()),
        "flipped": limit(flipped),
        "newly_wrong_indices": limit(newly_wrong_idx),
        "accuracy_a": correct_a / n,
        "accuracy_b": correct_b / n,
        "correct_a": correct_a,
        "correct_b": correct_b,
        "per_class": per_class,
        "ece_a": expected_calibration_error(conf_a, ok_a, ECE_BINS),
        "ece_b": expected_calibration_error(conf_b, ok_b, ECE_BINS),
        "reliability_a": reliability(conf_a, ok_a, ECE_BINS),
        "reliability_b": reliability(conf_b, ok_b, ECE_BINS),
        "confusion_a": confusion(la),
        "confusion_b": confusion(lb),
        "most_hurt_classes": hurt,
        "gallery": gallery,
    }
