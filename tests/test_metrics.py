"""recsys_smelu.metrics: hand-computed values, sklearn cross-checks, invariants."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from recsys_smelu import metrics as m


def _random_predictions(seed: int, n: int = 200, models: int = 3):
  rng = np.random.default_rng(seed)
  base = rng.uniform(0.05, 0.95, n)
  return [np.clip(base + rng.normal(0, 0.05, n), 0.01, 0.99)
          for _ in range(models)]


# ----------------------------------------------------------------- per model


def test_auc_hand_computed_without_ties():
  # Positives 0.35, 0.8; negatives 0.1, 0.4. Pairs (pos > neg):
  # 0.35>0.1 yes, 0.35>0.4 no, 0.8>0.1 yes, 0.8>0.4 yes -> 3/4.
  assert m.roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75


def test_auc_hand_computed_with_tie_counts_half():
  # Positives 0.5, 0.9; negatives 0.5, 0.2.
  # 0.5 vs 0.5 tie -> 1/2, 0.5 > 0.2 -> 1, 0.9 beats both -> 2; 3.5 / 4.
  assert m.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == 0.875
  # All predictions equal: every pair is a tie -> 1/2.
  assert m.roc_auc([0, 1, 1, 0, 1], [0.3] * 5) == 0.5


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_many_ties(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 500)
  predictions = np.round(rng.random(500), 1)  # 11 distinct values: many ties
  assert m.roc_auc(labels, predictions) == pytest.approx(
      skm.roc_auc_score(labels, predictions), abs=1e-15)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from([0.0, 0.25, 0.5, 1.0])),
                min_size=2, max_size=40))
def test_auc_matches_sklearn_property(rows):
  labels = [int(y) for y, _ in rows]
  predictions = [p for _, p in rows]
  if len(set(labels)) < 2:
    with pytest.raises(m.MetricInputError, match="labels"):
      m.roc_auc(labels, predictions)
    return
  assert m.roc_auc(labels, predictions) == pytest.approx(
      skm.roc_auc_score(labels, predictions), abs=1e-15)


def test_log_loss_hand_computed():
  # -(ln 0.8 + ln(1 - 0.4)) / 2
  expected = -(math.log(0.8) + math.log(0.6)) / 2
  assert m.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(expected, rel=1e-15)


def test_log_loss_clips_to_eps():
  # A positive predicted 0 costs -ln(1e-7); a negative predicted 0 costs
  # -ln(1 - 1e-7) after clipping (not 0, since 0 is clipped up to 1e-7).
  expected = (-math.log(1e-7) - math.log1p(-1e-7)) / 2
  assert m.log_loss([1, 0], [0.0, 0.0]) == pytest.approx(expected, rel=1e-12)
  assert m.log_loss([0], [1.0]) == pytest.approx(-math.log(1e-7), rel=1e-9)
  assert m.EPS == 1e-7


@pytest.mark.parametrize("seed", [0, 1])
def test_log_loss_matches_sklearn(seed):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, 300)
  predictions = rng.uniform(0.01, 0.99, 300)
  assert m.log_loss(labels, predictions) == pytest.approx(
      skm.log_loss(labels, predictions), rel=1e-12)


def test_calibration_hand_computed():
  assert m.calibration([1, 0, 0, 1], [0.2, 0.4, 0.6, 0.8]) == pytest.approx(1.0)
  # mean prediction 0.1, mean label 0.25 -> 0.4 (under-predicts).
  assert m.calibration([1, 0, 0, 0], [0.1] * 4) == pytest.approx(0.4)


def test_excess_log_loss_hand_computed():
  # Model predicts 0.5 everywhere: log loss ln 2. Truth [0.8, 0.2] on labels
  # [1, 0]: log loss -ln 0.8. Excess: ln 2 + ln 0.8 = ln 1.6.
  assert m.excess_log_loss([1, 0], [0.5, 0.5], [0.8, 0.2]) == pytest.approx(
      math.log(1.6), rel=1e-14)
  assert m.excess_log_loss([1, 0, 1], [0.3, 0.6, 0.9], [0.3, 0.6, 0.9]) == 0.0


def test_model_metrics_bundle():
  labels = [0, 0, 1, 1]
  predictions = [0.1, 0.4, 0.35, 0.8]
  result = m.model_metrics(labels, predictions)
  assert result == {
      "auc": 0.75,
      "logloss": m.log_loss(labels, predictions),
      "calibration": pytest.approx((1.65 / 4) / 0.5),
      "mean_prediction": pytest.approx(1.65 / 4),
      "mean_label": 0.5,
      "num_examples": 4,
  }
  with_truth = m.model_metrics(labels, predictions, truth=[0.2, 0.3, 0.6, 0.7])
  assert with_truth["excess_logloss"] == pytest.approx(
      m.excess_log_loss(labels, predictions, [0.2, 0.3, 0.6, 0.7]))
  assert with_truth["bayes_logloss"] == m.log_loss(labels, [0.2, 0.3, 0.6, 0.7])


def test_keras_column_shape_accepted():
  column = np.array([[0.1], [0.4], [0.35], [0.8]], dtype=np.float32)
  assert m.roc_auc(np.array([[0], [0], [1], [1]]), column) == 0.75


# ----------------------------------------------------------------- per pair


def test_pair_metrics_hand_computed():
  pa, pb = [0.1, 0.5], [0.3, 0.5]
  # |diff| = [0.2, 0]; mean of pair = [0.2, 0.5]; relative = [1, 0].
  assert m.absolute_pd(pa, pb) == pytest.approx(0.1)
  assert m.relative_pd(pa, pb) == pytest.approx(0.5)
  assert m.l2_pd(pa, pb) == pytest.approx(math.sqrt(0.04 / 2))
  assert m.fraction_relative_diff_above(pa, pb) == 0.5
  # logit 0.1 = -ln 9, logit 0.3 = ln(3/7): mean of |ln(3/7) + ln 9| and 0.
  assert m.logit_pd(pa, pb) == pytest.approx(math.log(27 / 7) / 2)
  assert m.pair_metrics(pa, pb) == {
      "absolute": m.absolute_pd(pa, pb), "relative": m.relative_pd(pa, pb),
      "logit": m.logit_pd(pa, pb), "l2": m.l2_pd(pa, pb),
      "frac_rel_above_10pct": 0.5}


def test_relative_pd_of_p_and_2p_is_two_thirds():
  # |p - 2p| / ((p + 2p) / 2) = p / (3p / 2) = 2/3 for every p > 0.
  p = np.array([0.01, 0.1, 0.2, 0.3, 0.45])
  assert m.relative_pd(p, 2 * p) == pytest.approx(2 / 3, rel=1e-14)
  assert m.fraction_relative_diff_above(p, 2 * p, threshold=0.6) == 1.0
  assert m.fraction_relative_diff_above(p, 2 * p, threshold=0.7) == 0.0


def test_logit_pd_closed_form():
  # logit 0.5 = 0, logit 0.75 = ln 3; logit 0.2 = -ln 4, logit 0.8 = ln 4.
  # mean(|0 - ln 3|, |-ln 4 - ln 4|) = (ln 3 + 2 ln 4) / 2 = ln(48) / 2.
  assert m.logit_pd([0.5, 0.2], [0.75, 0.8]) == pytest.approx(
      math.log(48) / 2, rel=1e-14)


def test_logit_pd_clips_zero_and_one():
  # logit(1 - 1e-7) - logit(1e-7) = 2 ln((1 - 1e-7) / 1e-7).
  expected = 2 * math.log((1 - 1e-7) / 1e-7)
  assert m.logit_pd([0.0], [1.0]) == pytest.approx(expected, rel=1e-9)


def test_relative_difference_edge_values():
  # Both 0: they agree -> 0. One 0: |p| / (p / 2) = 2, the maximum.
  np.testing.assert_array_equal(
      m.relative_difference([0.0, 0.0, 0.25], [0.0, 0.4, 0.75]), [0.0, 2.0, 1.0])


def test_fraction_above_is_strict():
  # relative difference of 0.25 vs 0.75 is exactly 0.5 / 0.5 = 1.
  assert m.fraction_relative_diff_above([0.25], [0.75], threshold=1.0) == 0.0
  assert m.fraction_relative_diff_above([0.25], [0.75], threshold=0.99) == 1.0


def test_pd_of_model_with_itself_is_zero_and_pd_is_symmetric():
  pa, pb = _random_predictions(0, models=2)
  groups = np.repeat(np.arange(20), 10)
  same = m.pair_metrics(pa, pa, groups, 3)
  assert all(value == 0.0 for value in same.values())
  ab = m.pair_metrics(pa, pb, groups, 3)
  ba = m.pair_metrics(pb, pa, groups, 3)
  assert ab == ba
  assert all(value > 0 for value in ab.values())


def test_topk_swap_hand_example():
  groups = ["u", "u", "u", "u", "v", "v", "v", "w"]
  pa = [0.9, 0.8, 0.1, 0.2, 0.3, 0.2, 0.1, 0.5]
  pb = [0.9, 0.1, 0.8, 0.2, 0.1, 0.2, 0.3, 0.7]
  # k = 2. u: a's top {0, 1}, b's top {0, 2} -> 1 of 2 swapped = 1/2.
  # v: a's top {4, 5}, b's top {6, 5} -> 1/2.
  # w has 1 item (< k): top set is the whole group in both -> 0.
  # Average over groups: (1/2 + 1/2 + 0) / 3 = 1/3.
  assert m.topk_swap_rate(pa, pb, groups, 2) == pytest.approx(1 / 3)
  # k = 1: u {0} vs {0} -> 0; v {4} vs {6} -> 1; w -> 0. Mean 1/3.
  assert m.topk_swap_rate(pa, pb, groups, 1) == pytest.approx(1 / 3)
  # k >= every group size: all items are top in both models -> 0.
  assert m.topk_swap_rate(pa, pb, groups, 4) == 0.0


def test_topk_ties_broken_by_position():
  # a scores all equal: its top-1 is the earliest example, index 0.
  assert m.topk_swap_rate([0.5] * 3, [0.9, 0.1, 0.2], [7, 7, 7], 1) == 0.0
  assert m.topk_swap_rate([0.5] * 3, [0.1, 0.9, 0.2], [7, 7, 7], 1) == 1.0


def test_topk_groups_need_not_be_contiguous():
  # Same as the hand example with examples shuffled: same answer.
  groups = np.array(["u", "u", "u", "u", "v", "v", "v", "w"])
  pa = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.2, 0.1, 0.5])
  pb = np.array([0.9, 0.1, 0.8, 0.2, 0.1, 0.2, 0.3, 0.7])
  order = np.array([5, 0, 7, 2, 4, 1, 6, 3])
  assert m.topk_swap_rate(pa[order], pb[order], groups[order], 2) == \
      pytest.approx(1 / 3)


# ----------------------------------------------------------------- M models


def test_pairwise_pd_means_stds_and_pairs():
  predictions = _random_predictions(1, models=3)
  groups = np.repeat(np.arange(40), 5)
  result = m.pairwise_pd(predictions, groups=groups, k=2)
  assert [(p["a"], p["b"]) for p in result["pairs"]] == [(0, 1), (0, 2), (1, 2)]
  assert result["num_pairs"] == 3 and result["k"] == 2
  for name in list(m.PAIR_METRICS) + ["topk_swap"]:
    values = [m.pair_metrics(predictions[i], predictions[j], groups, 2)[name]
              for i, j in [(0, 1), (0, 2), (1, 2)]]
    assert result[name] == pytest.approx(np.mean(values), rel=1e-14)
    assert result[name + "_std"] == pytest.approx(np.std(values, ddof=1),
                                                  rel=1e-12)
    assert [p[name] for p in result["pairs"]] == values


def test_pairwise_pd_single_pair_has_no_std():
  result = m.pairwise_pd(_random_predictions(2, models=2))
  assert result["num_pairs"] == 1 and result["relative_std"] is None
  assert "topk_swap" not in result


def test_per_example_relative_pd_averages_pairs():
  predictions = _random_predictions(3, models=4)
  per_example = m.per_example_relative_pd(predictions)
  assert per_example.shape == (200,)
  assert per_example.mean() == pytest.approx(
      m.pairwise_pd(predictions)["relative"], rel=1e-12)
  # Example 0 by hand: mean of the 6 pairwise relative differences.
  p = [x[0] for x in predictions]
  by_hand = np.mean([abs(p[i] - p[j]) / ((p[i] + p[j]) / 2)
                     for i in range(4) for j in range(i + 1, 4)])
  assert per_example[0] == pytest.approx(by_hand, rel=1e-12)


# ----------------------------------------------------------------- comparison


def test_compare_pd_separated_sets():
  smaller = m.compare_pd([0.10, 0.11, 0.12], [0.20, 0.21, 0.22])
  assert smaller["verdict"] == "smaller"
  assert smaller["difference"] == pytest.approx(-0.1)
  assert smaller["ci_low"] <= smaller["difference"] <= smaller["ci_high"] < 0
  assert not smaller["ranges_overlap"]
  # 3 vs 3 completely separated: 2 of the C(6, 3) = 20 splits are as extreme.
  assert smaller["permutation_p"] == pytest.approx(2 / 20)
  larger = m.compare_pd([0.20, 0.21, 0.22], [0.10, 0.11, 0.12])
  assert larger["verdict"] == "larger" and larger["ci_low"] > 0


def test_compare_pd_overlap_is_within_spread():
  # Means differ (0.153 vs 0.21) but one pair of a lies above all of b.
  result = m.compare_pd([0.10, 0.11, 0.25], [0.20, 0.21, 0.22])
  assert result["ranges_overlap"]
  assert result["verdict"] == "within spread"
  # The bootstrap interval excludes 0 (a resample of a's 5 pairs reaches
  # b's level only if it draws 0.205 nearly every time), yet 0.205 lies
  # inside b's range: the non-overlap rule alone keeps the verdict.
  result = m.compare_pd([0.10, 0.10, 0.10, 0.10, 0.205],
                        [0.20, 0.21, 0.22, 0.20, 0.21])
  assert result["ci_high"] < 0 and result["ranges_overlap"]
  assert result["verdict"] == "within spread"


def test_compare_pd_too_few_pairs_and_dict_input():
  pairs_a = [{"a": 0, "b": 1, "relative": 0.1}]
  pairs_b = [{"a": 0, "b": 1, "relative": 0.5}]
  result = m.compare_pd(pairs_a, pairs_b)
  assert result["verdict"] == "too few pairs"
  assert result["difference"] == pytest.approx(-0.4)


def test_compare_pd_identical_twins():
  # Bit-identical twins: every pair PD is 0 in both variants -> no difference.
  same = m.compare_pd([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
  assert same["verdict"] == "within spread" and same["permutation_p"] == 1.0
  assert same["ci_low"] == same["ci_high"] == 0.0
  # A deterministic variant against a noisy reference: clearly smaller.
  assert m.compare_pd([0.0] * 3, [0.1, 0.12, 0.11])["verdict"] == "smaller"


def test_compare_pd_is_deterministic_given_seed():
  a, b = [0.1, 0.2, 0.15, 0.12], [0.14, 0.3, 0.22, 0.18]
  assert m.compare_pd(a, b, seed=3) == m.compare_pd(a, b, seed=3)
  assert m.compare_pd(a, b, seed=3)["ci_low"] != m.compare_pd(a, b, seed=4)[
      "ci_low"]


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, argument", [
    (lambda: m.absolute_pd([0.1, 0.2], [0.1]), "pa has 2, pb has 1"),
    (lambda: m.roc_auc([0, 1, 1], [0.1, 0.2]), "labels has 3"),
    (lambda: m.log_loss([], []), "labels: is empty"),
    (lambda: m.relative_pd([0.1, 1.2], [0.1, 0.2]), "pa: 1 value"),
    (lambda: m.relative_pd([0.1, 0.2], [-0.1, 0.2]), "pb: 1 value"),
    (lambda: m.log_loss([0, 2], [0.1, 0.2]), "labels: must be 0 or 1"),
    (lambda: m.log_loss([0, 0.5], [0.1, 0.2]), "labels: must be 0 or 1"),
    (lambda: m.log_loss([0, 1], [0.1, float("nan")]), "predictions: 1 non-finite"),
    (lambda: m.log_loss([0, 1], np.ones((2, 2)) / 2), "predictions: expected shape"),
    (lambda: m.log_loss([0, 1], ["a", "b"]), "predictions: not numeric"),
    (lambda: m.excess_log_loss([0, 1], [0.1, 0.2], [0.5]), "true_probabilities has 1"),
    (lambda: m.calibration([0, 0], [0.1, 0.2]), "labels: calibration"),
    (lambda: m.roc_auc([1, 1], [0.1, 0.2]), "labels: AUC needs both classes"),
    (lambda: m.topk_swap_rate([0.1, 0.2], [0.1, 0.2], [1], 1), "groups has 1"),
    (lambda: m.topk_swap_rate([0.1], [0.1], [1], 0), "k: must be a positive"),
    (lambda: m.pair_metrics([0.1], [0.1], groups=[1]), "groups and k"),
    (lambda: m.pairwise_pd([[0.1, 0.2]]), "predictions_list: need at least 2"),
    (lambda: m.pairwise_pd(np.array([0.1, 0.2])), "predictions_list: expected"),
    (lambda: m.pairwise_pd([[0.1, 0.2], [0.1]]),
     "predictions_list\\[0\\] has 2, predictions_list\\[1\\] has 1"),
    (lambda: m.compare_pd([0.1], [], n_boot=10), "pairs_b: is empty"),
    (lambda: m.compare_pd([0.1], [0.2], n_boot=0), "n_boot"),
])
def test_bad_input_names_the_argument(call, argument):
  with pytest.raises(ValueError, match=argument):
    call()


def test_metrics_module_does_not_import_tensorflow():
  code = ("import importlib.util, sys\n"
          "spec = importlib.util.spec_from_file_location('metrics', "
          f"{m.__file__!r})\n"
          "module = importlib.util.module_from_spec(spec)\n"
          "spec.loader.exec_module(module)\n"
          "print('tensorflow' in sys.modules)\n")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True,
                          text=True, timeout=60, check=True)
  assert result.stdout.strip() == "False"
