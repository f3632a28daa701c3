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
  assert "vs_reference" not in by_name["relu"]
  assert "vs_reference" not in by_name["single"]
  smelu = by_name["smelu"]["vs_reference"]
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
  pd.testing.assert_frame_equal(
      loaded.drop(columns=["vs_reference"]),
      expected.drop(columns=["vs_reference"]), check_dtype=False, rtol=1e-12)
  assert list(loaded["vs_reference"].fillna("")) == list(
      expected["vs_reference"])


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
  assert loaded["variants"][1]["vs_reference"]["verdict"] == "smaller"


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
