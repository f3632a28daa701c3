"""scripts/study_tables.py: the study tables and targets from twin results.

Results are built from hand-made predictions with ``report.summarize_variant``
(as the twin evaluator does), so every verdict and the target lines can be
checked against what the numbers must give.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

from recsys_smelu import report as report_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_script():
  spec = importlib.util.spec_from_file_location(
      "study_tables", os.path.join(REPO_ROOT, "scripts", "study_tables.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


study_tables = _load_script()


def _write_results(tmp_path, quality):
  """A results.json: variant name -> (logit noise scale, wide, val loss)."""
  rng = np.random.default_rng(0)
  n = 400
  truth_logit = rng.normal(size=n)
  labels = (rng.random(n) < 1 / (1 + np.exp(-truth_logit))).astype(np.float32)
  variants = []
  for name, (noise, wide, validation_loss) in quality.items():
    models, predictions = [], []
    for i in range(5):
      run_dir = tmp_path / "runs" / name / str(i)
      run_dir.mkdir(parents=True)
      (run_dir / "config.json").write_text(json.dumps(
          {"model": {"wide": wide}}))
      (run_dir / "validation.json").write_text(json.dumps(
          [{"step": 50, "logloss": validation_loss + 0.001 * i, "auc": 0.7,
            "ne": 0.9},
           {"step": 100, "logloss": validation_loss + 0.1, "auc": 0.6,
            "ne": 1.0}]))
      logit = truth_logit + noise * rng.normal(size=n)
      predictions.append(1 / (1 + np.exp(-logit)))
      models.append({"index": i, "run_dir": os.path.relpath(run_dir, tmp_path)})
    entry = report_lib.summarize_variant(name, name, models, predictions,
                                         labels)
    entry["train_steps"] = 50
    variants.append(entry)
  results = report_lib.add_comparisons(
      {"config": {}, "varied": ["data_order"],
       "variants": variants})
  path = tmp_path / "results.json"
  path.write_text(json.dumps(results, default=lambda x: x.tolist()))
  return str(path)


def test_table_has_every_verdict_and_the_targets(tmp_path):
  path = _write_results(tmp_path, {
      "relu": (2.0, False, 0.50),
      "logreg": (0.8, False, 0.49),
      "relu_wide": (0.1, True, 0.40),  # best on validation and on eval
      "gelu": (0.05, False, 0.45),  # best without wide
  })
  block = study_tables.study_block("s", path)
  lines = block.splitlines()
  header = next(line for line in lines if line.startswith("| Variant"))
  assert "PD vs relu" in header and "Log loss vs logreg" in header
  rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
          for line in lines if line.startswith("| ") and "---" not in line
          and not line.startswith("| Variant")}
  assert rows["relu"][5:8] == ["reference"] * 3
  assert rows["logreg"][8:] == ["reference"] * 2
  # Validation log loss: mean of the 5 models' values at step 50.
  assert rows["gelu"][1].startswith("0.4520")
  # Much less logit noise than logreg: better in log loss, every model.
  assert rows["gelu"][8].startswith("better (")
  assert rows["relu"][8].startswith("worse (")
  assert "**gelu**" in block and "Target (eval log loss ≤ logreg's): **met**" in block
  assert "best deep variant (chosen on validation, 0.4020): **relu_wide**" in block
  assert 'Target (log loss "better" than logreg): **met**' in block


def test_targets_not_met_say_so(tmp_path):
  path = _write_results(tmp_path, {
      "relu": (1.0, False, 0.50),
      "logreg": (0.1, False, 0.49),
      "gelu": (1.2, False, 0.45),
  })
  block = study_tables.study_block("s", path)
  assert block.count("**not met**") == 2


def test_replace_block_needs_the_markers():
  text = "a\n<!-- study:x -->\nold\n<!-- /study:x -->\nb\n"
  assert study_tables.replace_block(text, "x", "new") == (
      "a\n<!-- study:x -->\nnew\n<!-- /study:x -->\nb\n")
  with pytest.raises(SystemExit, match="study:y"):
    study_tables.replace_block(text, "y", "new")
