"""Writes the study tables of docs/reproducibility.md from twin results.

``scripts/run_studies.sh`` runs the twin evaluator once per study (data set
x what the twins vary) and then calls this script, which reads each
``results.json`` and replaces the block between ``<!-- study:NAME -->`` and
``<!-- /study:NAME -->`` in the document with a table:

* one row per variant: its training length (chosen on validation), the mean
  validation log loss of its models at that length, eval log loss and AUC
  (mean ± std over models), relative PD (mean ± std over pairs);
* the verdicts of ``recsys_smelu.report`` against ``relu`` (PD, log loss,
  AUC) and against ``logreg`` (log loss, AUC): paired by model index, a
  difference beyond the spread of both, else "within spread";
* below it, the issue's accuracy targets as measured: the deep variant
  without the wide part that is best *on validation*, and the best deep
  variant on validation, each with its eval log loss and verdict against
  logistic regression. Variants are ranked on validation only; the eval
  split is used for the verdicts, never for the choice.

  python scripts/study_tables.py --doc=docs/reproducibility.md \
      criteo_shared_init=/tmp/studies/criteo_shared_init/results.json ...
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from recsys_smelu import report as report_lib  # noqa: E402

LOGREG = "logreg"
RELU = "relu"


def _fmt(value, spec=".4f") -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  return format(float(value), spec)


def _mean_std(values, spec=".4f") -> str:
  values = [v for v in values if v is not None]
  if not values:
    return "n/a"
  if len(values) == 1:
    return _fmt(values[0], spec)
  return f"{_fmt(np.mean(values), spec)} ± {np.std(values, ddof=1):.2g}"


def _validation_logloss(run_dir: str, step: int | None) -> float | None:
  """The model's validation log loss at ``step`` (validation.json)."""
  path = os.path.join(run_dir, "validation.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    points = json.load(f)
  at_step = [p["logloss"] for p in points if p["step"] == step]
  return at_step[-1] if at_step else None


def _verdict(comparison, percent_of=None) -> str:
  if not comparison:
    return "n/a"
  verdict = comparison.get("verdict") or "n/a"
  difference = comparison.get("difference")
  if difference is None:
    return verdict
  if percent_of:
    return f"{verdict} ({100.0 * difference / percent_of:+.0f}%)"
  return f"{verdict} ({difference:+.4f})"


def is_deep(variant: dict) -> bool:
  return variant["name"] != LOGREG


def has_wide(variant: dict, results_dir: str) -> bool:
  """Whether the variant's models have the wide part: ``model.wide`` in its
  first model's config.json (the trainer's resolved config)."""
  run_dir = os.path.join(results_dir, variant["models"][0]["run_dir"])
  with open(os.path.join(run_dir, "config.json")) as f:
    return bool(json.load(f)["model"]["wide"])


def study_rows(results: dict, results_dir: str = ""
               ) -> tuple[list[str], list[list[str]], dict]:
  """Header, rows and per-variant numbers of one study (run directories
  relative to ``results_dir``, where results.json is, as the twin writes
  them)."""
  vs_relu = report_lib.add_comparisons(results, reference=RELU)
  names = [v["name"] for v in vs_relu["variants"]]
  vs_logreg = (report_lib.add_comparisons(results, reference=LOGREG)
               if LOGREG in names else None)
  logreg_by_name = ({v["name"]: v for v in vs_logreg["variants"]}
                    if vs_logreg else {})
  relu = next((v for v in vs_relu["variants"] if v["name"] == RELU), None)
  relu_pd = (relu or {}).get("pd") or {}
  header = ["Variant", "Steps", "Val. log loss", "Log loss", "AUC",
            "Rel. PD", "PD vs relu", "Log loss vs relu", "AUC vs relu",
            "Log loss vs logreg", "AUC vs logreg"]
  rows, numbers = [], {}
  for v in vs_relu["variants"]:
    steps = v.get("train_steps")
    validation = [_validation_logloss(os.path.join(results_dir, m["run_dir"]),
                                      steps)
                  for m in v["models"] if m.get("run_dir")]
    validation = [x for x in validation if x is not None]
    pd_summary = v.get("pd") or {}
    pairs = [p["relative"] for p in pd_summary.get("pairs", [])]
    relu_comparisons = v.get("vs_reference") or {}
    logreg_comparisons = logreg_by_name.get(v["name"], {}).get(
        "vs_reference") or {}
    is_relu, is_logreg = v["name"] == RELU, v["name"] == LOGREG
    rows.append([
        v["name"], str(steps) if steps is not None else "n/a",
        _mean_std(validation), _mean_std([m["logloss"] for m in v["models"]]),
        _mean_std([m["auc"] for m in v["models"]]),
        _mean_std(pairs, ".3f"),
        "reference" if is_relu else _verdict(relu_comparisons.get("pd"),
                                              relu_pd.get("relative")),
        "reference" if is_relu else _verdict(relu_comparisons.get("logloss")),
        "reference" if is_relu else _verdict(relu_comparisons.get("auc")),
        "reference" if is_logreg else _verdict(
            logreg_comparisons.get("logloss")),
        "reference" if is_logreg else _verdict(logreg_comparisons.get("auc")),
    ])
    numbers[v["name"]] = {
        "validation_logloss": float(np.mean(validation)) if validation else None,
        "logloss": v["logloss_mean"],
        "vs_logreg": logreg_comparisons.get("logloss"),
        "wide": has_wide(v, results_dir),
    }
  return header, rows, numbers


def targets_text(numbers: dict) -> str:
  """The accuracy targets as measured, variants ranked on validation."""
  if LOGREG not in numbers:
    return "No logreg variant in this study: no target to check."
  logreg = numbers[LOGREG]["logloss"]
  lines = []
  deep = {n: x for n, x in numbers.items()
          if n != LOGREG and x["validation_logloss"] is not None}
  for label, pool in (
      ("best deep variant without the wide part",
       {n: x for n, x in deep.items() if not x["wide"]}),
      ("best deep variant", deep)):
    if not pool:
      lines.append(f"- {label}: none with validation log loss")
      continue
    name = min(pool, key=lambda n: pool[n]["validation_logloss"])
    x = pool[name]
    verdict = (x["vs_logreg"] or {}).get("verdict", "n/a")
    met = ("met" if (label.endswith("wide part") and x["logloss"] <= logreg)
           or (not label.endswith("wide part") and verdict == "better")
           else "not met")
    target = ("eval log loss ≤ logreg's" if label.endswith("wide part")
              else "log loss \"better\" than logreg")
    lines.append(
        f"- {label} (chosen on validation, {x['validation_logloss']:.4f}): "
        f"**{name}**, eval log loss {x['logloss']:.4f} vs logreg "
        f"{logreg:.4f}, verdict {verdict}. Target ({target}): **{met}**.")
  return "\n".join(lines)


def study_block(name: str, results_path: str) -> str:
  results = report_lib.load_results(results_path)
  header, rows, numbers = study_rows(results, os.path.dirname(results_path))
  models = sorted({len(v["models"]) for v in results["variants"]})
  varied = ", ".join(results.get("varied", []))
  return "\n".join([
      f"Twins vary: {varied}; models per variant: "
      f"{', '.join(map(str, models))}. Results: `{results_path}`.",
      "",
      report_lib.markdown_table(header, rows),
      "",
      targets_text(numbers),
  ])


def replace_block(text: str, name: str, block: str) -> str:
  """``text`` with the block between the study's markers replaced."""
  begin, end = f"<!-- study:{name} -->", f"<!-- /study:{name} -->"
  pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
  if not pattern.search(text):
    raise SystemExit(f"error: no '{begin}' ... '{end}' block in the document")
  return pattern.sub(lambda _: f"{begin}\n{block}\n{end}", text)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--doc", required=True,
                      help="markdown file with the study blocks")
  parser.add_argument("studies", nargs="+", metavar="NAME=RESULTS_JSON")
  args = parser.parse_args()
  with open(args.doc) as f:
    text = f.read()
  for item in args.studies:
    name, sep, path = item.partition("=")
    if not sep:
      raise SystemExit(f"error: expected NAME=RESULTS_JSON, got {item!r}")
    if not os.path.exists(path):
      raise SystemExit(f"error: {path}: no such results file (study {name})")
    text = replace_block(text, name, study_block(name, path))
    print(f"{name}: table from {path}")
  with open(args.doc, "w") as f:
    f.write(text)


if __name__ == "__main__":
  main()
