"""scripts/keras3_dlrm.py: a keras-rs DLRM with SmeLU on the JAX backend,
a few training steps on the session's synthetic Criteo-format data, run with
every import of TensorFlow blocked."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, RUN_SCRIPT_WITHOUT_TENSORFLOW, tsv_row

_SCRIPT = os.path.join(REPO_ROOT, "scripts", "keras3_dlrm.py")
_SMALL = ["--num_buckets=200", "--embedding_dim=4", "--bottom_mlp=16",
          "--top_mlp=16", "--batch_size=64", "--eval_batch_size=512"]


def _run(args: list[str]) -> subprocess.CompletedProcess:
  env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
  env.update(KERAS_BACKEND="jax", PYTHONPATH=REPO_ROOT)
  return subprocess.run(
      [sys.executable, "-c", RUN_SCRIPT_WITHOUT_TENSORFLOW, _SCRIPT, *args],
      cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_dlrm_trains_on_jax_and_prints_auc_and_log_loss(synthetic_dir,
                                                        tmp_path):
  out = str(tmp_path / "result.json")
  result = _run([f"--data_dir={synthetic_dir}", "--steps=80",
                 "--activation=smelu:beta=1,trainable=true,per_unit=true",
                 f"--json_out={out}", *_SMALL])
  assert result.returncode == 0, result.stderr[-4000:]
  assert "eval AUC " in result.stdout and " log loss " in result.stdout
  with open(out) as f:
    summary = json.load(f)
  assert summary == json.loads(result.stdout.strip().splitlines()[-1])
  assert summary["backend"] == "jax"
  assert summary["steps"] == 80 and summary["eval_rows"] == 1000
  # 80 small steps learn something: better than chance and than the
  # constant predictor's log loss, worse than the Bayes-optimal limits.
  assert 0.55 < summary["auc"] < summary["eval_bayes_auc"]
  assert (summary["eval_bayes_log_loss"] < summary["log_loss"] <
          summary["eval_constant_log_loss"])


def test_dlrm_reports_a_file_with_the_wrong_columns(tmp_path):
  data = tmp_path / "data"
  data.mkdir()
  (data / "train-0.tsv").write_text(tsv_row(1, 3, "a1") + "\n")
  (data / "eval-0.tsv").write_text(tsv_row(0, 2, "b2") + "\n")
  result = _run([f"--data_dir={data}", "--steps=1", *_SMALL])
  assert result.returncode == 2
  assert "train-0.tsv: 3 tab-separated columns, expected 40" in result.stderr


def test_dlrm_rejects_an_unknown_activation(tmp_path):
  result = _run([f"--data_dir={tmp_path}", "--activation=smelo"])
  assert result.returncode == 2
  assert "unknown activation 'smelo' (nearest: 'smelu')" in result.stderr
