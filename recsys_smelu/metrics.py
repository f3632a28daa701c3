"""Accuracy and reproducibility metrics (numpy only, exact).

Everything here works on plain numpy arrays of predictions on one evaluation
set, so the evaluator, the report and anyone re-scoring exported models use
the same numbers. No TensorFlow import: this module loads in milliseconds.

Inputs. Predictions are probabilities in [0, 1]; labels are 0/1 (bool, int or
float). A 1-D array of length N or an (N, 1) column (the shape Keras returns)
is accepted; anything else, an empty array, NaN/inf, values outside [0, 1] or
labels other than 0/1 raise ``MetricInputError`` (a ValueError) naming the
argument.

Per model (labels y_i, predictions p_i, i = 1..N):

* ROC AUC, exact, ties as average rank (Mann-Whitney U):
  ``AUC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)`` with ``R_pos`` the
  sum of the ranks of the positives among all predictions (tied predictions
  share the mean of their ranks, which counts a tied positive/negative pair as
  1/2). Computed on doubled ranks in int64, so it is exact up to the final
  division.
* log loss: ``-mean_i [y_i log q_i + (1 - y_i) log(1 - q_i)]`` with
  ``q_i = clip(p_i, EPS, 1 - EPS)``, ``EPS = 1e-7``: one confidently wrong
  prediction costs at most ``-log(1e-7) = 16.1`` instead of infinity.
* calibration: ``mean_i p_i / mean_i y_i`` (1 is calibrated, > 1 over-predicts).
* excess log loss (synthetic data with known true CTR t_i):
  ``log_loss(y, p) - log_loss(y, t)``, the model's log loss above the
  Bayes-optimal predictor's on the same labels.
* normalized entropy: ``log_loss / H(ybar)`` with
  ``H(r) = -(r log r + (1 - r) log(1 - r))`` the entropy of the base rate
  ``ybar = mean_i y_i``: the log loss relative to always predicting the base
  rate (1 = no better than that, lower is better); undefined when ybar is 0
  or 1.

Per pair of models a, b:

* absolute PD: ``mean_i |p_a(i) - p_b(i)|``
* relative PD (Delta_1 of Shamir & Lin 2022):
  ``mean_i |p_a(i) - p_b(i)| / ((p_a(i) + p_b(i)) / 2)``; an example where both
  predictions are exactly 0 contributes 0 (they agree).
* logit PD: ``mean_i |logit q_a(i) - logit q_b(i)|`` with q clipped to
  [EPS, 1 - EPS] as for log loss, so a prediction of exactly 0 or 1 gives a
  finite value (at most ``2 logit(1 - EPS) = 32.2`` per example).
* L2 PD: ``sqrt(mean_i (p_a(i) - p_b(i))^2)``
* fraction above 10%: share of examples whose relative difference
  ``|p_a - p_b| / ((p_a + p_b) / 2)`` is strictly greater than 0.10.
* top-k swap rate, given a group id per example (user, query): per group, the
  fraction of model a's top-k examples that are not in model b's top-k,
  averaged over groups with equal weight. A group with fewer than k examples
  uses all of them (k_g = min(k, n_g)); such a group's swap rate is then 0, so
  it pulls the average down. Ties in score are broken by example position
  (earlier first), so the result is deterministic.

For M models: every pair metric over all M(M - 1)/2 pairs, mean and sample
standard deviation (ddof = 1; None when there is a single pair, since one pair
says nothing about the spread), and every pair's values kept.

Comparing two variants' PD (``compare_pd``): see its docstring; in short a
bootstrap interval over pairs plus a non-overlap rule that keeps 3-pair
comparisons honest. Comparing their accuracy (``compare_accuracy``): the same
rule on per-model values, models paired by index (model i of every variant
shares its seeds).
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Mapping, Sequence

import numpy as np

# Probabilities are clipped to [EPS, 1 - EPS] before log and logit.
EPS = 1e-7
# Default threshold of ``fraction_relative_diff_above`` (10% relative).
RELATIVE_DIFF_THRESHOLD = 0.10
# Fewer pairs than this per variant: compare_pd gives no verdict.
MIN_PAIRS_FOR_VERDICT = 3
# The pair metrics, in report order (top-k swap only with groups and k).
PAIR_METRICS = ("absolute", "relative", "logit", "l2", "frac_rel_above_10pct")
TOPK_METRIC = "topk_swap"

VERDICT_SMALLER = "smaller"
VERDICT_LARGER = "larger"
VERDICT_WITHIN = "within spread"
VERDICT_TOO_FEW = "too few pairs"
# Fewer paired models than this: compare_accuracy gives no verdict.
MIN_MODELS_FOR_VERDICT = 3
VERDICT_BETTER = "better"
VERDICT_WORSE = "worse"
VERDICT_TOO_FEW_MODELS = "too few models"


class MetricInputError(ValueError):
  """An input array is malformed; the message names the argument."""


# ----------------------------------------------------------------- validation


def _as_vector(values: Any, name: str) -> np.ndarray:
  """Float64 1-D array from a vector or an (N, 1) column; finite, non-empty."""
  try:
    array = np.asarray(values, dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise MetricInputError(f"{name}: not numeric ({e})") from None
  if array.ndim == 2 and array.shape[1] == 1:
    array = array[:, 0]
  if array.ndim != 1:
    raise MetricInputError(f"{name}: expected shape (N,) or (N, 1), got "
                           f"{array.shape}")
  if array.size == 0:
    raise MetricInputError(f"{name}: is empty")
  bad = ~np.isfinite(array)
  if bad.any():
    raise MetricInputError(f"{name}: {int(bad.sum())} non-finite value(s), "
                           f"first at index {int(np.argmax(bad))}")
  return array


def _as_probabilities(values: Any, name: str) -> np.ndarray:
  array = _as_vector(values, name)
  outside = (array < 0.0) | (array > 1.0)
  if outside.any():
    first = int(np.argmax(outside))
    raise MetricInputError(f"{name}: {int(outside.sum())} value(s) outside "
                           f"[0, 1], first {array[first]!r} at index {first}")
  return array


def _as_labels(values: Any, name: str = "labels") -> np.ndarray:
  array = _as_vector(values, name)
  bad = (array != 0.0) & (array != 1.0)
  if bad.any():
    first = int(np.argmax(bad))
    raise MetricInputError(f"{name}: must be 0 or 1, got {array[first]!r} at "
                           f"index {first} ({int(bad.sum())} bad value(s))")
  return array


def _check_same_length(**arrays: np.ndarray) -> None:
  lengths = {name: len(a) for name, a in arrays.items()}
  if len(set(lengths.values())) > 1:
    shown = ", ".join(f"{name} has {n}" for name, n in lengths.items())
    raise MetricInputError(f"length mismatch: {shown}")


def _pair(pa: Any, pb: Any) -> tuple[np.ndarray, np.ndarray]:
  a = _as_probabilities(pa, "pa")
  b = _as_probabilities(pb, "pb")
  _check_same_length(pa=a, pb=b)
  return a, b


# ----------------------------------------------------------------- per model


def _doubled_average_ranks(values: np.ndarray) -> np.ndarray:
  """Twice the 1-based average ranks (ties share their mean rank), as int64.

  A run of c tied values after ``before`` smaller ones holds ranks
  before+1 .. before+c, whose mean is before + (c + 1)/2; doubled that is the
  integer 2*before + c + 1.
  """
  _, inverse, counts = np.unique(values, return_inverse=True,
                                 return_counts=True)
  before = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
  doubled = 2 * before + counts.astype(np.int64) + 1
  return doubled[inverse.ravel()]


def roc_auc(labels: Any, predictions: Any) -> float:
  """Exact ROC AUC; ties count 1/2 (average ranks, Mann-Whitney U).

  Raises MetricInputError if labels hold only one class (AUC is undefined).
  """
  y = _as_labels(labels, "labels")
  p = _as_probabilities(predictions, "predictions")
  _check_same_length(labels=y, predictions=p)
  positive = y == 1.0
  n_pos = int(positive.sum())
  n_neg = len(y) - n_pos
  if n_pos == 0 or n_neg == 0:
    raise MetricInputError(f"labels: AUC needs both classes, got {n_pos} "
                           f"positive and {n_neg} negative")
  doubled_rank_sum = int(_doubled_average_ranks(p)[positive].sum())
  # U = R_pos - n_pos (n_pos + 1) / 2, all doubled to stay in integers.
  doubled_u = doubled_rank_sum - n_pos * (n_pos + 1)
  return doubled_u / (2.0 * n_pos * n_neg)


def log_loss(labels: Any, predictions: Any) -> float:
  """Mean binary cross-entropy with predictions clipped to [EPS, 1 - EPS]."""
  y = _as_labels(labels, "labels")
  p = _as_probabilities(predictions, "predictions")
  _check_same_length(labels=y, predictions=p)
  q = np.clip(p, EPS, 1.0 - EPS)
  return float(-np.mean(y * np.log(q) + (1.0 - y) * np.log1p(-q)))


def calibration(labels: Any, predictions: Any) -> float:
  """mean(predictions) / mean(labels); raises if there is no positive label."""
  y = _as_labels(labels, "labels")
  p = _as_probabilities(predictions, "predictions")
  _check_same_length(labels=y, predictions=p)
  if not y.any():
    raise MetricInputError("labels: calibration needs at least one positive")
  return float(p.mean() / y.mean())


def excess_log_loss(labels: Any, predictions: Any,
                    true_probabilities: Any) -> float:
  """log_loss(labels, predictions) - log_loss(labels, true_probabilities)."""
  truth = _as_probabilities(true_probabilities, "true_probabilities")
  p = _as_probabilities(predictions, "predictions")
  _check_same_length(predictions=p, true_probabilities=truth)
  return log_loss(labels, p) - log_loss(labels, truth)


def base_rate_entropy(base_rate: float) -> float | None:
  """H(r) = -(r log r + (1 - r) log(1 - r)) in nats; None unless 0 < r < 1."""
  r = float(base_rate)
  if not 0.0 < r < 1.0:
    return None
  return float(-(r * math.log(r) + (1.0 - r) * math.log1p(-r)))


def normalized_entropy(logloss: float, base_rate: float) -> float | None:
  """logloss / H(base_rate): log loss relative to predicting the base rate.

  ``base_rate`` is the mean label of the data the log loss was measured on.
  None (not computable) when the base rate is 0 or 1 (H = 0).
  """
  entropy = base_rate_entropy(base_rate)
  return None if entropy is None else float(logloss) / entropy


def model_metrics(labels: Any, predictions: Any,
                  truth: Any | None = None) -> dict[str, float]:
  """All per-model metrics as a dict of Python floats.

  Keys: auc, logloss, calibration, mean_prediction, mean_label, num_examples,
  and with ``truth`` (true per-example probabilities) also excess_logloss and
  bayes_logloss.
  """
  y = _as_labels(labels, "labels")
  p = _as_probabilities(predictions, "predictions")
  _check_same_length(labels=y, predictions=p)
  result = {
      "auc": roc_auc(y, p),
      "logloss": log_loss(y, p),
      "calibration": calibration(y, p),
      "mean_prediction": float(p.mean()),
      "mean_label": float(y.mean()),
      "num_examples": int(len(y)),
  }
  if truth is not None:
    t = _as_probabilities(truth, "truth")
    _check_same_length(labels=y, truth=t)
    result["bayes_logloss"] = log_loss(y, t)
    result["excess_logloss"] = result["logloss"] - result["bayes_logloss"]
  return result


# ----------------------------------------------------------------- per pair


def relative_difference(pa: Any, pb: Any) -> np.ndarray:
  """Per-example ``|pa - pb| / ((pa + pb) / 2)``, 0 where both are 0.

  Values lie in [0, 2]: 2 when exactly one prediction is 0.
  """
  a, b = _pair(pa, pb)
  mean = (a + b) / 2.0
  diff = np.abs(a - b)
  return np.divide(diff, mean, out=np.zeros_like(diff), where=mean > 0)


def absolute_pd(pa: Any, pb: Any) -> float:
  """mean_i |pa(i) - pb(i)|."""
  a, b = _pair(pa, pb)
  return float(np.mean(np.abs(a - b)))


def relative_pd(pa: Any, pb: Any) -> float:
  """Delta_1 = mean_i |pa(i) - pb(i)| / ((pa(i) + pb(i)) / 2)."""
  return float(np.mean(relative_difference(pa, pb)))


def _logit(p: np.ndarray) -> np.ndarray:
  q = np.clip(p, EPS, 1.0 - EPS)
  return np.log(q) - np.log1p(-q)


def logit_pd(pa: Any, pb: Any) -> float:
  """mean_i |logit(pa(i)) - logit(pb(i))|, predictions clipped to [EPS, 1-EPS]."""
  a, b = _pair(pa, pb)
  return float(np.mean(np.abs(_logit(a) - _logit(b))))


def l2_pd(pa: Any, pb: Any) -> float:
  """sqrt(mean_i (pa(i) - pb(i))^2)."""
  a, b = _pair(pa, pb)
  return float(np.sqrt(np.mean((a - b) ** 2)))


def fraction_relative_diff_above(pa: Any, pb: Any,
                                 threshold: float = RELATIVE_DIFF_THRESHOLD
                                 ) -> float:
  """Share of examples with |pa - pb| / ((pa + pb) / 2) > threshold."""
  if not threshold >= 0:
    raise MetricInputError(f"threshold: must be >= 0, got {threshold!r}")
  return float(np.mean(relative_difference(pa, pb) > threshold))


def _group_codes(groups: Any, length: int) -> np.ndarray:
  array = np.asarray(groups)
  if array.ndim == 2 and array.shape[1] == 1:
    array = array[:, 0]
  if array.ndim != 1:
    raise MetricInputError(f"groups: expected shape (N,), got {array.shape}")
  if len(array) != length:
    raise MetricInputError(f"length mismatch: groups has {len(array)}, "
                           f"predictions have {length}")
  if array.dtype.kind == "f" and not np.isfinite(array).all():
    raise MetricInputError("groups: contains NaN or inf")
  _, codes = np.unique(array, return_inverse=True)
  return codes.ravel()


def _check_k(k: Any) -> int:
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise MetricInputError(f"k: must be a positive integer, got {k!r}")
  return int(k)


def _within_group_ranks(scores: np.ndarray, codes: np.ndarray) -> np.ndarray:
  """0-based rank of each example inside its group, highest score first.

  Ties go to the earlier example position (lexsort is stable on the last key).
  """
  positions = np.arange(len(scores))
  order = np.lexsort((positions, -scores, codes))
  sorted_codes = codes[order]
  group_start = np.searchsorted(sorted_codes, sorted_codes, side="left")
  ranks = np.empty(len(scores), dtype=np.int64)
  ranks[order] = positions - group_start
  return ranks


def topk_swap_rate(pa: Any, pb: Any, groups: Any, k: int) -> float:
  """Mean over groups of |topk_a \\ topk_b| / min(k, group size).

  ``pa``/``pb`` are scores (any finite reals; probabilities in practice),
  ``groups`` one id per example (ints or strings). Ties broken by example
  position, earlier first.
  """
  a = _as_vector(pa, "pa")
  b = _as_vector(pb, "pb")
  _check_same_length(pa=a, pb=b)
  k = _check_k(k)
  codes = _group_codes(groups, len(a))
  in_top_a = _within_group_ranks(a, codes) < k
  in_top_b = _within_group_ranks(b, codes) < k
  num_groups = int(codes.max()) + 1
  top_size = np.bincount(codes, weights=in_top_a, minlength=num_groups)
  swapped = np.bincount(codes, weights=in_top_a & ~in_top_b,
                        minlength=num_groups)
  return float(np.mean(swapped / top_size))


def pair_metrics(pa: Any, pb: Any, groups: Any | None = None,
                 k: int | None = None) -> dict[str, float]:
  """All pair metrics (``PAIR_METRICS``; plus ``topk_swap`` with groups and k)."""
  if (groups is None) != (k is None):
    raise MetricInputError("groups and k: give both for the top-k swap rate, "
                           "or neither")
  a, b = _pair(pa, pb)
  relative = relative_difference(a, b)
  result = {
      "absolute": float(np.mean(np.abs(a - b))),
      "relative": float(np.mean(relative)),
      "logit": float(np.mean(np.abs(_logit(a) - _logit(b)))),
      "l2": float(np.sqrt(np.mean((a - b) ** 2))),
      "frac_rel_above_10pct": float(np.mean(relative > RELATIVE_DIFF_THRESHOLD)),
  }
  if groups is not None:
    result[TOPK_METRIC] = topk_swap_rate(a, b, groups, k)
  return result


# ----------------------------------------------------------------- M models


def _check_models(predictions_list: Sequence[Any]) -> list[np.ndarray]:
  if isinstance(predictions_list, np.ndarray) and predictions_list.ndim == 1:
    raise MetricInputError("predictions_list: expected one array per model, "
                           "got a single 1-D array")
  arrays = [_as_probabilities(p, f"predictions_list[{i}]")
            for i, p in enumerate(predictions_list)]
  if len(arrays) < 2:
    raise MetricInputError(f"predictions_list: need at least 2 models for a "
                           f"prediction difference, got {len(arrays)}")
  _check_same_length(**{f"predictions_list[{i}]": a
                        for i, a in enumerate(arrays)})
  return arrays


def sample_std(values: Sequence[float]) -> float | None:
  """Standard deviation with ddof=1; None for fewer than 2 values."""
  if len(values) < 2:
    return None
  return float(np.std(np.asarray(values, dtype=np.float64), ddof=1))


def pairwise_pd(predictions_list: Sequence[Any], groups: Any | None = None,
                k: int | None = None) -> dict[str, Any]:
  """Pair metrics over all M(M-1)/2 pairs of M models.

  Returns ``{metric: mean, metric + "_std": sample std or None, ...,
  "num_pairs": int, "pairs": [{"a": i, "b": j, metric: value, ...}]}`` with
  i < j positions in ``predictions_list`` and, with groups, also ``"k"``.
  """
  arrays = _check_models(predictions_list)
  pairs = []
  for i, j in itertools.combinations(range(len(arrays)), 2):
    pairs.append({"a": i, "b": j,
                  **pair_metrics(arrays[i], arrays[j], groups, k)})
  names = list(PAIR_METRICS) + ([TOPK_METRIC] if groups is not None else [])
  result: dict[str, Any] = {}
  for name in names:
    values = [pair[name] for pair in pairs]
    result[name] = float(np.mean(values))
    result[name + "_std"] = sample_std(values)
  result["num_pairs"] = len(pairs)
  if groups is not None:
    result["k"] = int(k)
  result["pairs"] = pairs
  return result


def per_example_relative_pd(predictions_list: Sequence[Any]) -> np.ndarray:
  """Per example, the relative difference averaged over all model pairs.

  Its mean over examples equals ``pairwise_pd(...)["relative"]``; its
  distribution is what the report's histogram shows.
  """
  arrays = _check_models(predictions_list)
  total = np.zeros(len(arrays[0]))
  count = 0
  for i, j in itertools.combinations(range(len(arrays)), 2):
    total += relative_difference(arrays[i], arrays[j])
    count += 1
  return total / count


# ----------------------------------------------------------------- comparison


def _pair_values(pairs: Sequence[Any], metric: str, name: str) -> np.ndarray:
  values = [p[metric] if isinstance(p, Mapping) else p for p in pairs]
  return _as_vector(values, name)


def _permutation_p_value(a: np.ndarray, b: np.ndarray, rng: np.random.Generator,
                         max_exact: int = 20_000, n_random: int = 20_000
                         ) -> float:
  """Two-sided permutation p-value of mean(a) - mean(b).

  Exact over all C(n_a + n_b, n_a) splits of the pooled values when there are
  at most ``max_exact`` of them, otherwise from ``n_random`` random splits.
  """
  pooled = np.concatenate([a, b])
  n, n_a = len(pooled), len(a)
  observed = abs(a.mean() - b.mean())
  total = pooled.sum()
  if math.comb(n, n_a) <= max_exact:
    splits = np.array(list(itertools.combinations(range(n), n_a)))
  else:
    splits = np.argsort(rng.random((n_random, n)), axis=1)[:, :n_a]
  sums_a = pooled[splits].sum(axis=1)
  diffs = np.abs(sums_a / n_a - (total - sums_a) / (n - n_a))
  # Tolerance so that splits equal to the observed one up to rounding count.
  return float(np.mean(diffs >= observed - 1e-12 * max(1.0, observed)))


def _check_boot(n_boot: Any, confidence: float) -> None:
  if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) \
      or n_boot < 1:
    raise MetricInputError(f"n_boot: must be a positive integer, got {n_boot!r}")
  if not 0.0 < confidence < 1.0:
    raise MetricInputError(f"confidence: must be in (0, 1), got {confidence!r}")


def _separation(a: np.ndarray, b: np.ndarray, ci_low: float,
                ci_high: float) -> int:
  """The verdict rule shared by ``compare_pd`` and ``compare_accuracy``.

  -1 when the interval of mean(a) - mean(b) lies below 0 and every value of
  a is below every value of b; +1 for the mirror case; 0 otherwise.
  """
  if ci_high < 0 and a.max() < b.min():
    return -1
  if ci_low > 0 and a.min() > b.max():
    return 1
  return 0


def compare_pd(pairs_a: Sequence[Any], pairs_b: Sequence[Any],
               n_boot: int = 2000, seed: int = 0, metric: str = "relative",
               confidence: float = 0.95) -> dict[str, Any]:
  """Is variant a's PD smaller or larger than reference b's, beyond the spread?

  ``pairs_a`` / ``pairs_b``: per-pair values of one PD metric (floats), or the
  ``pairs`` lists of ``pairwise_pd`` (dicts; ``metric`` picks the key). a is
  the variant under test, b the reference (ReLU); ``difference`` is
  mean(a) - mean(b), so negative means a is more reproducible.

  Method.
    1. Bootstrap interval: ``n_boot`` times, resample the pair values of each
       variant with replacement (within the variant) and take the difference
       of means; the ``confidence`` percentile interval of those differences.
    2. Ranges: the intervals [min, max] of the two sets of pair values.
    3. Verdict: "smaller" (or "larger") only if the bootstrap interval
       excludes 0 AND the two ranges do not overlap, every pair of a below
       (above) every pair of b; otherwise "within spread". With fewer than
       ``MIN_PAIRS_FOR_VERDICT`` pairs in either variant: "too few pairs".
  Why both conditions. With 3 pairs per variant the bootstrap sees only 10
  distinct resampled means per side and its interval is too narrow, and the
  3 pairs of 3 models share models, so they are not independent samples. The
  non-overlap rule is a rank test in disguise: if all n_a + n_b pair values
  were exchangeable, complete separation in one given direction happens with
  probability 1 / C(n_a + n_b, n_a) (1/20 = 0.05 for 3 vs 3), so it is a
  one-sided 5% test at the smallest useful size, and it gets stricter, not
  looser, as pairs are added. ``permutation_p`` (two-sided, exact for small
  counts) is reported alongside for readers who prefer a p-value; it does not
  enter the verdict.

  Returns a dict: metric, mean_a, mean_b, difference, ci_low, ci_high,
  confidence, n_a, n_b, range_a, range_b, ranges_overlap, permutation_p,
  n_boot, seed, verdict.
  """
  a = _pair_values(pairs_a, metric, "pairs_a")
  b = _pair_values(pairs_b, metric, "pairs_b")
  _check_boot(n_boot, confidence)
  rng = np.random.default_rng(seed)
  boot_a = a[rng.integers(0, len(a), size=(n_boot, len(a)))].mean(axis=1)
  boot_b = b[rng.integers(0, len(b), size=(n_boot, len(b)))].mean(axis=1)
  tail = (1.0 - confidence) / 2.0 * 100.0
  ci_low, ci_high = np.percentile(boot_a - boot_b, [tail, 100.0 - tail])
  ranges_overlap = bool(a.min() <= b.max() and b.min() <= a.max())
  separation = _separation(a, b, ci_low, ci_high)
  if min(len(a), len(b)) < MIN_PAIRS_FOR_VERDICT:
    verdict = VERDICT_TOO_FEW
  elif separation < 0:
    verdict = VERDICT_SMALLER
  elif separation > 0:
    verdict = VERDICT_LARGER
  else:
    verdict = VERDICT_WITHIN
  return {
      "metric": metric,
      "mean_a": float(a.mean()),
      "mean_b": float(b.mean()),
      "difference": float(a.mean() - b.mean()),
      "ci_low": float(ci_low),
      "ci_high": float(ci_high),
      "confidence": float(confidence),
      "n_a": int(len(a)),
      "n_b": int(len(b)),
      "range_a": [float(a.min()), float(a.max())],
      "range_b": [float(b.min()), float(b.max())],
      "ranges_overlap": ranges_overlap,
      "permutation_p": _permutation_p_value(a, b, rng),
      "n_boot": int(n_boot),
      "seed": int(seed),
      "verdict": verdict,
  }


def _per_model_values(values: Any, name: str) -> dict[int, float]:
  """{model index: value} from a mapping or a sequence (index = position)."""
  if isinstance(values, Mapping):
    items = list(values.items())
  else:
    items = list(enumerate(values))
  result = {}
  for index, value in items:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
      raise MetricInputError(f"{name}: model index {index!r} is not an integer")
    number = _as_vector([value], f"{name}[{index}]")[0]
    result[int(index)] = float(number)
  return result


def _sign_flip_p_value(d: np.ndarray, rng: np.random.Generator,
                       max_exact: int = 16, n_random: int = 20_000) -> float:
  """Two-sided paired permutation p-value of mean(d): signs flipped at random.

  Exact over all 2^n sign patterns for n <= ``max_exact``, else ``n_random``
  random patterns.
  """
  n = len(d)
  if n <= max_exact:
    signs = 1 - 2 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
  else:
    signs = rng.choice([-1, 1], size=(n_random, n))
  observed = abs(d.mean())
  means = np.abs((signs * d).mean(axis=1))
  return float(np.mean(means >= observed - 1e-12 * max(1.0, observed)))


def compare_accuracy(values_a: Any, values_b: Any, higher_is_better: bool,
                     metric: str = "", n_boot: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> dict[str, Any]:
  """Is variant a more or less accurate than reference b, beyond the spread?

  ``values_a`` / ``values_b``: one accuracy value per model (log loss, AUC,
  ...) as ``{model index: value}``, or sequences indexed by position. Models
  are paired by index (model i of every variant shares its seeds); only
  indices present in both enter. ``difference`` is mean(a) - mean(b) over the
  paired models; ``higher_is_better`` says which sign is good (True for AUC,
  False for log loss).

  Method: the rule of ``compare_pd``, on per-model values.
    1. Bootstrap interval: ``n_boot`` times, resample the paired indices with
       replacement (one draw picks model i of both variants) and take the
       mean of the paired differences a_i - b_i; the ``confidence``
       percentile interval.
    2. Ranges: [min, max] of each variant's paired values.
    3. Verdict: "better" (or "worse") only if the interval excludes 0 AND the
       ranges do not overlap, every model of a on the good (bad) side of every
       model of b; otherwise "within spread". Fewer than
       ``MIN_MODELS_FOR_VERDICT`` paired models: "too few models".
  ``permutation_p`` (two-sided paired sign-flip test, exact for up to 16
  models) and ``wins`` (paired models where a is strictly better) are
  reported alongside; they do not enter the verdict.

  Returns a dict: metric, higher_is_better, mean_a, mean_b, difference,
  ci_low, ci_high, confidence, n, indices, range_a, range_b, ranges_overlap,
  wins, permutation_p, n_boot, seed, verdict. With no paired model: n = 0,
  the numbers None and the verdict "too few models".
  """
  _check_boot(n_boot, confidence)
  by_index_a = _per_model_values(values_a, "values_a")
  by_index_b = _per_model_values(values_b, "values_b")
  indices = sorted(set(by_index_a) & set(by_index_b))
  result: dict[str, Any] = {
      "metric": metric, "higher_is_better": bool(higher_is_better),
      "mean_a": None, "mean_b": None, "difference": None, "ci_low": None,
      "ci_high": None, "confidence": float(confidence), "n": len(indices),
      "indices": indices, "range_a": None, "range_b": None,
      "ranges_overlap": None, "wins": None, "permutation_p": None,
      "n_boot": int(n_boot), "seed": int(seed),
      "verdict": VERDICT_TOO_FEW_MODELS,
  }
  if not indices:
    return result
  a = np.array([by_index_a[i] for i in indices])
  b = np.array([by_index_b[i] for i in indices])
  d = a - b
  rng = np.random.default_rng(seed)
  boot = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
  tail = (1.0 - confidence) / 2.0 * 100.0
  ci_low, ci_high = np.percentile(boot, [tail, 100.0 - tail])
  separation = _separation(a, b, ci_low, ci_high)
  good = 1 if higher_is_better else -1
  if len(indices) < MIN_MODELS_FOR_VERDICT:
    verdict = VERDICT_TOO_FEW_MODELS
  elif separation == good:
    verdict = VERDICT_BETTER
  elif separation == -good:
    verdict = VERDICT_WORSE
  else:
    verdict = VERDICT_WITHIN
  result.update({
      "mean_a": float(a.mean()),
      "mean_b": float(b.mean()),
      "difference": float(d.mean()),
      "ci_low": float(ci_low),
      "ci_high": float(ci_high),
      "range_a": [float(a.min()), float(a.max())],
      "range_b": [float(b.min()), float(b.max())],
      "ranges_overlap": bool(a.min() <= b.max() and b.min() <= a.max()),
      "wins": int(np.sum(good * d > 0)),
      "permutation_p": _sign_flip_p_value(d, rng),
      "verdict": verdict,
  })
  return result
