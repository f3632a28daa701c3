"""recsys_smelu.report: variant summaries, table, report files and plots."""

from __future__ import annotations

import copy
import json
import os

import numpy as np
import pandas as pd
import pytest

from recsys_smelu import metrics
from recsys_smelu import report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NUM_EXAMPLES = 300


def _synthetic_run(seed: int = 0):
  """Labels, truth, groups and per-variant predictions of a fake twin run.

  Each model is the true logit plus Gaussian noise of the variant's scale, so
  the smelu stand-in (small noise) has a much smaller PD than relu.
  """
  rng = np.random.default_rng(seed)
  truth = rng.uniform(0.02, 0.6, NUM_EXAMPLES)
  labels = (rng.random(NUM_EXAMPLES) < truth).astype(np.int64)
  groups = rng.integers(0, 30, NUM_EXAMPLES)
  true_logit = np.log(truth / (1 - truth))
  predictions = {}
  for name, noise, num_models in [("relu", 0.2, 3), ("smelu", 0.05, 3),
                                  ("gelu", 0.2, 3), ("single", 0.1, 1)]:
    predictions[name] = [
        1 / (1 + np.exp(-(true_logit + rng.normal(0, noise, NUM_EXAMPLES))))
        for _ in range(num_models)]
  return labels, truth, groups, predictions


SPECS = {"relu": "relu", "smelu": "smelu:beta=1", "gelu": "gelu",
         "single": "swish"}


def _results(labels, truth, groups, predictions):
  variants = []
  for name, preds in predictions.items():
    models = [{"index": 5 + i, "seeds": {"init": i + 1, "data": 7},
               "run_dir": f"runs/{name}/{i}",
               "saved_model": f"runs/{name}/{i}/saved_model",
               "predictions": f"runs/{name}/{i}/predictions.npy"}
              for i in range(len(preds))]
    variants.append(report.summarize_variant(
        name, SPECS[name], models, preds, labels, truth=truth, groups=groups,
        k=3))
  return {"config": {"model": {"activation": "relu", "top_mlp": [64, 1]},
                     "train": {"steps": 100}},
          "varied": ["init"], "eval_data": "data/eval.tsv",
          "variants": variants}


ENVIRONMENT = {"tensorflow": "2.21.0", "device": "CPU", "determinism": True,
               "seconds_per_model": 12.5}


@pytest.fixture(scope="module")
def run():
  labels, truth, groups, predictions = _synthetic_run()
  results = _results(labels, truth, groups, predictions)
  return labels, truth, groups, predictions, results


@pytest.fixture(scope="module")
def written(run, tmp_path_factory):
  *_, predictions, results = run
  per_example = {name: metrics.per_example_relative_pd(preds)
                 for name, preds in predictions.items() if len(preds) > 1}
  output_dir = str(tmp_path_factory.mktemp("report"))
  original = copy.deepcopy(results)
  paths = report.write_report(results, output_dir, per_example_pd=per_example,
                              environment=ENVIRONMENT)
  assert results == original, "write_report must not modify its input"
  return output_dir, paths, per_example


# ----------------------------------------------------------------- summaries


def test_summarize_variant_numbers_match_metrics(run):
  labels, truth, groups, predictions, results = run
  relu = results["variants"][0]
  preds = predictions["relu"]
  aucs = [metrics.roc_auc(labels, p) for p in preds]
  losses = [metrics.log_loss(labels, p) for p in preds]
  assert [m["auc"] for m in relu["models"]] == aucs
  assert relu["auc_mean"] == pytest.approx(np.mean(aucs), rel=1e-14)
  assert relu["auc_std"] == pytest.approx(np.std(aucs, ddof=1), rel=1e-12)
  assert relu["logloss_mean"] == pytest.approx(np.mean(losses), rel=1e-14)
  assert relu["calibration_mean"] == pytest.approx(
      np.mean([metrics.calibration(labels, p) for p in preds]), rel=1e-14)
  assert relu["excess_logloss_mean"] == pytest.approx(
      np.mean(losses) - metrics.log_loss(labels, truth), rel=1e-12)
  direct = metrics.pairwise_pd(preds, groups=groups, k=3)
  for key in ("absolute", "relative", "logit", "l2", "relative_std",
              "topk_swap", "frac_rel_above_10pct"):
    assert relu["pd"][key] == direct[key]
  assert relu["num_models"] == 3 and relu["num_examples"] == NUM_EXAMPLES


def test_summarize_variant_keeps_metadata_and_maps_pair_indices(run):
  *_, results = run
  smelu = results["variants"][1]
  assert smelu["models"][2]["saved_model"] == "runs/smelu/2/saved_model"
  assert smelu["models"][0]["seeds"] == {"init": 1, "data": 7}
  # Pairs name models by their index (5, 6, 7), not by list position.
  assert [(p["a"], p["b"]) for p in smelu["pd"]["pairs"]] == [(5, 6), (5, 7),
                                                              (6, 7)]


def test_single_model_variant_has_no_pd_and_no_std(run):
  *_, results = run
  single = results["variants"][3]
  assert single["pd"] is None and single["auc_std"] is None


def test_summarize_variant_bad_input_names_variant():
  with pytest.raises(report.ReportInputError, match="'v': 2 model entries"):
    report.summarize_variant("v", "relu", [{}, {}], [[0.1, 0.2]], [0, 1])
  with pytest.raises(ValueError, match="variant 'v', model 1: predictions"):
    report.summarize_variant("v", "relu", [{}, {}], [[0.1, 0.2], [0.1, 1.5]],
                             [0, 1])


# ----------------------------------------------------------------- comparisons


def test_reference_comparison_verdicts(run):
  *_, results = run
  completed = report.add_comparisons(results)
  assert completed["reference"] == "relu"
  by_name = {v["name"]: v for v in completed["variants"]}
  assert completed["schema_version"] == 2
  assert "vs_reference" not in by_name["relu"]
  # One model: no PD comparison, and too few models for accuracy verdicts.
  single = by_name["single"]["vs_reference"]
  assert single["pd"] is None
  assert single["logloss"]["verdict"] == "too few models"
  assert set(by_name["smelu"]["vs_reference"]) == {"pd", "logloss", "auc",
                                                   "ne"}
  smelu = by_name["smelu"]["vs_reference"]["pd"]
  assert smelu == metrics.compare_pd(by_name["smelu"]["pd"]["pairs"],
                                     by_name["relu"]["pd"]["pairs"])
  assert smelu["verdict"] == "smaller"
  assert smelu["difference"] == pytest.approx(
      by_name["smelu"]["pd"]["relative"] - by_name["relu"]["pd"]["relative"])


def test_reference_found_by_spec_or_absent(run):
  *_, results = run
  renamed = copy.deepcopy(results)
  renamed["variants"][0]["name"] = "baseline"
  assert report.add_comparisons(renamed)["reference"] == "baseline"
  without = copy.deepcopy(results)
  without["variants"] = without["variants"][1:]
  table = report.results_table(without)
  assert (table["vs_reference"] == "").all()
  assert table["pd_difference"].isna().all()
  with pytest.raises(report.ReportInputError, match="'nope', not one of"):
    report.add_comparisons(results, reference="nope")


# ----------------------------------------------------------------- table


def test_results_table_rows_and_numbers(run):
  labels, truth, groups, predictions, results = run
  table = report.results_table(results)
  assert list(table["variant"]) == ["relu", "smelu", "gelu", "single"]
  assert list(table["models"]) == [3, 3, 3, 1]
  assert list(table["vs_reference"])[:2] == ["reference", "smaller"]
  smelu = table.set_index("variant").loc["smelu"]
  direct = metrics.pairwise_pd(predictions["smelu"])
  assert smelu["relative_pd"] == direct["relative"]
  assert smelu["relative_pd_std"] == direct["relative_std"]
  assert smelu["logit_pd"] == direct["logit"]
  assert smelu["l2_pd"] == direct["l2"]
  assert smelu["absolute_pd"] == direct["absolute"]
  assert smelu["auc_mean"] == pytest.approx(
      np.mean([metrics.roc_auc(labels, p) for p in predictions["smelu"]]))
  assert np.isnan(table.set_index("variant").loc["single", "relative_pd"])


def test_markdown_table_escapes_pipes():
  text = report.markdown_table(["a", "b"], [["x|y", 1]])
  assert text.splitlines() == ["| a | b |", "|---|---|", "| x\\|y | 1 |"]


def test_text_table_is_aligned(run):
  *_, results = run
  lines = report.format_text_table(results).splitlines()
  assert lines[0].startswith("Variant") and "vs relu" in lines[0]
  assert [line.split()[0] for line in lines[2:]] == ["relu", "smelu", "gelu",
                                                    "single"]
  # Columns are aligned: 'Spec' starts where every row's spec starts.
  column = lines[0].index("Spec")
  assert all(line[column:].startswith(spec) for line, spec in
             zip(lines[2:], SPECS.values()))
  assert "smaller (" in lines[3]


# ----------------------------------------------------------------- files


def test_all_files_written(written):
  output_dir, paths, _ = written
  assert sorted(paths) == sorted([
      "results.json", "results.csv", "report.md", "pd_vs_logloss.png",
      "pd_histogram.png"])
  for path in paths.values():
    assert os.path.dirname(path) == output_dir and os.path.getsize(path) > 0


@pytest.mark.parametrize("name", ["pd_vs_logloss.png", "pd_histogram.png"])
def test_plots_are_png(written, name):
  output_dir, _, _ = written
  with open(os.path.join(output_dir, name), "rb") as f:
    data = f.read()
  assert data.startswith(PNG_SIGNATURE)
  from matplotlib import image  # pylint: disable=g-import-not-at-top
  pixels = image.imread(os.path.join(output_dir, name))  # floats in [0, 1]
  height, width, _ = pixels.shape
  assert height > 200 and width > 200
  rgb = pixels[..., :3].reshape(-1, 3)
  # Not blank: axes, text and data leave many non-white pixels in several
  # colours (a blank or failed figure is one colour).
  assert (rgb.min(axis=1) < 0.9).mean() > 0.01
  assert len(np.unique(np.round(rgb * 255).astype(np.uint8), axis=0)) > 20


def test_csv_round_trips(written, run):
  output_dir, _, _ = written
  *_, results = run
  loaded = pd.read_csv(os.path.join(output_dir, "results.csv"),
                       keep_default_na=False, na_values=[""])
  expected = report.results_table(results)
  assert list(loaded.columns) == list(expected.columns)
  assert list(loaded["variant"]) == ["relu", "smelu", "gelu", "single"]
  verdicts = ["vs_reference", "logloss_vs_reference", "auc_vs_reference",
              "ne_vs_reference"]
  pd.testing.assert_frame_equal(
      loaded.drop(columns=verdicts), expected.drop(columns=verdicts),
      check_dtype=False, rtol=1e-12)
  for column in verdicts:
    assert list(loaded[column].fillna("")) == list(expected[column]), column


def test_json_is_strict_and_complete(written, run):
  output_dir, _, _ = written
  *_, results = run
  def reject(constant):
    raise AssertionError(f"non-standard JSON constant {constant}")
  with open(os.path.join(output_dir, "results.json"), encoding="utf-8") as f:
    loaded = json.load(f, parse_constant=reject)
  assert loaded["varied"] == ["init"] and loaded["eval_data"] == "data/eval.tsv"
  assert loaded["environment"] == ENVIRONMENT
  assert loaded["reference"] == "relu"
  relu = loaded["variants"][0]
  assert relu["pd"]["relative"] == results["variants"][0]["pd"]["relative"]
  assert len(relu["pd"]["pairs"]) == 3
  assert loaded["variants"][3]["pd"] is None
  assert loaded["schema_version"] == 2
  assert loaded["variants"][1]["vs_reference"]["pd"]["verdict"] == "smaller"
  assert loaded["variants"][1]["vs_reference"]["logloss"]["n"] == 3


def test_markdown_contents(written):
  output_dir, _, _ = written
  with open(os.path.join(output_dir, "report.md"), encoding="utf-8") as f:
    text = f.read()
  for name, spec in SPECS.items():
    assert f"| {name} | {spec} |" in text
  assert "Varied between the models of a variant: `init`" in text
  assert "| device | CPU |" in text and "| determinism | True |" in text
  assert '<details><summary>Config (JSON)</summary>' in text
  assert '"top_mlp": [\n      64,\n      1\n    ]' in text
  assert "![relative PD vs log loss](pd_vs_logloss.png)" in text
  assert "![per-example relative PD](pd_histogram.png)" in text
  assert "Bootstrap interval" in text and "do not overlap" in text
  # Per-pair table: relu pairs named by model index.
  assert "| relu | 5 | 6 |" in text


def test_report_is_deterministic_and_histogram_optional(written, run,
                                                         tmp_path):
  output_dir, _, per_example = written
  *_, results = run
  report.write_report(results, str(tmp_path / "again"),
                      per_example_pd=per_example, environment=ENVIRONMENT)
  for name in ("results.json", "results.csv", "report.md",
               "pd_vs_logloss.png", "pd_histogram.png"):
    with open(os.path.join(output_dir, name), "rb") as f1, open(
        tmp_path / "again" / name, "rb") as f2:
      assert f1.read() == f2.read(), name
  paths = report.write_report(results, str(tmp_path / "nohist"))
  assert "pd_histogram.png" not in paths
  assert not (tmp_path / "nohist" / "pd_histogram.png").exists()
  text = (tmp_path / "nohist" / "report.md").read_text(encoding="utf-8")
  assert "No histogram" in text and "Not recorded." in text


def test_bad_results_and_per_example_input(tmp_path, run):
  *_, results = run
  with pytest.raises(report.ReportInputError, match="'variants' list"):
    report.write_report({"variants": None}, str(tmp_path))
  broken = copy.deepcopy(results)
  del broken["variants"][1]["auc_mean"]
  with pytest.raises(report.ReportInputError,
                     match=r"\['variants'\]\[1\]: missing key 'auc_mean'"):
    report.results_table(broken)
  with pytest.raises(report.ReportInputError, match="per_example_pd\\['relu'\\]"):
    report.write_report(results, str(tmp_path),
                        per_example_pd={"relu": [0.1, float("nan")]})
  assert not os.listdir(tmp_path), "nothing written on bad input"


# ----------------------------------------------------------------- accuracy
# Hand-made results: per-model values chosen so every verdict is known.

ENTROPY_OF_QUARTER = 0.5623351446188083  # -(0.25 ln 0.25 + 0.75 ln 0.75)


def _hand_variant(name, loglosses, aucs, pair_values, mean_label=0.25):
  models = [{"index": i, "logloss": ll, "auc": auc,
             "ne": ll / ENTROPY_OF_QUARTER}
            for i, (ll, auc) in enumerate(zip(loglosses, aucs))]
  pd_summary = None
  if pair_values:
    pd_summary = {"relative": float(np.mean(pair_values)),
                  "relative_std": metrics.sample_std(pair_values),
                  "absolute": 0.01, "logit": 0.1, "l2": 0.02,
                  "frac_rel_above_10pct": 0.5,
                  "num_pairs": len(pair_values),
                  "pairs": [{"a": 0, "b": k + 1, "relative": v}
                            for k, v in enumerate(pair_values)]}
  return {"name": name, "spec": name, "num_models": len(models),
          "num_examples": 1000, "mean_label": mean_label, "models": models,
          "auc_mean": float(np.mean(aucs)), "auc_std": metrics.sample_std(aucs),
          "logloss_mean": float(np.mean(loglosses)),
          "logloss_std": metrics.sample_std(loglosses),
          "calibration_mean": 1.0, "calibration_std": None,
          "ne_mean": float(np.mean(loglosses)) / ENTROPY_OF_QUARTER,
          "ne_std": None, "pd": pd_summary}


def _hand_results():
  return {"varied": ["init"], "eval_data": "eval.tsv", "variants": [
      _hand_variant("relu", [0.60, 0.61, 0.62], [0.70, 0.70, 0.71],
                    [0.20, 0.21, 0.22]),
      # Every model worse than every relu model, on both axes; PD smaller.
      _hand_variant("smelu", [0.63, 0.64, 0.65], [0.68, 0.685, 0.69],
                    [0.10, 0.11, 0.12]),
      # Log loss ranges overlap; AUC above relu's in every model.
      _hand_variant("gelu", [0.59, 0.605, 0.63], [0.72, 0.73, 0.74],
                    [0.19, 0.21, 0.25]),
      # Two models (one pair): no verdict on either axis.
      _hand_variant("pair", [0.50, 0.51], [0.80, 0.80], [0.05]),
  ]}


HEADLINES = [
    "- relu: reference (log loss 0.61 ± 0.01, AUC 0.7033 ± 0.0058, 3 models)",
    "- smelu: PD \u221248% (smaller), log loss +0.03 (worse), "
    "AUC \u22120.018 (worse)",
    "- gelu: PD +3.2% (within spread), log loss \u22120.0017 (within spread), "
    "AUC +0.027 (better)",
    "- pair: PD \u221276% (too few pairs), log loss \u22120.1 "
    "(too few models), AUC +0.1 (too few models)",
]

# results.csv columns of schema 1, in order (no excess log loss, no top-k).
SCHEMA1_COLUMNS = [
    "variant", "spec", "models", "auc_mean", "auc_std", "logloss_mean",
    "logloss_std", "calibration_mean", "calibration_std", "relative_pd",
    "relative_pd_std", "absolute_pd", "logit_pd", "l2_pd",
    "frac_rel_above_10pct", "pairs", "vs_reference", "pd_difference",
    "pd_ci_low", "pd_ci_high"]
NEW_COLUMNS = [
    "ne_mean", "ne_std",
    "logloss_vs_reference", "logloss_difference", "logloss_ci_low",
    "logloss_ci_high", "auc_vs_reference", "auc_difference", "auc_ci_low",
    "auc_ci_high", "ne_vs_reference", "ne_difference", "ne_ci_low",
    "ne_ci_high"]


def test_compare_accuracy_verdicts_by_hand():
  # Log loss (lower is better): every paired difference -0.05, ranges apart.
  better = metrics.compare_accuracy([0.50, 0.51, 0.52], [0.55, 0.56, 0.57],
                                    higher_is_better=False)
  assert better["verdict"] == "better"
  assert better["difference"] == pytest.approx(-0.05)
  assert better["ci_low"] == pytest.approx(-0.05)
  assert better["ci_high"] == pytest.approx(-0.05)
  assert better["wins"] == 3 and better["n"] == 3
  assert better["range_a"] == [0.50, 0.52] and not better["ranges_overlap"]
  # Sign flips of 3 equal differences: 2 of the 2^3 patterns are as extreme.
  assert better["permutation_p"] == pytest.approx(2 / 8)
  worse = metrics.compare_accuracy([0.55, 0.56, 0.57], [0.50, 0.51, 0.52],
                                   higher_is_better=False)
  assert worse["verdict"] == "worse" and worse["wins"] == 0
  # AUC (higher is better).
  auc = metrics.compare_accuracy([0.72, 0.73, 0.74], [0.70, 0.70, 0.71],
                                 higher_is_better=True)
  assert auc["verdict"] == "better"
  assert auc["difference"] == pytest.approx(0.08 / 3)
  assert metrics.compare_accuracy([0.68, 0.685, 0.69], [0.70, 0.70, 0.71],
                                  higher_is_better=True)["verdict"] == "worse"


def test_compare_accuracy_overlap_is_within_spread():
  # Each model 0.01 better than its twin (the interval is [-0.01, -0.01]),
  # but the ranges 0.50..0.54 and 0.51..0.55 overlap: the PD rule says no.
  result = metrics.compare_accuracy([0.50, 0.52, 0.54], [0.51, 0.53, 0.55],
                                    higher_is_better=False)
  assert result["ci_high"] == pytest.approx(-0.01) and result["wins"] == 3
  assert result["ranges_overlap"]
  assert result["verdict"] == "within spread"


def test_compare_accuracy_pairs_by_model_index_and_too_few_models():
  # Only indices 0, 1, 2 are in both; 7 and 9 are left out.
  result = metrics.compare_accuracy({0: 0.50, 1: 0.51, 2: 0.52, 9: 0.1},
                                    {2: 0.57, 0: 0.55, 1: 0.56, 7: 0.9},
                                    higher_is_better=False)
  assert result["indices"] == [0, 1, 2]
  assert result["difference"] == pytest.approx(-0.05)
  assert result["verdict"] == "better"
  two = metrics.compare_accuracy([0.50, 0.51], [0.60, 0.61],
                                 higher_is_better=False)
  assert two["verdict"] == "too few models"
  assert two["difference"] == pytest.approx(-0.1)
  none = metrics.compare_accuracy({3: 0.5}, {4: 0.5}, higher_is_better=False)
  assert none["n"] == 0 and none["difference"] is None
  assert none["verdict"] == "too few models"
  with pytest.raises(ValueError, match=r"values_a\[1\]: 1 non-finite"):
    metrics.compare_accuracy([0.5, float("nan")], [0.5, 0.5], False)


def test_normalized_entropy_by_hand():
  assert metrics.base_rate_entropy(0.25) == pytest.approx(ENTROPY_OF_QUARTER,
                                                          rel=1e-14)
  assert metrics.normalized_entropy(0.5, 0.25) == pytest.approx(
      0.5 / ENTROPY_OF_QUARTER, rel=1e-14)
  assert metrics.normalized_entropy(0.5, 0.0) is None
  assert metrics.normalized_entropy(0.5, 1.0) is None


def test_summarize_variant_adds_normalized_entropy(run):
  labels, *_, results = run
  relu = results["variants"][0]
  base = float(np.mean(labels))
  entropy = -(base * np.log(base) + (1 - base) * np.log(1 - base))
  for model in relu["models"]:
    assert model["ne"] == pytest.approx(model["logloss"] / entropy, rel=1e-12)
  assert relu["ne_mean"] == pytest.approx(relu["logloss_mean"] / entropy,
                                          rel=1e-12)


def test_vs_reference_holds_both_axes_by_hand():
  completed = report.add_comparisons(_hand_results())
  assert completed["schema_version"] == 2 and completed["reference"] == "relu"
  by_name = {v["name"]: v["vs_reference"] for v in completed["variants"][1:]}
  verdicts = {name: {axis: c[axis]["verdict"] for axis in ("pd", "logloss",
                                                           "auc", "ne")}
              for name, c in by_name.items()}
  assert verdicts == {
      "smelu": {"pd": "smaller", "logloss": "worse", "auc": "worse",
                "ne": "worse"},
      "gelu": {"pd": "within spread", "logloss": "within spread",
               "auc": "better", "ne": "within spread"},
      "pair": {"pd": "too few pairs", "logloss": "too few models",
               "auc": "too few models", "ne": "too few models"},
  }
  smelu = by_name["smelu"]
  assert smelu["logloss"]["difference"] == pytest.approx(0.03)
  assert smelu["logloss"]["ci_low"] == pytest.approx(0.03)
  assert smelu["auc"]["difference"] == pytest.approx(-0.055 / 3)
  assert smelu["ne"]["difference"] == pytest.approx(0.03 / ENTROPY_OF_QUARTER)
  assert by_name["gelu"]["logloss"]["difference"] == pytest.approx(-0.005 / 3)
  assert by_name["pair"]["logloss"]["indices"] == [0, 1]


def test_ne_is_derived_from_log_loss_when_models_lack_it():
  results = _hand_results()
  for variant in results["variants"]:
    for model in variant["models"]:
      del model["ne"]
  smelu = report.add_comparisons(results)["variants"][1]["vs_reference"]
  assert smelu["ne"]["difference"] == pytest.approx(0.03 / ENTROPY_OF_QUARTER)
  # A base rate of 0 leaves NE undefined: no NE comparison, the rest stays.
  results["variants"][1]["mean_label"] = 0.0
  smelu = report.add_comparisons(results)["variants"][1]["vs_reference"]
  assert "ne" not in smelu and smelu["logloss"]["verdict"] == "worse"


def test_results_table_keeps_schema1_columns_first():
  table = report.results_table(_hand_results())
  assert list(table.columns) == SCHEMA1_COLUMNS + NEW_COLUMNS
  rows = table.set_index("variant")
  assert list(table["vs_reference"]) == ["reference", "smaller",
                                         "within spread", "too few pairs"]
  assert list(table["logloss_vs_reference"]) == [
      "reference", "worse", "within spread", "too few models"]
  assert list(table["auc_vs_reference"]) == [
      "reference", "worse", "better", "too few models"]
  assert rows.loc["smelu", "logloss_difference"] == pytest.approx(0.03)
  assert rows.loc["smelu", "logloss_ci_high"] == pytest.approx(0.03)
  assert rows.loc["gelu", "auc_difference"] == pytest.approx(0.08 / 3)
  assert np.isnan(rows.loc["relu", "auc_difference"])


def test_csv_keeps_schema1_columns_with_excess_and_topk(written):
  output_dir, _, _ = written
  columns = list(pd.read_csv(os.path.join(output_dir, "results.csv")).columns)
  schema1 = (SCHEMA1_COLUMNS[:9] + ["excess_logloss_mean", "excess_logloss_std"]
             + SCHEMA1_COLUMNS[9:15] + ["topk_swap"] + SCHEMA1_COLUMNS[15:])
  assert columns == schema1 + NEW_COLUMNS


def test_report_md_opens_with_one_verdict_line_per_variant(tmp_path):
  report.write_report(_hand_results(), str(tmp_path))
  lines = (tmp_path / "report.md").read_text(encoding="utf-8").splitlines()
  assert lines[:7] == ["# Twin evaluation report", ""] + HEADLINES + [""]
  text = "\n".join(lines)
  # The results table shows every verdict with its difference ...
  assert ("| smaller (-0.1) | worse (+0.03) | worse (-0.0183) | "
          "worse (+0.0533) |") in text
  # ... and the accuracy section every comparison.
  assert "## Accuracy versus the reference" in text
  assert ("| gelu | AUC | 3 | +0.02667 | [+0.02, +0.03] | 0.72 .. 0.74 | "
          "0.7 .. 0.71 | 3/3 | 0.25 | better |") in text
  assert "| pair | log loss | 2 | -0.1 |" in text
  assert "paired model indices are resampled" in text


def test_text_table_shows_every_verdict():
  lines = report.format_text_table(_hand_results()).splitlines()
  for title in ("PD vs relu", "Log loss vs relu", "AUC vs relu", "NE vs relu"):
    assert title in lines[0]
  smelu = lines[3]
  assert smelu.startswith("smelu")
  for cell in ("smaller (-0.1)", "worse (+0.03)", "worse (-0.0183)",
               "worse (+0.0533)"):
    assert cell in smelu
  assert "better (+0.0267)" in lines[4]
  assert lines[5].count("too few models") == 3


def _as_schema1(results):
  """What the report wrote before schema 2: vs_reference = the PD comparison."""
  old = report.add_comparisons(results)
  del old["schema_version"]
  for variant in old["variants"]:
    if "vs_reference" in variant:
      variant["vs_reference"] = variant["vs_reference"]["pd"]
  return old


def test_schema1_results_are_read_as_schema2(tmp_path):
  expected = report.add_comparisons(_hand_results())
  old = _as_schema1(_hand_results())
  path = tmp_path / "results.json"
  path.write_text(json.dumps(old))
  loaded = report.load_results(str(path))
  assert loaded["schema_version"] == 2
  assert [v.get("vs_reference") for v in loaded["variants"]] == [
      v.get("vs_reference") for v in expected["variants"]]
  pd.testing.assert_frame_equal(report.results_table(old),
                                report.results_table(expected))
  # A schema-2 file reads back unchanged.
  report.write_report(_hand_results(), str(tmp_path / "new"))
  again = report.load_results(str(tmp_path / "new" / "results.json"))
  assert [v.get("vs_reference") for v in again["variants"]] == [
      v.get("vs_reference") for v in expected["variants"]]


def test_unknown_schema_or_bad_json_is_a_clear_error(tmp_path):
  newer = report.add_comparisons(_hand_results())
  newer["schema_version"] = 3
  with pytest.raises(report.ReportInputError,
                     match="schema_version 3 is not one this version"):
    report.results_table(newer)
  path = tmp_path / "results.json"
  path.write_text(json.dumps(newer))
  with pytest.raises(report.ReportInputError,
                     match=f"{path}: results: schema_version 3"):
    report.load_results(str(path))
  path.write_text("{not json")
  with pytest.raises(report.ReportInputError, match=f"{path}: not valid JSON"):
    report.load_results(str(path))


def test_pd_vs_logloss_shades_the_reference_log_loss_band():
  results = report.add_comparisons(_hand_results())
  assert report.reference_logloss_band(results) == (0.60, 0.62)
  figure = report.pd_vs_logloss_figure(results)
  spans = []
  for patch in figure.axes[0].patches:
    x = patch.get_path().transformed(patch.get_patch_transform()).vertices[:, 0]
    spans.append((float(x.min()), float(x.max())))
  assert any(lo == pytest.approx(0.60) and hi == pytest.approx(0.62)
             for lo, hi in spans), spans
  legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
  assert "relu log loss, min..max over models" in legend
  without = copy.deepcopy(_hand_results())
  without["variants"] = without["variants"][1:]
  assert report.reference_logloss_band(report.add_comparisons(without)) is None
