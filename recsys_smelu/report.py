"""Twin-evaluation results: summaries, tables, report files and plots.

The evaluator trains M models per variant, then calls

* ``summarize_variant(...)`` once per variant with the raw eval arrays; it
  returns that variant's entry of ``results["variants"]`` (per-model accuracy
  from ``recsys_smelu.metrics``, mean and sample std over models, and the PD
  family over all M(M-1)/2 pairs with every pair kept);
* ``write_report(results, output_dir, ...)`` to write, in ``output_dir``:
  ``results.json`` (the results dict), ``results.csv`` (one row per variant),
  ``report.md``, ``pd_vs_logloss.png`` and ``pd_histogram.png``;
* ``format_text_table(results)`` for the table printed at the end.
``load_results(path)`` reads a results.json back (schema 1 or 2, returned as
schema 2).

results dict, schema 2 (keys the evaluator fills in marked *):
  ``{"schema_version": 2, "config"*: {...}, "varied"*: [...],
  "eval_data"*: str, "reference": name or None, "environment": {...},
  "variants": [summarize_variant(...), ...]}``
Each variant: ``name, spec, num_models, num_examples, mean_label, models
[{index, seeds*, run_dir*, saved_model*, predictions*, ..., auc, logloss,
calibration, mean_prediction[, ne][, excess_logloss]}], auc_mean, auc_std,
logloss_mean, logloss_std, calibration_mean, calibration_std[, ne_mean,
ne_std][, excess_logloss_mean, excess_logloss_std, bayes_logloss], pd``
(None for one model, else ``metrics.pairwise_pd`` with a/b as model indices),
and for every variant but the reference ``vs_reference``: ``{"pd":
metrics.compare_pd of its pair relative PDs against the reference's (None
unless both have 2+ models), "logloss", "auc"[, "ne"]:
metrics.compare_accuracy of its per-model values against the reference's,
paired by model index}``. ``ne`` (normalized entropy, log loss / entropy of
the eval base rate) is there when the base rate is strictly between 0 and 1.
Stds are sample stds (ddof=1), None (JSON null) when there is a single model
or pair.

Schema 1 (no ``schema_version`` key) had ``vs_reference`` = the PD comparison
alone; ``load_results``, ``write_report`` and the tables recompute the
comparisons of such a dict from its per-model values and pairs.

The reference for comparisons is ``results["reference"]`` when set, else
the variant named ``relu``, else the one whose spec is ``relu``.

Only numpy, pandas and matplotlib (Agg canvas, no pyplot state); no
TensorFlow.
"""

from __future__ import annotations

import copy
import json
import math
import os
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from recsys_smelu import metrics

SCHEMA_VERSION = 2
RESULTS_JSON = "results.json"
RESULTS_CSV = "results.csv"
REPORT_MD = "report.md"
PD_VS_LOGLOSS_PNG = "pd_vs_logloss.png"
PD_HISTOGRAM_PNG = "pd_histogram.png"

# Accuracy metrics judged against the reference: (key, higher is better).
ACCURACY_METRICS = (("logloss", False), ("auc", True), ("ne", False))
ACCURACY_LABELS = {"logloss": "log loss", "auc": "AUC", "ne": "NE"}

# Per-example relative PD below this is drawn in the histogram's first bin
# (log x axis; exact zeros included).
HISTOGRAM_FLOOR = 1e-4

COMPARISON_METHOD = f"""\
One pair of models is one noisy sample of a variant's prediction difference,
so each variant is compared with the reference on its per-pair relative PD
values (`metrics.compare_pd`):

1. *Difference*: mean relative PD of the variant minus the reference's
   (negative: the variant is more reproducible).
2. *Bootstrap interval*: 2000 times, the pair values of each variant are
   resampled with replacement (within the variant) and the difference of
   means is taken; the 2.5-97.5 percentiles form the 95% interval (seed 0).
3. *Verdict*: "smaller" / "larger" only when the interval excludes 0 **and**
   the ranges (min..max) of the two variants' pair values do not overlap;
   otherwise "within spread". With fewer than {metrics.MIN_PAIRS_FOR_VERDICT}
   pairs in either variant: "too few pairs".

Why both conditions: with 3 models (3 pairs, which share models) the
bootstrap sees at most 10 distinct resampled means per side and its interval
is too narrow. Complete separation of the pair values is a rank test: were
all values exchangeable, it would happen in a given direction with
probability 1/C(n_a + n_b, n_a) (1/20 for 3 vs 3 pairs). The two-sided exact
permutation p-value of the difference of means is shown for reference; it
does not enter the verdict. Pairs of one variant are not independent (they
share models), so none of this is a formal guarantee: treat "within spread"
as "no evidence of a difference at this number of models".
"""

ACCURACY_METHOD = f"""\
Model i of every variant shares its seeds, so accuracy is compared model by
model (`metrics.compare_accuracy`), for log loss, AUC and normalized entropy
(NE = log loss / entropy of the eval base rate, lower is better) alike:

1. *Difference*: mean over the paired models of the variant's value minus the
   reference's (log loss, NE: negative is better; AUC: positive is better).
2. *Bootstrap interval*: 2000 times, the paired model indices are resampled
   with replacement and the mean paired difference is taken; the 2.5-97.5
   percentiles form the 95% interval (seed 0).
3. *Verdict*: the PD rule. "better" / "worse" only when the interval excludes
   0 **and** the ranges (min..max) of the two variants' per-model values do
   not overlap; otherwise "within spread". With fewer than
   {metrics.MIN_MODELS_FOR_VERDICT} paired models: "too few models".

*Wins* counts the paired models where the variant is strictly better; the
two-sided paired sign-flip p-value is shown for reference and does not enter
the verdict. NE is log loss divided by one constant of the eval set, so its
verdict always equals the log-loss verdict.
"""

PD_DEFINITIONS = """\
For models a, b with predictions p_a(i), p_b(i) on the same N examples:
absolute PD = mean |p_a - p_b|; relative PD Δ1 = mean |p_a - p_b| /
((p_a + p_b) / 2); logit PD = mean |logit p_a - logit p_b| (p clipped to
[1e-7, 1 - 1e-7]); L2 PD = sqrt(mean (p_a - p_b)²); ">10% rel." = share of
examples whose relative difference exceeds 0.10; top-k swap = per group, the
share of a's top k not in b's top k, averaged over groups. Log loss clips
predictions to [1e-7, 1 - 1e-7]; AUC is exact with ties as average ranks;
calibration = mean prediction / mean label; NE (normalized entropy) = log loss
/ H(base rate), H(r) = -(r log r + (1 - r) log(1 - r)). Accuracy: mean ±
sample std over a variant's models; PD: mean ± sample std over its M(M-1)/2
pairs.
"""


class ReportInputError(ValueError):
  """A results dict or array handed to the report is malformed."""


# ----------------------------------------------------------------- summaries


def summarize_variant(name: str, spec: str, models: Sequence[Mapping[str, Any]],
                      predictions_list: Sequence[Any], labels: Any,
                      truth: Any | None = None, groups: Any | None = None,
                      k: int | None = None) -> dict[str, Any]:
  """One entry of ``results["variants"]`` from raw evaluation arrays.

  Args:
    name: variant name (``relu``, ``smelu_b1``, ...).
    spec: the model change it stands for (an activation spec, usually).
    models: per-model metadata from the evaluator (index, seeds, run_dir,
      saved_model, predictions path, time, ...), same order as
      ``predictions_list``; copied, and the model's metrics are added. A
      missing ``index`` becomes the position.
    predictions_list: one probability array per model on the eval split.
    labels: the eval labels (0/1).
    truth: optional true probabilities (synthetic data) for excess log loss.
    groups, k: optional group ids and k for the top-k swap rate.
  """
  if len(models) != len(predictions_list):
    raise ReportInputError(f"variant {name!r}: {len(models)} model entries but "
                           f"{len(predictions_list)} prediction arrays")
  if not predictions_list:
    raise ReportInputError(f"variant {name!r}: no models")
  model_entries = []
  for position, (info, predictions) in enumerate(zip(models, predictions_list)):
    try:
      scores = metrics.model_metrics(labels, predictions, truth)
    except metrics.MetricInputError as e:
      raise ReportInputError(f"variant {name!r}, model {position}: {e}") from None
    entry = {"index": position, **dict(info)}
    for key in ("auc", "logloss", "calibration", "mean_prediction",
                "excess_logloss"):
      if key in scores:
        entry[key] = scores[key]
    ne = metrics.normalized_entropy(scores["logloss"], scores["mean_label"])
    if ne is not None:
      entry["ne"] = ne
    model_entries.append(entry)

  variant: dict[str, Any] = {
      "name": name,
      "spec": spec,
      "num_models": len(model_entries),
      "num_examples": scores["num_examples"],
      "mean_label": scores["mean_label"],
      "models": model_entries,
  }
  summary_keys = ["auc", "logloss", "calibration"]
  if all("ne" in entry for entry in model_entries):
    summary_keys.append("ne")
  if truth is not None:
    summary_keys.append("excess_logloss")
    variant["bayes_logloss"] = scores["bayes_logloss"]
  for key in summary_keys:
    values = [entry[key] for entry in model_entries]
    variant[key + "_mean"] = float(np.mean(values))
    variant[key + "_std"] = metrics.sample_std(values)

  if len(predictions_list) >= 2:
    try:
      pd_summary = metrics.pairwise_pd(predictions_list, groups=groups, k=k)
    except metrics.MetricInputError as e:
      raise ReportInputError(f"variant {name!r}: {e}") from None
    indices = [entry["index"] for entry in model_entries]
    for pair in pd_summary["pairs"]:
      pair["a"], pair["b"] = indices[pair["a"]], indices[pair["b"]]
    variant["pd"] = pd_summary
  else:
    variant["pd"] = None
  return variant


def find_reference(results: Mapping[str, Any]) -> str | None:
  """Name of the reference variant (see module docstring), or None."""
  variants = results.get("variants", [])
  names = [v["name"] for v in variants]
  if results.get("reference") is not None:
    if results["reference"] not in names:
      raise ReportInputError(f"results['reference'] is "
                             f"{results['reference']!r}, not one of {names}")
    return results["reference"]
  for key in ("name", "spec"):
    for variant in variants:
      if variant.get(key) == "relu":
        return variant["name"]
  return None


def _model_values(variant: Mapping[str, Any], metric: str
                  ) -> dict[int, float] | None:
  """{model index: value} of one accuracy metric; None if not computable.

  NE missing from a model (schema 1) is derived from its log loss and the
  variant's ``mean_label``.
  """
  values: dict[int, float] = {}
  for position, model in enumerate(variant["models"]):
    index = model.get("index", position)
    value = model.get(metric)
    if value is None and metric == "ne" and model.get("logloss") is not None:
      base_rate = variant.get("mean_label", float("nan"))
      value = metrics.normalized_entropy(model["logloss"], base_rate)
    if value is None:
      return None
    if index in values:
      raise ReportInputError(f"variant {variant['name']!r}: two models with "
                             f"index {index!r}")
    values[index] = value
  return values


def compare_with_reference(variant: Mapping[str, Any],
                           reference: Mapping[str, Any], n_boot: int = 2000,
                           seed: int = 0) -> dict[str, Any]:
  """``vs_reference`` of one variant: PD and accuracy comparisons.

  ``{"pd": metrics.compare_pd(...) or None, "logloss": ..., "auc": ...,
  "ne": ...}``; accuracy from ``metrics.compare_accuracy`` on per-model
  values paired by model index; ``ne`` only where computable.
  """
  comparison: dict[str, Any] = {"pd": None}
  if variant.get("pd") and reference.get("pd"):
    comparison["pd"] = metrics.compare_pd(
        variant["pd"]["pairs"], reference["pd"]["pairs"], n_boot=n_boot,
        seed=seed)
  for metric, higher_is_better in ACCURACY_METRICS:
    values = _model_values(variant, metric)
    reference_values = _model_values(reference, metric)
    if values is None or reference_values is None:
      continue
    try:
      comparison[metric] = metrics.compare_accuracy(
          values, reference_values, higher_is_better, metric=metric,
          n_boot=n_boot, seed=seed)
    except metrics.MetricInputError as e:
      raise ReportInputError(f"variant {variant['name']!r}, {metric}: "
                             f"{e}") from None
  return comparison


def add_comparisons(results: Mapping[str, Any], reference: str | None = None,
                    n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
  """Copy of ``results`` (schema 2) with ``reference`` and every non-reference
  variant's ``vs_reference`` (``compare_with_reference``).

  Without a reference no variant gets a comparison. A schema-1 dict comes
  back as schema 2.
  """
  _check_results(results)
  results = copy.deepcopy(dict(results))
  if reference is not None:
    results["reference"] = reference
  reference = find_reference(results)
  results["reference"] = reference
  by_name = {v["name"]: v for v in results["variants"]}
  for variant in results["variants"]:
    variant.pop("vs_reference", None)
    if reference is None or variant["name"] == reference:
      continue
    variant["vs_reference"] = compare_with_reference(
        variant, by_name[reference], n_boot=n_boot, seed=seed)
  results["schema_version"] = SCHEMA_VERSION
  return results


def schema_version(results: Mapping[str, Any]) -> int:
  """The results dict's schema version: 1 when absent; error if unknown."""
  version = results.get("schema_version", 1)
  if isinstance(version, bool) or version not in (1, SCHEMA_VERSION):
    raise ReportInputError(
        f"results: schema_version {version!r} is not one this version of "
        f"recsys_smelu reads (1 or {SCHEMA_VERSION}); was it written by a "
        "newer one?")
  return version


def _ensure_comparisons(results: Mapping[str, Any]) -> dict[str, Any]:
  """Copy of results (schema 2); comparisons computed unless all are there."""
  _check_results(results)
  if schema_version(results) == SCHEMA_VERSION and "reference" in results:
    reference = find_reference(results)
    if all("vs_reference" in v for v in results["variants"]
           if reference is not None and v["name"] != reference):
      return copy.deepcopy(dict(results))
  return add_comparisons(results)


def load_results(path: str) -> dict[str, Any]:
  """Reads a results.json (schema 1 or 2) and returns it as schema 2.

  A schema-1 file gets its comparisons recomputed from its per-model values
  and pairs. Raises ReportInputError naming the file when it is not JSON, not
  a results dict, or of an unknown schema version.
  """
  try:
    with open(path, encoding="utf-8") as f:
      results = json.load(f)
  except json.JSONDecodeError as e:
    raise ReportInputError(f"{path}: not valid JSON ({e})") from None
  try:
    return _ensure_comparisons(results)
  except ReportInputError as e:
    raise ReportInputError(f"{path}: {e}") from None


def _check_results(results: Mapping[str, Any]) -> None:
  if not isinstance(results, Mapping) or not isinstance(
      results.get("variants"), list):
    raise ReportInputError("results: expected a dict with a 'variants' list")
  schema_version(results)
  names = []
  for i, variant in enumerate(results["variants"]):
    for key in ("name", "models", "auc_mean", "logloss_mean", "pd"):
      if key not in variant:
        raise ReportInputError(f"results['variants'][{i}]: missing key {key!r}")
    names.append(variant["name"])
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise ReportInputError(f"results['variants']: duplicate names {duplicates}")


# ----------------------------------------------------------------- tables


def results_table(results: Mapping[str, Any]) -> pd.DataFrame:
  """One row per variant, numeric columns (std NaN where undefined).

  Columns, first those of schema 1 in their order: variant, spec, models,
  auc_mean, auc_std, logloss_mean, logloss_std, calibration_mean,
  calibration_std, [excess_logloss_mean, excess_logloss_std,] relative_pd,
  relative_pd_std, absolute_pd, logit_pd, l2_pd, frac_rel_above_10pct,
  [topk_swap,] pairs, vs_reference (PD verdict, or "reference" on the
  reference row), pd_difference, pd_ci_low, pd_ci_high; then ne_mean, ne_std
  and, for each of logloss, auc and ne, {metric}_vs_reference (accuracy
  verdict, or "reference"), {metric}_difference, {metric}_ci_low,
  {metric}_ci_high.
  """
  results = _ensure_comparisons(results)
  variants = results["variants"]
  has_excess = any("excess_logloss_mean" in v for v in variants)
  has_topk = any(v["pd"] and metrics.TOPK_METRIC in v["pd"] for v in variants)
  rows = []
  for v in variants:
    pd_summary = v["pd"] or {}
    comparisons = v.get("vs_reference") or {}
    comparison = comparisons.get("pd") or {}
    is_reference = v["name"] == results["reference"]
    row = {
        "variant": v["name"],
        "spec": v.get("spec", ""),
        "models": len(v["models"]),
        "auc_mean": v["auc_mean"],
        "auc_std": v.get("auc_std"),
        "logloss_mean": v["logloss_mean"],
        "logloss_std": v.get("logloss_std"),
        "calibration_mean": v.get("calibration_mean"),
        "calibration_std": v.get("calibration_std"),
    }
    if has_excess:
      row["excess_logloss_mean"] = v.get("excess_logloss_mean")
      row["excess_logloss_std"] = v.get("excess_logloss_std")
    row.update({
        "relative_pd": pd_summary.get("relative"),
        "relative_pd_std": pd_summary.get("relative_std"),
        "absolute_pd": pd_summary.get("absolute"),
        "logit_pd": pd_summary.get("logit"),
        "l2_pd": pd_summary.get("l2"),
        "frac_rel_above_10pct": pd_summary.get("frac_rel_above_10pct"),
    })
    if has_topk:
      row["topk_swap"] = pd_summary.get(metrics.TOPK_METRIC)
    row.update({
        "pairs": pd_summary.get("num_pairs", 0),
        "vs_reference": ("reference" if is_reference
                         else comparison.get("verdict", "")),
        "pd_difference": comparison.get("difference"),
        "pd_ci_low": comparison.get("ci_low"),
        "pd_ci_high": comparison.get("ci_high"),
        "ne_mean": v.get("ne_mean"),
        "ne_std": v.get("ne_std"),
    })
    for metric, _ in ACCURACY_METRICS:
      accuracy = comparisons.get(metric) or {}
      row.update({
          f"{metric}_vs_reference": ("reference" if is_reference
                                     else accuracy.get("verdict", "")),
          f"{metric}_difference": accuracy.get("difference"),
          f"{metric}_ci_low": accuracy.get("ci_low"),
          f"{metric}_ci_high": accuracy.get("ci_high"),
      })
    rows.append(row)
  table = pd.DataFrame(rows)
  text = {"variant", "spec", "vs_reference", "models", "pairs"} | {
      f"{metric}_vs_reference" for metric, _ in ACCURACY_METRICS}
  numeric = [c for c in table.columns if c not in text]
  table[numeric] = table[numeric].astype(float)
  return table


def _number(value: Any, spec: str = ".4g") -> str:
  if value is None or (isinstance(value, float) and math.isnan(value)):
    return "n/a"
  return format(float(value), spec)


def _mean_std(mean: Any, std: Any) -> str:
  if std is None or (isinstance(std, float) and math.isnan(std)):
    return _number(mean)
  return f"{_number(mean)} ± {_number(std, '.2g')}"


def _verdict_cell(verdict: Any, difference: Any) -> str:
  """'worse (+0.0042)'; the verdict alone where there is no difference."""
  text = verdict or "n/a"
  if difference is not None and not math.isnan(difference):
    text += f" ({difference:+.3g})"
  return text


def _display_rows(results: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
  """Human-readable header and rows shared by the markdown and text tables."""
  results = _ensure_comparisons(results)
  table = results_table(results)
  reference = results["reference"]
  has_ne = table["ne_mean"].notna().any()
  header = ["Variant", "Spec", "Models", "AUC", "Log loss"]
  if has_ne:
    header.append("NE")
  if "excess_logloss_mean" in table:
    header.append("Excess log loss")
  header += ["Calibration", "Rel. PD", "Abs. PD", "Logit PD", "L2 PD",
             ">10% rel."]
  if "topk_swap" in table:
    header.append("Top-k swap")
  against = f"vs {reference}" if reference else "vs reference"
  verdicts = [("pd", "PD")] + [(m, ACCURACY_LABELS[m])
                               for m, _ in ACCURACY_METRICS
                               if m != "ne" or has_ne]
  header += [f"{label[0].upper()}{label[1:]} {against}"
             for _, label in verdicts]
  rows = []
  for r in table.to_dict("records"):
    row = [r["variant"], r["spec"], str(r["models"]),
           _mean_std(r["auc_mean"], r["auc_std"]),
           _mean_std(r["logloss_mean"], r["logloss_std"])]
    if has_ne:
      row.append(_mean_std(r["ne_mean"], r["ne_std"]))
    if "excess_logloss_mean" in r:
      row.append(_mean_std(r["excess_logloss_mean"], r["excess_logloss_std"]))
    row += [_mean_std(r["calibration_mean"], r["calibration_std"]),
            _mean_std(r["relative_pd"], r["relative_pd_std"]),
            _number(r["absolute_pd"]), _number(r["logit_pd"]),
            _number(r["l2_pd"]), _number(r["frac_rel_above_10pct"])]
    if "topk_swap" in r:
      row.append(_number(r["topk_swap"]))
    for metric, _ in verdicts:
      verdict = r["vs_reference" if metric == "pd"
                  else f"{metric}_vs_reference"]
      row.append(_verdict_cell(verdict, r[f"{metric}_difference"]))
    rows.append(row)
  return header, rows


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """GitHub markdown table; '|' in cells escaped, newlines flattened."""
  def cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
  lines = ["| " + " | ".join(cell(h) for h in header) + " |",
           "|" + "|".join("---" for _ in header) + "|"]
  lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
  return "\n".join(lines) + "\n"


def _aligned_text(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
  widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
  def line(values):
    return "  ".join(str(v).ljust(w) for v, w in zip(values, widths)).rstrip()
  rule = "  ".join("-" * w for w in widths)
  return "\n".join([line(header), rule] + [line(r) for r in rows]) + "\n"


def format_text_table(results: Mapping[str, Any]) -> str:
  """The results table as aligned plain text (for the terminal)."""
  header, rows = _display_rows(results)
  return _aligned_text(header, rows)


# ----------------------------------------------------------------- plots


def _new_figure(width: float, height: float):
  from matplotlib.backends.backend_agg import FigureCanvasAgg  # pylint: disable=g-import-not-at-top
  from matplotlib.figure import Figure  # pylint: disable=g-import-not-at-top
  figure = Figure(figsize=(width, height), dpi=100)
  FigureCanvasAgg(figure)
  return figure


def _nan_to_zero(value: Any) -> float:
  return 0.0 if value is None else float(value)


def reference_logloss_band(results: Mapping[str, Any]
                           ) -> tuple[float, float] | None:
  """(min, max) of the reference's per-model log loss, or None.

  The band a variant's models must clear, entirely, for a log-loss verdict
  of "better" or "worse" (``metrics.compare_accuracy``).
  """
  reference = (results["reference"] if "reference" in results
               else find_reference(results))
  if reference is None:
    return None
  variant = {v["name"]: v for v in results["variants"]}[reference]
  values = [m["logloss"] for m in variant["models"]
            if m.get("logloss") is not None]
  return (float(min(values)), float(max(values))) if values else None


def pd_vs_logloss_figure(results: Mapping[str, Any]):
  """The PD-vs-log-loss figure (see ``plot_pd_vs_logloss``), or None."""
  variants = [v for v in results["variants"] if v.get("pd")]
  if not variants:
    return None
  figure = _new_figure(6.4, 4.8)
  axes = figure.subplots()
  band = reference_logloss_band(results)
  if band is not None:
    reference = (results["reference"] if "reference" in results
                 else find_reference(results))
    label = f"{reference} log loss, min..max over models"
    if band[1] > band[0]:
      axes.axvspan(band[0], band[1], color="grey", alpha=0.2, linewidth=0,
                   label=label)
    else:
      axes.axvline(band[0], color="grey", alpha=0.6, linewidth=1,
                   label=label)
  colors = [f"C{i % 10}" for i in range(len(variants))]
  for v, color in zip(variants, colors):
    x, y = v["logloss_mean"], v["pd"]["relative"]
    axes.errorbar(x, y, xerr=_nan_to_zero(v.get("logloss_std")),
                  yerr=_nan_to_zero(v["pd"].get("relative_std")), fmt="o",
                  color=color, capsize=4, label=v["name"])
    pair_values = [p["relative"] for p in v["pd"]["pairs"]]
    axes.plot([x] * len(pair_values), pair_values, ".", color=color,
              alpha=0.35)
    axes.annotate(v["name"], (x, y), textcoords="offset points",
                  xytext=(6, 6), fontsize=9)
  axes.set_xlabel("eval log loss (mean ± std over models)")
  axes.set_ylabel("relative PD Δ1 (mean ± std over pairs)")
  axes.set_title("Prediction difference vs log loss")
  axes.grid(True, alpha=0.3)
  axes.legend(fontsize=8, loc="best")
  figure.tight_layout()
  return figure


def plot_pd_vs_logloss(results: Mapping[str, Any], path: str) -> bool:
  """Each variant one point: x mean log loss ± std, y mean relative PD ± std.

  Faint dots show the individual pairs' relative PD; a grey band spans the
  reference's per-model log losses (min..max), the band a variant must clear
  for a log-loss verdict. Returns False (no file) when no variant has two or
  more models.
  """
  figure = pd_vs_logloss_figure(results)
  if figure is None:
    return False
  figure.savefig(path, format="png", metadata={"Software": None})
  return True


def _check_per_example(per_example_pd: Mapping[str, Any]) -> dict[str, np.ndarray]:
  arrays = {}
  for name, values in per_example_pd.items():
    array = np.asarray(values, dtype=np.float64).ravel()
    if array.size == 0 or not np.isfinite(array).all() or (array < 0).any():
      raise ReportInputError(f"per_example_pd[{name!r}]: expected a non-empty "
                             "array of finite values >= 0")
    arrays[name] = array
  return arrays


def plot_pd_histogram(per_example_pd: Mapping[str, Any], path: str) -> bool:
  """Overlaid step histograms of per-example relative PD, log x axis.

  y is the fraction of examples per bin, so variants with different eval
  sizes compare directly; values below ``HISTOGRAM_FLOOR`` (including exact
  zeros) are counted in the first bin. Returns False when the dict is empty.
  """
  arrays = _check_per_example(per_example_pd)
  if not arrays:
    return False
  figure = _new_figure(6.4, 4.8)
  axes = figure.subplots()
  bins = np.logspace(np.log10(HISTOGRAM_FLOOR), np.log10(2.0), 61)
  for i, (name, values) in enumerate(arrays.items()):
    clipped = np.clip(values, HISTOGRAM_FLOOR, 2.0)
    axes.hist(clipped, bins=bins, histtype="step", linewidth=1.5,
              color=f"C{i % 10}", weights=np.full(len(values), 1 / len(values)),
              label=f"{name} (mean {values.mean():.3g})")
  axes.axvline(metrics.RELATIVE_DIFF_THRESHOLD, color="grey", linestyle=":",
               linewidth=1)
  axes.set_xscale("log")
  axes.set_xlabel(f"per-example relative PD, mean over pairs "
                  f"(< {HISTOGRAM_FLOOR:g} shown in first bin)")
  axes.set_ylabel("fraction of examples")
  axes.set_title("Distribution of per-example prediction difference")
  axes.legend(fontsize=8, loc="best")
  figure.tight_layout()
  figure.savefig(path, format="png", metadata={"Software": None})
  return True


# ----------------------------------------------------------------- files


def _jsonable(value: Any) -> Any:
  """Plain-JSON copy: numpy scalars/arrays to Python, NaN/inf to None."""
  if isinstance(value, Mapping):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


def _signed(value: float, spec: str) -> str:
  """``format(value, '+' + spec)`` with a typographic minus (U+2212)."""
  text = format(value, "+" + spec)
  return "\u2212" + text[1:] if text.startswith("-") else text


def _headline(variant: Mapping[str, Any], reference: str | None) -> str:
  """One line: the variant's verdicts on both axes against the reference.

  E.g. ``smelu_beta1: PD −39% (smaller), log loss +0.0042 (worse), AUC
  −0.004 (worse)``: PD as the change of mean relative PD in percent of the
  reference's (absolute where the reference's is 0), accuracy as the mean
  paired difference.
  """
  name = variant["name"]
  models = len(variant["models"])
  logloss = _mean_std(variant["logloss_mean"], variant.get("logloss_std"))
  auc = _mean_std(variant["auc_mean"], variant.get("auc_std"))
  accuracy = (f"log loss {logloss}, AUC {auc}, "
              f"{models} model{'s' if models != 1 else ''}")
  if reference is None:
    return f"{name}: {accuracy}; no reference to compare with"
  if name == reference:
    return f"{name}: reference ({accuracy})"
  comparisons = variant.get("vs_reference") or {}
  parts = []
  pd_comparison = comparisons.get("pd")
  if pd_comparison is None:
    parts.append("PD n/a (a PD needs 2 models in both)")
  else:
    difference, base = pd_comparison["difference"], pd_comparison["mean_b"]
    if base > 0:
      percent = 100.0 * difference / base
      change = _signed(percent, ".0f" if abs(percent) >= 10 else ".1f") + "%"
    else:
      change = _signed(difference, ".2g")
    parts.append(f"PD {change} ({pd_comparison['verdict']})")
  for metric in ("logloss", "auc"):
    comparison = comparisons.get(metric)
    label = ACCURACY_LABELS[metric]
    if comparison is None or comparison["difference"] is None:
      verdict = comparison["verdict"] if comparison else "n/a"
      parts.append(f"{label} n/a ({verdict}: no model index in common)"
                   if comparison else f"{label} n/a")
    else:
      parts.append(f"{label} {_signed(comparison['difference'], '.2g')} "
                   f"({comparison['verdict']})")
  return f"{name}: " + ", ".join(parts)


def _comparison_section(results: Mapping[str, Any]) -> str:
  reference = results["reference"]
  compared = [v for v in results["variants"]
              if (v.get("vs_reference") or {}).get("pd")]
  if reference is None:
    return ("No variant named or specified `relu`, so no variant is compared "
            "with a reference.\n")
  if not compared:
    return (f"Reference `{reference}`: no comparison (a variant needs at "
            "least 2 models for a prediction difference).\n")
  header = ["Variant", "Δ mean rel. PD", "95% bootstrap interval",
            "pair range", f"{reference} pair range", "permutation p",
            "verdict"]
  rows = []
  for v in compared:
    c = v["vs_reference"]["pd"]
    rows.append([v["name"], f"{c['difference']:+.4g}",
                 f"[{c['ci_low']:+.4g}, {c['ci_high']:+.4g}]",
                 f"{c['range_a'][0]:.4g} .. {c['range_a'][1]:.4g}",
                 f"{c['range_b'][0]:.4g} .. {c['range_b'][1]:.4g}",
                 f"{c['permutation_p']:.3g}", c["verdict"]])
  return markdown_table(header, rows)


def _accuracy_section(results: Mapping[str, Any]) -> str:
  reference = results["reference"]
  if reference is None:
    return ("No variant named or specified `relu`, so no variant is compared "
            "with a reference.\n")
  header = ["Variant", "metric", "paired models", "Δ mean (paired)",
            "95% bootstrap interval", "range", f"{reference} range", "wins",
            "paired p", "verdict"]
  rows = []
  for v in results["variants"]:
    comparisons = v.get("vs_reference") or {}
    for metric, _ in ACCURACY_METRICS:
      c = comparisons.get(metric)
      if c is None:
        continue
      if c["difference"] is None:
        rows.append([v["name"], ACCURACY_LABELS[metric], 0] + ["n/a"] * 6
                    + [c["verdict"]])
        continue
      rows.append([v["name"], ACCURACY_LABELS[metric], c["n"],
                   f"{c['difference']:+.4g}",
                   f"[{c['ci_low']:+.4g}, {c['ci_high']:+.4g}]",
                   f"{c['range_a'][0]:.4g} .. {c['range_a'][1]:.4g}",
                   f"{c['range_b'][0]:.4g} .. {c['range_b'][1]:.4g}",
                   f"{c['wins']}/{c['n']}", f"{c['permutation_p']:.3g}",
                   c["verdict"]])
  if not rows:
    return f"Reference `{reference}` is the only variant.\n"
  return markdown_table(header, rows)


def _pairs_section(results: Mapping[str, Any]) -> str:
  has_topk = any(v["pd"] and metrics.TOPK_METRIC in v["pd"]
                 for v in results["variants"])
  names = list(metrics.PAIR_METRICS) + ([metrics.TOPK_METRIC] if has_topk
                                        else [])
  header = ["Variant", "a", "b"] + names
  rows = []
  for v in results["variants"]:
    for pair in (v["pd"] or {}).get("pairs", []):
      rows.append([v["name"], pair["a"], pair["b"]]
                  + [_number(pair.get(n)) for n in names])
  if not rows:
    return "No variant has two or more models.\n"
  return markdown_table(header, rows)


def _models_section(results: Mapping[str, Any]) -> str:
  has_excess = any("excess_logloss" in m for v in results["variants"]
                   for m in v["models"])
  has_ne = any("ne" in m for v in results["variants"] for m in v["models"])
  header = ["Variant", "index", "seeds", "AUC", "log loss", "calibration"]
  header += ["NE"] if has_ne else []
  header += ["excess log loss"] if has_excess else []
  header += ["run_dir"]
  rows = []
  for v in results["variants"]:
    for m in v["models"]:
      seeds = m.get("seeds")
      seeds_text = (", ".join(f"{k}={s}" for k, s in seeds.items())
                    if isinstance(seeds, Mapping) else _jsonable(seeds))
      row = [v["name"], m.get("index"), seeds_text or "",
             _number(m.get("auc")), _number(m.get("logloss")),
             _number(m.get("calibration"))]
      row += [_number(m.get("ne"))] if has_ne else []
      row += [_number(m.get("excess_logloss"))] if has_excess else []
      row += [f"`{m['run_dir']}`" if m.get("run_dir") else ""]
      rows.append(row)
  return markdown_table(header, rows)


def _report_markdown(results: Mapping[str, Any], plots: Mapping[str, bool],
                     environment: Mapping[str, Any] | None) -> str:
  variants = results["variants"]
  header, rows = _display_rows(results)
  varied = results.get("varied")
  varied_text = (", ".join(f"`{x}`" for x in varied) if varied
                 else "nothing (all seeds equal)" if varied is not None
                 else "not recorded")
  first = variants[0] if variants else {}
  lines = ["# Twin evaluation report", ""]
  lines += [f"- {_headline(v, results['reference'])}" for v in variants]
  lines.append("")
  lines.append(f"- Evaluation data: `{results.get('eval_data', 'not recorded')}`"
               + (f" ({first['num_examples']} examples, positive rate "
                  f"{first['mean_label']:.4g})" if "num_examples" in first
                  else ""))
  lines.append(f"- Variants: {len(variants)}; models per variant: "
               + ", ".join(f"{v['name']} {len(v['models'])}" for v in variants))
  lines.append(f"- Varied between the models of a variant: {varied_text}")
  lengths = [v for v in variants if "train_steps" in v]
  if lengths:
    lines.append("- Training length: " + "; ".join(
        f"{v['name']} {v['train_steps']} steps ({v.get('length_from', 'config')})"
        for v in lengths))
  lines.append(f"- Reference for PD and accuracy comparisons: "
               f"{results['reference'] or 'none'}")
  lines += ["", "## Results", "", markdown_table(header, rows)]
  lines.append("Accuracy: mean ± sample std over a variant's models. PD: mean "
               "± sample std over its model pairs. The last columns are the "
               "verdicts of the comparisons below, each with its difference "
               "(mean relative PD; mean paired log loss, AUC, NE).")
  lines += ["", "## Prediction difference versus the reference", "",
            _comparison_section(results)]
  lines += ["", "## Accuracy versus the reference", "",
            _accuracy_section(results)]
  lines += ["", "## Every pair", "", _pairs_section(results)]
  lines += ["", "## Every model", "", _models_section(results)]
  lines += ["", "## Plots", ""]
  if plots.get(PD_VS_LOGLOSS_PNG):
    lines.append(f"![relative PD vs log loss]({PD_VS_LOGLOSS_PNG})")
  else:
    lines.append("No PD-vs-log-loss plot: no variant has two or more models.")
  lines.append("")
  if plots.get(PD_HISTOGRAM_PNG):
    lines.append(f"![per-example relative PD]({PD_HISTOGRAM_PNG})")
  else:
    lines.append("No histogram: no per-example PD values were given.")
  lines += ["", "## Method", "", PD_DEFINITIONS, COMPARISON_METHOD,
            ACCURACY_METHOD]
  lines += ["## Environment", ""]
  if environment:
    lines.append(markdown_table(
        ["key", "value"],
        [[k, json.dumps(_jsonable(v)) if isinstance(v, (Mapping, list, tuple))
          else v] for k, v in environment.items()]))
  else:
    lines.append("Not recorded.\n")
  config_text = json.dumps(_jsonable(results.get("config", {})), indent=2,
                           sort_keys=True)
  lines += ["## Config", "", "<details><summary>Config (JSON)</summary>", "",
            "```json", config_text, "```", "", "</details>", ""]
  return "\n".join(lines)


def write_report(results: Mapping[str, Any], output_dir: str,
                 per_example_pd: Mapping[str, np.ndarray] | None = None,
                 environment: Mapping[str, Any] | None = None
                 ) -> dict[str, str]:
  """Writes results.json, results.csv, report.md and the plots.

  Args:
    results: the results dict (module docstring); comparisons with the
      reference are added if missing. The caller's dict is not modified.
    output_dir: created if needed.
    per_example_pd: variant name -> per-example relative PD
      (``metrics.per_example_relative_pd``) for the histogram; no histogram
      without it.
    environment: e.g. TF version, device, determinism flag, time per model;
      stored in results.json and shown in report.md.

  Returns:
    Name -> path of every file written (plots only when they could be drawn).
  """
  results = _ensure_comparisons(results)
  if per_example_pd:
    _check_per_example(per_example_pd)  # fail before writing anything
  if environment is not None:
    results["environment"] = dict(environment)
  os.makedirs(output_dir, exist_ok=True)
  paths = {name: os.path.join(output_dir, name)
           for name in (RESULTS_JSON, RESULTS_CSV, REPORT_MD,
                        PD_VS_LOGLOSS_PNG, PD_HISTOGRAM_PNG)}
  plots = {
      PD_VS_LOGLOSS_PNG: plot_pd_vs_logloss(results, paths[PD_VS_LOGLOSS_PNG]),
      PD_HISTOGRAM_PNG: bool(per_example_pd) and plot_pd_histogram(
          per_example_pd, paths[PD_HISTOGRAM_PNG]),
  }
  with open(paths[RESULTS_JSON], "w", encoding="utf-8") as f:
    json.dump(_jsonable(results), f, indent=2, allow_nan=False)
    f.write("\n")
  results_table(results).to_csv(paths[RESULTS_CSV], index=False)
  with open(paths[REPORT_MD], "w", encoding="utf-8") as f:
    f.write(_report_markdown(results, plots, results.get("environment")))
  return {name: path for name, path in paths.items()
          if plots.get(name, True)}
