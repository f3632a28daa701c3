"""Synthetic teacher data: byte-identical by seed, truth consistent with files."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu import metrics as metrics_lib
from recsys_smelu.data import synthetic


def _files(directory):
  return sorted(os.listdir(directory))


@pytest.mark.parametrize("use_gzip", [False, True])
def test_same_seed_gives_byte_identical_files(tmp_path, use_gzip):
  kwargs = dict(num_train=700, num_eval=300, num_files=2, gzip=use_gzip)
  synthetic.generate(str(tmp_path / "a"), seed=5, **kwargs)
  synthetic.generate(str(tmp_path / "b"), seed=5, **kwargs)
  synthetic.generate(str(tmp_path / "c"), seed=6, **kwargs)
  names = _files(tmp_path / "a")
  suffix = ".tsv.gz" if use_gzip else ".tsv"
  assert names == sorted([f"train-0000{i}-of-00002{suffix}" for i in (0, 1)]
                         + [f"eval-0000{i}-of-00002{suffix}" for i in (0, 1)]
                         + ["eval_truth.txt", "truth.json"])
  for name in names:
    if name != "truth.json":  # holds the output paths
      assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name,
                         shallow=False), name
  assert not filecmp.cmp(tmp_path / "a" / names[0], tmp_path / "c" / names[0],
                         shallow=False)


def test_eval_split_and_teacher_do_not_depend_on_num_train(tmp_path):
  synthetic.generate(str(tmp_path / "a"), 100, 200, seed=1)
  synthetic.generate(str(tmp_path / "b"), 900, 200, seed=1)
  for name in ("eval-00000-of-00001.tsv", "eval_truth.txt"):
    assert filecmp.cmp(tmp_path / "a" / name, tmp_path / "b" / name,
                       shallow=False)


def test_truth_matches_files_and_pipeline(tmp_path):
  directory = str(tmp_path / "d")
  truth = synthetic.generate(directory, 2000, 3000, seed=2, num_files=3,
                             gzip=True)
  with open(os.path.join(directory, "truth.json")) as f:
    assert json.load(f) == json.loads(json.dumps(truth))
  probabilities = np.loadtxt(truth["eval_truth"])
  assert probabilities.shape == (3000,)
  assert 0 < probabilities.min() and probabilities.max() < 1
  config = config_lib.override(config_lib.default_config(), {
      "data.train_files": os.path.join(directory, "train-*"),
      "data.eval_files": os.path.join(directory, "eval-*"),
      "data.eval_truth": truth["eval_truth"]})
  config_lib.validate(config)
  labels = np.concatenate([b[1].numpy() for b in
                           data_lib.build_dataset(config, "eval", 512)])
  assert labels.shape == (3000,)
  assert truth["eval_label_mean"] == pytest.approx(labels.mean())
  bayes = -np.mean(labels * np.log(probabilities)
                   + (1 - labels) * np.log(1 - probabilities))
  assert truth["eval_bayes_log_loss"] == pytest.approx(bayes, rel=1e-9)
  assert truth["eval_bayes_auc"] == pytest.approx(
      metrics.roc_auc_score(labels, probabilities))
  # truth.json's limits are the report's metrics (recsys_smelu.metrics) of
  # the true probabilities, exactly: the excess over Bayes starts at 0.
  report = metrics_lib.model_metrics(labels, probabilities, probabilities)
  assert truth["eval_bayes_log_loss"] == report["logloss"]
  assert truth["eval_bayes_auc"] == report["auc"]
  assert truth["eval_constant_log_loss"] == metrics_lib.log_loss(
      labels, np.full(3000, truth["eval_label_mean"]))
  assert truth["eval_mean_true_ctr"] == pytest.approx(probabilities.mean())
  p = labels.mean()
  assert truth["eval_constant_log_loss"] == pytest.approx(
      -(p * np.log(p) + (1 - p) * np.log(1 - p)))
  # Learnable but not trivial: a clear gap between constant and Bayes.
  assert truth["eval_constant_log_loss"] - truth["eval_bayes_log_loss"] > 0.05
  assert 0.7 < truth["eval_bayes_auc"] < 0.95
  train_rows = sum(int(b[1].shape[0]) for b in
                   data_lib.build_dataset(config, "train", 100, seed=0))
  assert train_rows == 2000


@pytest.mark.parametrize("base_ctr", [0.05, 0.25, 0.6])
def test_mean_true_ctr_is_calibrated(tmp_path, base_ctr):
  truth = synthetic.generate(str(tmp_path), 20_000, 1000, seed=4,
                             base_ctr=base_ctr)
  # Calibrated on a separate 50k sample: the mean over 21k rows is close.
  assert truth["mean_true_ctr"] == pytest.approx(base_ctr, abs=0.01)


def _linear_fit_r2(linear_share):
  """R^2 of the best linear model (one-hot categoricals + dense z) of the
  true logit: what logistic regression could represent at best."""
  teacher = synthetic.make_teacher(0, num_dense=4, num_categorical=6,
                                   max_cardinality=12,
                                   linear_share=linear_share)
  rng = np.random.default_rng(0)
  values, dense = teacher.sample_rows(rng, 20_000)
  logit = teacher.logit(values, dense, 1.5, linear_share)
  columns = [np.ones(len(logit))]
  for f, card in enumerate(teacher.cardinalities):
    columns.extend((values[:, f] == v).astype(float) for v in range(card + 1))
  columns.append(np.log1p(np.maximum(np.nan_to_num(dense), 0)).T)
  design = np.column_stack(columns[:-1] + list(columns[-1]))
  coef, *_ = np.linalg.lstsq(design, logit, rcond=None)
  residual = logit - design @ coef
  return 1 - residual.var() / logit.var()


def test_teacher_has_interactions_a_linear_model_cannot_represent():
  assert _linear_fit_r2(1.0) > 0.999
  assert _linear_fit_r2(0.5) < 0.9  # 0.83 for this seed


def test_bad_arguments_are_rejected(tmp_path):
  with pytest.raises(ValueError, match="base_ctr"):
    synthetic.generate(str(tmp_path), 10, 10, base_ctr=1.5)
  with pytest.raises(ValueError, match="num_files"):
    synthetic.generate(str(tmp_path), 10, 10, num_files=0)


def test_command_line(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "recsys_smelu.data.synthetic",
       f"--output_dir={tmp_path}", "--num_train=50", "--num_eval=40",
       "--seed=3", "--num_files=2", "--gzip", "--base_ctr=0.3"],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert json.loads(result.stdout)["eval_label_mean"] > 0
  assert "train-00001-of-00002.tsv.gz" in _files(tmp_path)
  truth = json.loads((tmp_path / "truth.json").read_text())
  assert truth["generator"]["base_ctr"] == 0.3
  helpfull = subprocess.run(
      [sys.executable, "-m", "recsys_smelu.data.synthetic", "--helpfull"],
      capture_output=True, text=True, timeout=300)
  assert helpfull.returncode == 1  # absl's exit status for --helpfull
  for flag in ("--output_dir", "--num_train", "--num_eval", "--seed",
               "--[no]gzip", "--max_cardinality"):
    assert flag in helpfull.stdout + helpfull.stderr, flag
  missing = subprocess.run(
      [sys.executable, "-m", "recsys_smelu.data.synthetic",
       f"--output_dir={tmp_path}/x", "--num_train=5"],
      capture_output=True, text=True, timeout=300)
  assert missing.returncode == 1 and "--num_eval" in missing.stderr
