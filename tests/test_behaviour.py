"""compression.core.behaviour: prediction diffs, calibration and paired confidence intervals.

Every expected value is computed independently here (by hand, by a plain numpy loop, or by a second
implementation of the published formula), never by calling the function under test twice.
"""
import json
import math

import numpy as np
import pytest
import torch

from compression.core.behaviour import (
    compact_predictions, diff_predictions, expand_predictions, expected_calibration_error,
    paired_delta_ci, reliability,
)

N, K = 500, 10
NAMES = [f"c{i}" for i in range(K)]


def _pair(seed=0, n=N, k=K, perturb=0.15):
    """A: random logits; B: A with `perturb` of its rows forced to another top-1 class; y mostly A's top-1."""
    g = torch.Generator().manual_seed(seed)
    logits_a = torch.randn(n, k, generator=g) * 2
    top_a = logits_a.argmax(1)
    y = torch.where(torch.rand(n, generator=g) < 0.7, top_a, torch.randint(0, k, (n,), generator=g))
    logits_b = logits_a.clone()
    changed = torch.randperm(n, generator=g)[: int(perturb * n)]
    for i in changed.tolist():
        other = (int(top_a[i]) + int(torch.randint(1, k, (1,), generator=g))) % k
        logits_b[i, other] = logits_a[i].max() + 1.0 + float(torch.rand(1, generator=g))
    return logits_a, logits_b, y, sorted(changed.tolist())


# ----------------------------------------------------------------------------- diff identities

def test_diff_identities_on_random_predictions():
    logits_a, logits_b, y, changed = _pair()
    pa, pb = compact_predictions(logits_a), compact_predictions(logits_b)
    d = diff_predictions(pa, pb, y, NAMES)
    json.dumps(d, allow_nan=False)  # JSON-able, no NaN

    top_a, top_b = logits_a.argmax(1), logits_b.argmax(1)
    ok_a, ok_b = top_a == y, top_b == y
    assert d["n_test"] == N
    assert d["flipped"] == changed  # exactly the perturbed rows, sorted
    assert len(d["flipped"]) == round(d["flip_rate"] * N) == int(0.15 * N)
    assert d["agreement"] + d["flip_rate"] == pytest.approx(1.0, abs=1e-12)
    assert sum(c["n"] for c in d["per_class"]) == d["n_test"]
    assert d["correct_a"] == int(ok_a.sum()) and d["correct_b"] == int(ok_b.sum())
    assert d["accuracy_a"] == pytest.approx(int(ok_a.sum()) / N)
    assert d["newly_wrong"] - d["newly_right"] == d["correct_a"] - d["correct_b"]
    assert d["newly_wrong"] == int((ok_a & ~ok_b).sum()) > 0
    assert d["newly_wrong_indices"] == torch.nonzero(ok_a & ~ok_b).view(-1).tolist()
    assert set(d["newly_wrong_indices"]) <= set(d["flipped"])

    for c, entry in enumerate(d["per_class"]):
        mask = y == c
        assert entry["class"] == c and entry["name"] == NAMES[c] and entry["n"] == int(mask.sum())
        assert entry["acc_b"] == pytest.approx(float((top_b[mask] == c).double().mean()), abs=1e-12)
        assert entry["acc_a"] == pytest.approx(float((top_a[mask] == c).double().mean()), abs=1e-12)
        assert entry["delta"] == pytest.approx(entry["acc_b"] - entry["acc_a"], abs=1e-12)
        lo, hi = entry["ci95_delta"]
        assert lo <= entry["delta"] <= hi
        assert entry["significant"] == (lo > 0 or hi < 0)

    counts = torch.bincount(y, minlength=K).tolist()
    for key, ok in (("confusion_a", ok_a), ("confusion_b", ok_b)):
        m = np.array(d[key])
        assert m.shape == (K, K)
        assert m.sum(1).tolist() == counts
        assert int(np.trace(m)) == int(ok.sum())
    assert np.array(d["confusion_b"]).sum(0).tolist() == torch.bincount(top_b, minlength=K).tolist()

    hurt = d["most_hurt_classes"]
    negatives = sorted(e["delta"] for e in d["per_class"] if e["delta"] < 0)
    assert [e["delta"] for e in hurt] == negatives[:3]

    gallery = d["gallery"]
    assert len(gallery) == min(24, len(d["flipped"]))
    n_new = min(24, d["newly_wrong"])
    assert [g["index"] for g in gallery[:n_new]] == d["newly_wrong_indices"][:n_new]
    for g in gallery:
        i = g["index"]
        assert g["label"] == int(y[i]) and g["pred_a"] == int(top_a[i]) and g["pred_b"] == int(top_b[i])
        assert g["pred_a"] != g["pred_b"]
        assert g["conf_b"] == pytest.approx(float(torch.softmax(logits_b[i].double(), 0).max()), abs=6e-5)

    for key in ("reliability_a", "reliability_b"):
        assert len(d[key]) == 15 and sum(b["count"] for b in d[key]) == N


def test_identical_predictions_change_nothing():
    logits_a, _, y, _ = _pair(seed=3)
    p = compact_predictions(logits_a)
    d = diff_predictions(p, p, y, NAMES)
    assert d["flip_rate"] == 0.0 and d["agreement"] == 1.0 and d["flipped"] == [] and d["gallery"] == []
    assert d["newly_wrong"] == d["newly_right"] == 0 and d["most_hurt_classes"] == []
    assert d["ece_a"] == d["ece_b"]
    for e in d["per_class"]:
        assert e["delta"] == 0.0 and not e["significant"]
        assert e["ci95_delta"][0] <= 0.0 <= e["ci95_delta"][1]


def test_max_flipped_truncates_lists_not_counts():
    logits_a, logits_b, y, changed = _pair(seed=1)
    d = diff_predictions(compact_predictions(logits_a), compact_predictions(logits_b), y, NAMES, max_flipped=5)
    assert d["flipped"] == changed[:5]
    assert d["flip_rate"] == len(changed) / N
    assert len(d["newly_wrong_indices"]) <= 5


def test_top1_format_diff_matches_softmax_format_diff():
    logits_a, logits_b, y, _ = _pair(seed=2)
    full = diff_predictions(compact_predictions(logits_a), compact_predictions(logits_b), y, NAMES)
    top1 = diff_predictions(compact_predictions(logits_a, max_classes=5),
                            compact_predictions(logits_b, max_classes=5), y, NAMES)
    for key in ("flipped", "newly_wrong", "correct_b", "confusion_b", "per_class", "ece_b"):
        assert full[key] == top1[key]


def test_diff_rejects_mismatched_lengths_and_unknown_classes():
    logits_a, logits_b, y, _ = _pair(seed=4, n=20)
    pa, pb = compact_predictions(logits_a), compact_predictions(logits_b[:19])
    with pytest.raises(ValueError, match="length"):
        diff_predictions(pa, pb, y, NAMES)
    with pytest.raises(ValueError, match="length"):
        diff_predictions(pa, pa, torch.cat([y, y[:1]]), NAMES)
    with pytest.raises(ValueError, match="class_names"):
        diff_predictions(pa, pa, y, NAMES[:3])


# ----------------------------------------------------------------------------- calibration

def test_ece_hand_computed():
    # 5 bins (0,.2] (.2,.4] (.4,.6] (.6,.8] (.8,1]:
    #   (.8,1]:  .95 ok, .90 ok, .85 wrong -> acc 2/3, conf .90  -> 3/6 * |2/3 - .90| = 0.116666...
    #   (.4,.6]: .55 ok, .50 wrong         -> acc 1/2, conf .525 -> 2/6 * .025       = 0.008333...
    #   (.2,.4]: .30 wrong                 -> acc 0,   conf .30  -> 1/6 * .30        = 0.05
    #   ECE = 0.175
    conf = [0.95, 0.90, 0.85, 0.55, 0.50, 0.30]
    ok = [True, True, False, True, False, False]
    assert expected_calibration_error(conf, ok, n_bins=5) == pytest.approx(0.175, abs=1e-9)
    # 15 bins of width 1/15: .99,.97 (ok, wrong) share (14/15, 1] -> acc .5, conf .98 -> gap .48;
    #   .50,.52 (both ok) share (7/15, 8/15] -> acc 1, conf .51 -> gap .49;
    #   .10,.12 (wrong, ok) share (1/15, 2/15] -> acc .5, conf .11 -> gap .39;
    #   each bin weighs 2/6: ECE = (.48 + .49 + .39) / 3 = 0.453333...
    conf15 = torch.tensor([0.99, 0.97, 0.50, 0.52, 0.10, 0.12], dtype=torch.float64)
    ok15 = torch.tensor([1, 0, 1, 1, 0, 1]).bool()
    assert expected_calibration_error(conf15, ok15) == pytest.approx(1.36 / 3, abs=1e-9)
    bins = reliability(conf15, ok15)
    assert [b["count"] for b in bins] == [0, 2, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 2]
    assert bins[14]["gap"] == pytest.approx(0.48, abs=1e-12) and bins[0]["accuracy"] is None


def test_bin_edges_are_lo_exclusive_hi_inclusive():
    # c = .6 belongs to (.4, .6] and c = .7 to (.6, .8]: ECE = .5*|0 - .6| + .5*|1 - .7| = 0.45.
    # (torchmetrics' bucketize(right=True) puts .6 in [.6, .8) with .7, which would give 0.15.)
    for dtype in (torch.float64, torch.float32):
        conf = torch.tensor([0.6, 0.7], dtype=dtype)
        ok = torch.tensor([False, True])
        assert expected_calibration_error(conf, ok, n_bins=5) == pytest.approx(0.45, abs=1e-6)
        assert [b["count"] for b in reliability(conf, ok, n_bins=5)] == [0, 0, 1, 1, 0]
    # the extremes: 1.0 in the last bin, 0.0 in the first
    assert [b["count"] for b in reliability([0.0, 1.0, 0.2], [True, True, False], n_bins=5)] == [2, 0, 0, 0, 1]


def _numpy_ece(conf, ok, n_bins):
    conf, ok = np.asarray(conf, dtype=np.float64), np.asarray(ok, dtype=np.float64)
    ece = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        in_bin = (conf > lo) & (conf <= hi)
        if b == 0:
            in_bin |= conf == 0.0
        if in_bin.any():
            ece += in_bin.mean() * abs(ok[in_bin].mean() - conf[in_bin].mean())
    return ece


def _torchmetrics_style_ece(conf, ok, n_bins):
    """torchmetrics' rule: bucketize(right=True) over linspace(0, 1, n+1), i.e. [lo, hi) plus a bin for 1.0."""
    conf, ok = torch.as_tensor(conf, dtype=torch.float64), torch.as_tensor(ok, dtype=torch.float64)
    idx = torch.bucketize(conf, torch.linspace(0, 1, n_bins + 1, dtype=torch.float64), right=True) - 1
    ece = 0.0
    for b in idx.unique().tolist():
        sel = idx == b
        ece += float(sel.double().mean()) * abs(float(ok[sel].mean()) - float(conf[sel].mean()))
    return ece


@pytest.mark.parametrize("n_bins", [1, 10, 15])
def test_ece_matches_independent_loops(n_bins):
    rng = np.random.default_rng(n_bins)
    conf = rng.uniform(0.05, 0.999, size=2000)  # continuous: no value sits on a bin edge
    ok = rng.uniform(size=2000) < conf ** 1.5   # somewhat overconfident
    ece = expected_calibration_error(torch.from_numpy(conf), torch.from_numpy(ok), n_bins)
    assert ece == pytest.approx(_numpy_ece(conf, ok, n_bins), abs=1e-9)
    assert ece == pytest.approx(_torchmetrics_style_ece(conf, ok, n_bins), abs=1e-9)
    bins = reliability(conf, ok, n_bins)
    assert sum(b["count"] for b in bins) == 2000
    assert sum(b["count"] / 2000 * abs(b["gap"]) for b in bins if b["count"]) == pytest.approx(ece, abs=1e-12)
    assert expected_calibration_error([], [], n_bins) == 0.0


def test_ece_rejects_bad_input():
    with pytest.raises(ValueError, match=r"confidences must be finite and lie in \[0, 1\]"):
        expected_calibration_error([0.5, 1.5], [True, False])
    with pytest.raises(ValueError, match="1 confidences but 2 correctness values"):
        expected_calibration_error([0.5], [True, False])
    with pytest.raises(ValueError, match="n_bins must be a positive integer, got 0"):
        reliability([0.5], [True], n_bins=0)


# ----------------------------------------------------------------------------- paired CI

def _wilson_roots(ph, n, z=1.96):
    """Wilson limits as the roots of (1 + z²/n) p² - (2 p̂ + z²/n) p + p̂² = 0."""
    qa, qb, qc = 1 + z * z / n, -(2 * ph + z * z / n), ph * ph
    disc = math.sqrt(max(0.0, qb * qb - 4 * qa * qc))
    return (-qb - disc) / (2 * qa), (-qb + disc) / (2 * qa)


def _reference_newcombe10(r, s, t, u, z=1.96):
    """Second implementation from the paper's formulas, for the table [[r, s], [t, u]]:
    r = both right, s = first right only, t = second right only, u = both wrong; CI for p1+ - p+1.
    """
    n = r + s + t + u
    p1, p2 = (r + s) / n, (r + t) / n

    (l1, u1), (l2, u2) = _wilson_roots(p1, n, z), _wilson_roots(p2, n, z)
    marg = [r + s, t + u, r + t, s + u]
    big_a = r * u - s * t
    if 0 in marg or 0 <= big_a <= n / 2:
        phi = 0.0
    else:
        phi = (big_a - n / 2 if big_a > n / 2 else big_a) / math.sqrt(np.prod(np.array(marg, dtype=float)))
    dl = math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2))
    du = math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1))
    return p1 - p2 - dl, p1 - p2 + du


def _vectors(r, s, t, u):
    """(a_correct, b_correct) with B = the table's first (row) variable, A = its second (column)."""
    b = [True] * r + [True] * s + [False] * t + [False] * u
    a = [True] * r + [False] * s + [True] * t + [False] * u
    return a, b


def test_paired_ci_published_example():
    # Cavo et al. 2012 (Fagerland, Lydersen & Laake 2017, "Statistical Analysis of Contingency Tables",
    # ch. 8): table [[59, 6], [16, 80]], Newcombe square-and-add: -0.0621 (95% CI -0.1186 to -0.0046)
    a, b = _vectors(59, 6, 16, 80)
    lo, hi = paired_delta_ci(a, b)
    assert lo == pytest.approx(-0.1186, abs=5e-5) and hi == pytest.approx(-0.0046, abs=5e-5)
    assert (lo, hi) == pytest.approx(_reference_newcombe10(59, 6, 16, 80), abs=1e-12)


def test_paired_ci_matches_reference_on_random_tables():
    rng = np.random.default_rng(7)
    for _ in range(200):
        r, s, t, u = (int(v) for v in rng.integers(0, 40, size=4))
        if r + s + t + u == 0:
            continue
        a, b = _vectors(r, s, t, u)
        lo, hi = paired_delta_ci(torch.tensor(a), torch.tensor(b))
        ref_lo, ref_hi = _reference_newcombe10(r, s, t, u)
        assert lo == pytest.approx(max(-1.0, ref_lo), abs=1e-9) and hi == pytest.approx(min(1.0, ref_hi), abs=1e-9)
        d = (s - t) / (r + s + t + u)
        assert lo <= d <= hi and -1.0 <= lo <= hi <= 1.0


def test_paired_ci_narrows_with_n_and_handles_degenerate_cases():
    widths = []
    for scale in (1, 4, 16):
        lo, hi = paired_delta_ci(*_vectors(30 * scale, 4 * scale, 9 * scale, 7 * scale))
        widths.append(hi - lo)
    assert widths[0] > widths[1] > widths[2] > 0

    # identical A and B: symmetric about 0 and, thanks to phi (here (400 - 25)/400), much narrower
    # than the interval that ignores pairing, sqrt((p - l)^2 + (u - p)^2) each side
    same = [True] * 40 + [False] * 10
    lo, hi = paired_delta_ci(same, same)
    wl, wu = _wilson_roots(0.8, 50)
    assert lo == pytest.approx(-hi, abs=1e-12) and lo < 0.0 < hi
    assert hi < 0.5 * math.hypot(0.8 - wl, wu - 0.8)
    for a, b in (([True] * 30, [True] * 30), ([False] * 30, [False] * 30), ([True] * 30, [False] * 30)):
        lo, hi = paired_delta_ci(a, b)
        assert all(math.isfinite(v) for v in (lo, hi)) and -1.0 <= lo <= hi <= 1.0
    assert paired_delta_ci([True] * 30, [False] * 30)[1] < 0  # B lost everything: clearly negative
    assert paired_delta_ci([], []) == (-1.0, 1.0)
    with pytest.raises(ValueError):
        paired_delta_ci([True], [True, False])


# ----------------------------------------------------------------------------- stored predictions

def test_compact_expand_round_trip_softmax():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(5)) * 3
    stored = json.loads(json.dumps(compact_predictions(logits)))  # survives JSON
    assert stored["format"] == "softmax" and len(stored["probs"]) == 64 and len(stored["probs"][0]) == 10
    assert all(len(repr(p)) <= 7 or "e" in repr(p) for row in stored["probs"] for p in row)  # 4 decimals
    labels, conf, probs = expand_predictions(stored)
    assert labels.tolist() == logits.argmax(1).tolist()
    ref = torch.softmax(logits.double(), 1)
    assert torch.allclose(probs, ref, atol=5.01e-5)
    assert torch.allclose(conf, ref.max(1).values, atol=5.01e-5)
    from_probs = compact_predictions(ref, is_probs=True)
    assert expand_predictions(from_probs)[0].tolist() == labels.tolist()
    with pytest.raises(ValueError):
        compact_predictions(logits, is_probs=True)  # logits are not probabilities


def test_compact_keeps_exact_top1_when_rounding_ties():
    logits = torch.tensor([[0.0, 1e-7, -5.0], [2.0, 2.0 - 1e-7, 0.0]])
    stored = compact_predictions(logits)
    assert stored["probs"][0][0] == stored["probs"][0][1]  # rounding made them equal
    assert expand_predictions(stored)[0].tolist() == [1, 0]


def test_compact_top1_format_for_many_classes():
    logits = torch.randn(40, 150, generator=torch.Generator().manual_seed(6))
    stored = json.loads(json.dumps(compact_predictions(logits)))
    assert stored["format"] == "top1" and set(stored) >= {"label", "prob"} and "probs" not in stored
    labels, conf, probs = expand_predictions(stored)
    assert probs is None
    assert labels.tolist() == logits.argmax(1).tolist()
    assert torch.allclose(conf, torch.softmax(logits.double(), 1).max(1).values, atol=5.01e-5)
    with pytest.raises(ValueError):
        expand_predictions({"format": "topk"})
