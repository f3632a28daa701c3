r"""Twin evaluator: N models per variant, accuracy and prediction difference.

Answers "does SmeLU make my model reproducible, and what does it cost in
accuracy?" in one command::

  python -m recsys_smelu.twin --config=configs/quickstart.py --output_dir=OUT \
      --variants=relu,smelu:beta=1,gelu --num_models=3 --vary=init,data_order

A *variant* is a config change: an activation spec (``smelu:beta=0.5``), an
ensemble (``ensemble:n=2``), the built-in ``logreg`` (logistic regression on
the same features, its L2 and learning rate chosen on the validation split
(``data.validation_*``) by ``recsys_smelu.logreg.select`` once, before its
models train; ``linear`` stays the identity activation), or a named set of
dotted-key changes listed by the config file's optional ``get_variants()``;
``--variant='NAME:section.key=value;section.key=value'`` (repeatable) names
one more that sets any config keys. Each variant trains ``num_models`` models
that differ only in the seeds ``--vary`` names (``init``, ``data_order``,
``dropout``; ``none`` = all equal, and then, with determinism on, the PD must be
exactly 0). Model ``i`` of every variant uses the same seeds, so variants are
compared on equal footing.

Training length: twins of a variant train for the same number of steps.
With ``train.early_stopping_patience`` model 0 of each variant trains first
and chooses the length on validation (its best step); the other models then
train exactly that many steps (``train.stop_at_step``, early stopping off,
same learning-rate schedule), so they differ only in what ``--vary`` names.
Each variant's ``train_steps`` and where it came from (``length_from``) are
in the results and in report.md.

Every model is trained by the same trainer as ``recsys_smelu.train`` (its
command line, in a subprocess: isolation of process-global TF settings,
``--parallel`` runs, and a log file per run), in ``OUT/runs/<variant>/<i>/``
with checkpoints, ``eval_metrics.json``, ``predictions.npz`` and a SavedModel.
When a run finishes, its directory is pruned to what the report and a later
look need: the checkpoint ``eval_metrics.json`` was computed from (its
``step``), the SavedModel, the predictions, and the small files (logs,
config, json, TensorBoard summaries). Re-running the same command skips
finished runs and resumes unfinished ones (they keep their checkpoints); a
failed run is reported with its log and the others go on (exit status 1).
The native ops (``recsys_smelu.native``) are built once before the runs
start.

Op determinism: ``--determinism`` (default true) sets ``determinism`` in
every run, unless the command line gives ``--config.determinism``, which
wins; the report's environment says which applied.

Several hosts: give each host a subset of the variants with ``--mode=train``
and the same ``--output_dir`` (a shared directory or gs:// path; remote
paths are written locally and copied, see ``evaluate_variants``), then run
``--mode=report`` with all variants once to merge.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional, Sequence

from absl import logging
import ml_collections
import numpy as np

from recsys_smelu import activations as activations_lib
from recsys_smelu import config as config_lib
from recsys_smelu import logreg as logreg_lib
from recsys_smelu import metrics as metrics_lib
from recsys_smelu import native
from recsys_smelu import platform_info
from recsys_smelu import report as report_lib

VARY_CHOICES = ("init", "data_order", "dropout", "none")
_SEED_KEYS = {"init": "seed.init", "data_order": "seed.data",
              "dropout": "seed.dropout"}
DONE_FILE = "run_done.json"
# The built-in logistic-regression variant and where its choice is kept.
LOGREG_VARIANT = "logreg"
SELECTION_FILE = "selection.json"


@dataclasses.dataclass(frozen=True)
class Variant:
  """A named config change; ``spec`` is how the user wrote it."""
  name: str
  spec: str
  changes: dict[str, Any]


def split_variant_specs(text: str) -> list[str]:
  """Splits ``relu,smelu:beta=1,trainable=true,gelu`` into variant specs.

  Commas separate variants and also the parameters inside one spec, so a
  ``key=value`` piece without its own ``name:`` belongs to the spec before it.
  ``;`` always separates variants.
  """
  specs: list[str] = []
  for chunk in text.split(";"):
    for piece in (p.strip() for p in chunk.split(",")):
      if not piece:
        continue
      if "=" in piece and ":" not in piece and specs and ":" in specs[-1]:
        specs[-1] += "," + piece
      else:
        specs.append(piece)
  return specs


def variant_name(spec: str) -> str:
  """A directory-safe name: ``smelu:beta=0.5`` -> ``smelu_beta0.5``."""
  name = spec.replace(":", "_").replace(",", "_").replace("=", "")
  return re.sub(r"[^A-Za-z0-9._-]", "-", name)


def parse_variant(spec: str, named: Optional[dict[str, dict]] = None) -> Variant:
  """A variant from a spec string (see module docstring).

  Raises ValueError naming the spec when it is neither a named variant of the
  config file, nor ``ensemble:n=N``, nor an activation spec.
  """
  if named and spec in named:
    return Variant(spec, spec, dict(named[spec]))
  if spec == LOGREG_VARIANT:  # L2 and rate: select_on_validation
    return Variant(spec, spec, dict(logreg_lib.MODEL_CHANGES))
  if spec == "ensemble" or spec.startswith("ensemble:"):
    params = dict(p.split("=", 1) for p in spec.partition(":")[2].split(",")
                  if p)
    unknown = set(params) - {"n", "activation"}
    n = params.get("n", "2")
    if unknown or not n.isdigit() or int(n) < 2:
      raise ValueError(f"variant {spec!r}: expected ensemble:n=N (N >= 2) "
                       "with optional activation=SPEC")
    changes = {"model.ensemble_size": int(n)}
    if "activation" in params:
      changes["model.activation"] = params["activation"]
    return Variant(variant_name(spec), spec, changes)
  try:
    activations_lib.get_activation(spec)
  except ValueError as e:
    choices = ", ".join(sorted(named or {}))
    raise ValueError(f"variant {spec!r} is not an activation spec, "
                     f"'ensemble:n=N'{' or one of ' + choices if choices else ''}"
                     f": {e}") from None
  return Variant(variant_name(spec), spec, {"model.activation": spec})


CONFIG_VARIANT_FORMAT = "NAME:section.key=value;section.key=value"
_VARIANT_NAME = re.compile(r"[A-Za-z0-9._-]+")
_BOOLEANS = {"true": True, "yes": True, "1": True,
             "false": False, "no": False, "0": False}


def _parse_scalar(text: str, like: Any) -> Any:
  """``text`` as the type of ``like`` (bool, int, float or str)."""
  if isinstance(like, bool):
    if text.strip().lower() not in _BOOLEANS:
      raise ValueError
    return _BOOLEANS[text.strip().lower()]
  if isinstance(like, int):
    return int(text)
  if isinstance(like, float):
    return float(text)
  if isinstance(like, str):
    return text
  raise TypeError(type(like).__name__)


def parse_config_value(key: str, text: str, default: Any) -> Any:
  """The value of ``--variant``'s ``key=text``, typed like ``default``.

  bool: true/false (also yes/no, 1/0); int; float; str (as written); list:
  comma-separated items, optionally in brackets (``64,8`` or ``[64, 8]``),
  each typed like the default's first item (str for an empty default).
  Raises ValueError naming the key.
  """
  kind = type(default).__name__
  kind = ("an " if kind[0] in "aeiou" else "a ") + kind
  try:
    if isinstance(default, (list, tuple)):
      inner = text.strip()
      if inner.startswith("[") and inner.endswith("]"):
        inner = inner[1:-1]
      items = [item.strip() for item in inner.split(",")] if inner.strip() \
          else []
      like = default[0] if default else ""
      return [_parse_scalar(item, like) for item in items]
    return _parse_scalar(text, default)
  except ValueError:
    raise ValueError(f"config key {key!r} takes {kind} (currently "
                     f"{default!r}), got {text!r}") from None
  except TypeError:
    raise ValueError(f"config key {key!r} holds {kind}, which --variant "
                     "cannot set") from None


def parse_config_variant(text: str,
                         config: Optional[ml_collections.ConfigDict] = None
                         ) -> Variant:
  """A variant from ``--variant='NAME:section.key=value;section.key=value'``.

  ``;`` separates the keys, the first ``=`` a key from its value (so
  ``model.activation=smelu:beta=1,trainable=true`` works); values are typed
  like the key's value in ``config`` (default: ``config.default_config()``),
  see ``parse_config_value``. NAME (letters, digits, ``._-``) names the
  variant and its run directory. Raises ValueError naming the flag and the
  key: unknown keys (with the nearest valid one), bad values, duplicates.
  """
  config = config if config is not None else config_lib.default_config()
  where = f"--variant {text!r}"
  name, colon, body = text.partition(":")
  name = name.strip()
  if not colon or not _VARIANT_NAME.fullmatch(name):
    raise ValueError(f"{where}: expected {CONFIG_VARIANT_FORMAT}, NAME made "
                     "of letters, digits, '.', '_' and '-'")
  valid = config_lib.flat_keys()
  changes: dict[str, Any] = {}
  for piece in (p.strip() for p in body.split(";")):
    if not piece:
      continue
    key, equals, value = piece.partition("=")
    key = key.strip()
    if not equals:
      raise ValueError(f"{where}: {piece!r} is not section.key=value")
    if key not in valid:
      raise ValueError(f"{where}: {config_lib.unknown_key_message(key, valid)}")
    if key in changes:
      raise ValueError(f"{where}: config key {key!r} is set twice")
    default = config
    for part in key.split("."):
      default = default[part]
    try:
      changes[key] = parse_config_value(key, value.strip(), default)
    except ValueError as e:
      raise ValueError(f"{where}: {e}") from None
  if not changes:
    raise ValueError(f"{where}: sets no config key; expected "
                     f"{CONFIG_VARIANT_FORMAT}")
  return Variant(name, body.strip(), changes)


def variants_from_flags(variants_text: str, variant_texts: Sequence[str],
                        named: dict[str, dict],
                        config: Optional[ml_collections.ConfigDict] = None
                        ) -> list[Variant]:
  """The variants of ``--variants`` and ``--variant``, in that order.

  ``--variants`` means what it always did; when neither flag is given, the
  config file's ``get_variants()`` (``named``) are the variants. Raises
  ValueError when there is none, or when two share a name (their run
  directories would collide).
  """
  if variants_text:
    specs = split_variant_specs(variants_text)
  elif not variant_texts:
    specs = list(named)
  else:
    specs = []
  variants = [parse_variant(s, named) for s in specs]
  variants += [parse_config_variant(t, config) for t in variant_texts]
  if not variants:
    raise ValueError("give --variants or --variant, or define get_variants() "
                     "in the config file")
  names = [v.name for v in variants]
  twice = sorted({n for n in names if names.count(n) > 1})
  if twice:
    raise ValueError(f"variant name(s) {', '.join(map(repr, twice))} given "
                     "twice; their runs would share a directory")
  return variants


def select_on_validation(config: ml_collections.ConfigDict, variant: Variant,
                         output_dir: str, mode: str = "all") -> Variant:
  """``variant`` with the hyperparameters it chooses on validation data.

  Only the built-in ``logreg`` chooses any: its L2 and learning rate, by
  ``logreg.select`` on the validation split (``data.validation_*``) with
  model 0's seeds, so all its models train at one point. The choice is made
  once per output directory: ``OUT/runs/logreg/selection.json`` keeps it
  (and the grid's validation log losses) for reruns and ``--mode=report``;
  a changed config chooses again. Other variants come back unchanged.
  """
  if variant.spec != LOGREG_VARIANT:
    return variant
  base = config_lib.override(config, variant.changes)
  path = os.path.join(output_dir, "runs", variant.name, SELECTION_FILE)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    if saved["config"] == base.to_dict():
      return Variant(variant.name, variant.spec, saved["changes"])
  if mode == "report":
    raise ValueError(f"variant {variant.spec!r}: no {path} for this config; "
                     "train first (--mode=train or all)")
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  if not data_lib.has_validation(base):
    raise config_lib.ConfigError(
        f"variant {variant.spec!r} chooses its L2 and learning rate on "
        "validation data: set config key 'data.validation_files' or "
        "'data.validation_fraction' (MovieLens: "
        "'data.validation_ratings_per_user')")
  selection = logreg_lib.select(base, data_lib.build_dataset(
      base, "validation", base.train.eval_batch_size))
  logging.info("%s: l2=%g, learning rate %g (validation log loss %.5f)",
               variant.name, selection.l2, selection.learning_rate,
               selection.validation_logloss)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump({"config": base.to_dict(), "changes": selection.changes,
               "l2": selection.l2, "learning_rate": selection.learning_rate,
               "validation_logloss": selection.validation_logloss,
               "grid": selection.grid}, f, indent=2)
  return Variant(variant.name, variant.spec, selection.changes)


def model_seeds(config: ml_collections.ConfigDict, index: int,
                vary: Sequence[str]) -> dict[str, int]:
  """Seeds of model ``index``: the config's, plus ``index`` where varied."""
  seeds = {"init": config.seed.init, "data_order": config.seed.data,
           "dropout": config.seed.dropout}
  for what in vary:
    if what != "none":
      seeds[what] += 1000 * index
  return seeds


def run_config(base: ml_collections.ConfigDict, variant: Variant, index: int,
               vary: Sequence[str]) -> ml_collections.ConfigDict:
  seeds = model_seeds(base, index, vary)
  changes = dict(variant.changes)
  changes.update({_SEED_KEYS[k]: v for k, v in seeds.items()})
  changes["train.export"] = True
  return config_lib.override(base, changes)


def uses_early_stopping(config: ml_collections.ConfigDict) -> bool:
  return config.train.early_stopping_patience > 0


def twin_config(config: ml_collections.ConfigDict, length: int
                ) -> ml_collections.ConfigDict:
  """The config of model i > 0 of a variant whose model 0 chose ``length``
  by early stopping: no early stopping, training stopped at ``length``
  (``train.stop_at_step``) under the same learning-rate schedule (which
  spans ``train.steps`` / ``train.epochs``), so the twins differ from model
  0 only in what ``--vary`` names."""
  return config_lib.override(config, {"train.early_stopping_patience": 0,
                                      "train.stop_at_step": int(length)})


def _evaluated_step(run_dir: str) -> int:
  from recsys_smelu import train as train_lib  # pylint: disable=g-import-not-at-top
  with open(os.path.join(run_dir, train_lib.EVAL_METRICS_FILE)) as f:
    return int(json.load(f)["step"])


# ----------------------------------------------------------------------------
# Running the models


@dataclasses.dataclass
class Run:
  variant: Variant
  index: int
  run_dir: str
  config: ml_collections.ConfigDict
  seeds: dict[str, int]

  @property
  def log_path(self) -> str:
    return os.path.join(self.run_dir, "train.log")

  def is_done(self) -> bool:
    done = os.path.join(self.run_dir, DONE_FILE)
    if not os.path.exists(done):
      return False
    with open(done) as f:
      return json.load(f).get("config") == self.config.to_dict()


def _train_subprocess(run: Run) -> tuple[Run, Optional[str], float]:
  """Trains one run with the train CLI; returns (run, error or None, seconds)."""
  os.makedirs(run.run_dir, exist_ok=True)
  config_file = config_lib.write_config_file(
      run.config, os.path.join(run.run_dir, "run_config.py"))
  command = [sys.executable, "-m", "recsys_smelu.train",
             f"--config={config_file}", f"--model_dir={run.run_dir}",
             "--mode=train_and_eval"]
  start = time.perf_counter()
  with open(run.log_path, "a") as log:
    log.write(f"$ {' '.join(command)}\n")
    log.flush()
    result = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
  seconds = time.perf_counter() - start
  if result.returncode != 0:
    return run, f"exit status {result.returncode}; log: {run.log_path}", seconds
  prune_run_dir(run.run_dir)  # before run_done.json: done means pruned
  with open(os.path.join(run.run_dir, DONE_FILE), "w") as f:
    json.dump({"config": run.config.to_dict(), "seconds": seconds}, f)
  return run, None, seconds


def prune_run_dir(run_dir: str) -> list[str]:
  """Deletes what a finished run no longer needs; returns the deleted paths.

  Keeps the checkpoint ``eval_metrics.json`` was computed from
  (``ckpt-<step>``, which the checkpoint state then lists alone) and the
  newest SavedModel under ``export/``; deletes the other checkpoints and
  exports. Keeps everything when ``ckpt-<step>`` is not there, so a
  run is never left without the checkpoint its metrics came from. With
  early stopping (``eval_metrics.json`` has ``last_step``) that checkpoint
  is the best one, in ``best/``, and the rolling ones are all deleted;
  otherwise ``best/`` (validation without early stopping) is deleted.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from recsys_smelu import train as train_lib  # pylint: disable=g-import-not-at-top
  with open(os.path.join(run_dir, train_lib.EVAL_METRICS_FILE)) as f:
    metrics = json.load(f)
  step = metrics["step"]
  rolling_dir = os.path.join(run_dir, train_lib.CHECKPOINT_SUBDIR)
  best_dir = os.path.join(run_dir, train_lib.BEST_SUBDIR)
  checkpoint_dir, other_dir = ((best_dir, rolling_dir) if "last_step" in metrics
                               else (rolling_dir, best_dir))
  keep = f"ckpt-{step}"
  if not os.path.exists(os.path.join(checkpoint_dir, keep + ".index")):
    logging.warning("%s: no checkpoint %s (the step of %s); nothing pruned",
                    run_dir, os.path.join(checkpoint_dir, keep),
                    train_lib.EVAL_METRICS_FILE)
    return []
  deleted = [os.path.join(checkpoint_dir, name)
             for name in sorted(os.listdir(checkpoint_dir))
             if name != "checkpoint" and not name.startswith(keep + ".")]
  if os.path.isdir(other_dir):
    deleted += [os.path.join(other_dir, name)
                for name in sorted(os.listdir(other_dir))]
  for path in deleted:
    os.remove(path)
  if os.path.isdir(other_dir):
    os.rmdir(other_dir)
  if deleted:  # the state then lists ckpt-<step> alone, as saved
    state = tf.train.get_checkpoint_state(checkpoint_dir)
    saved_at = dict(zip((os.path.basename(path)
                         for path in state.all_model_checkpoint_paths),
                        state.all_model_checkpoint_timestamps)) if state else {}
    tf.compat.v1.train.update_checkpoint_state(
        checkpoint_dir, keep, all_model_checkpoint_paths=[keep],
        all_model_checkpoint_timestamps=(
            [saved_at[keep]] if keep in saved_at else None),
        last_preserved_timestamp=state.last_preserved_timestamp if state
        else None)
  saved_model = _saved_model_dir(run_dir)
  if saved_model:
    export_root = os.path.dirname(saved_model)
    for name in sorted(os.listdir(export_root)):
      path = os.path.join(export_root, name)
      if path != saved_model:
        if os.path.isdir(path):
          shutil.rmtree(path)
        else:
          os.remove(path)
        deleted.append(path)
  return deleted


def set_twin_lengths(runs: Sequence[Run]) -> dict[str, str]:
  """Gives the twins of every early-stopping variant model 0's length.

  Model 0 of a variant whose config has ``train.early_stopping_patience``
  chooses the length on validation; when it is finished, the other models'
  configs become ``twin_config(config, its best step)`` (in place). Returns
  ``{run_dir: reason}`` of the twins whose model 0 is not finished.
  """
  firsts = {run.variant.name: run for run in runs if run.index == 0}
  waiting = {}
  for run in runs:
    first = firsts.get(run.variant.name)
    if run.index == 0 or first is None or not uses_early_stopping(run.config):
      continue
    if not first.is_done():
      waiting[run.run_dir] = (f"waits for the training length of model 0 "
                              f"({first.run_dir})")
      continue
    run.config = twin_config(run.config, _evaluated_step(first.run_dir))
  return waiting


def train_runs(runs: Sequence[Run], parallel: int = 1) -> dict[str, str]:
  """Trains the unfinished runs; returns {run_dir: error} of failed ones.

  With early stopping, model 0 of each variant trains first and the other
  models then train to its length (``set_twin_lengths``).
  """
  waiting = set_twin_lengths(runs)
  if not waiting:
    return _train_runs(runs, parallel)
  ready = [run for run in runs if run.run_dir not in waiting]
  failures = _train_runs(ready, parallel)
  still_waiting = set_twin_lengths(runs)
  failures.update(still_waiting)
  failures.update(_train_runs([r for r in runs if r.run_dir in waiting
                               and r.run_dir not in still_waiting], parallel))
  return failures


def _train_runs(runs: Sequence[Run], parallel: int = 1) -> dict[str, str]:
  """Trains the unfinished runs; returns {run_dir: error} of failed ones.

  Builds the native ops first (``native.prepare``), so that the runs load
  them, or fall back at once, instead of each compiling them. Finished runs
  written before pruning existed are pruned now.
  """
  todo = [r for r in runs if not r.is_done()]
  logging.info("%d of %d runs to train (%d finished before)", len(todo),
               len(runs), len(runs) - len(todo))
  for run in runs:
    if run.is_done():
      prune_run_dir(run.run_dir)
  if todo:
    native.prepare()
  failures = {}
  with concurrent.futures.ThreadPoolExecutor(max(1, parallel)) as pool:
    for run, error, seconds in pool.map(_train_subprocess, todo):
      if error:
        failures[run.run_dir] = error
        logging.error("FAILED %s/%d: %s", run.variant.name, run.index, error)
      else:
        logging.info("trained %s/%d in %.0f s", run.variant.name, run.index,
                     seconds)
  return failures


# ----------------------------------------------------------------------------
# Scoring


def _saved_model_dir(run_dir: str) -> Optional[str]:
  export_root = os.path.join(run_dir, "export")
  if not os.path.isdir(export_root):
    return None
  versions = sorted(d for d in os.listdir(export_root)
                    if os.path.exists(os.path.join(export_root, d,
                                                   "saved_model.pb")))
  return os.path.join(export_root, versions[-1]) if versions else None


def _read_truth(config: ml_collections.ConfigDict) -> Optional[np.ndarray]:
  if not config.data.eval_truth:
    return None
  return np.loadtxt(config.data.eval_truth, dtype=np.float64, ndmin=1)


def summarize(runs: Sequence[Run], output_dir: str, vary: Sequence[str],
              top_k: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Builds the results dict (issue schema) from finished runs' predictions."""
  by_variant: dict[str, list[Run]] = {}
  for run in runs:
    by_variant.setdefault(run.variant.name, []).append(run)
  variants, per_example_pd, seconds = [], {}, []
  labels = truth = None
  for name, variant_runs in by_variant.items():
    models, predictions = [], []
    groups = None
    for run in variant_runs:
      scored = np.load(os.path.join(run.run_dir, "predictions.npz"))
      if labels is None:
        labels, truth = scored["labels"], _read_truth(run.config)
      elif not np.array_equal(labels, scored["labels"]):
        raise ValueError(f"{run.run_dir}: eval labels differ from the other "
                         "runs'; were they evaluated on different data?")
      groups = scored["groups"] if "groups" in scored.files else None
      predictions.append(scored["probabilities"])
      with open(os.path.join(run.run_dir, DONE_FILE)) as f:
        seconds.append(json.load(f).get("seconds", float("nan")))
      saved_model = _saved_model_dir(run.run_dir)
      models.append({
          "index": run.index,
          "seeds": run.seeds,
          "run_dir": os.path.relpath(run.run_dir, output_dir),
          "saved_model": (os.path.relpath(saved_model, output_dir)
                          if saved_model else None),
          "predictions": os.path.relpath(
              os.path.join(run.run_dir, "predictions.npz"), output_dir),
      })
    entry = report_lib.summarize_variant(
        name, variant_runs[0].variant.spec, models, predictions, labels,
        truth=truth, groups=groups, k=top_k if groups is not None else None)
    entry.update(_variant_length(variant_runs))
    variants.append(entry)
    if len(predictions) > 1:
      per_example_pd[name] = metrics_lib.per_example_relative_pd(predictions)
  base = runs[0].config
  results = {
      "config": base.to_dict(),
      "varied": list(vary),
      "eval_data": base.data.eval_files or base.data.movielens_dir,
      "variants": variants,
      "seconds_per_model": float(np.nanmean(seconds)) if seconds else None,
  }
  # Reference for PD comparisons: the variant named or specified 'relu'.
  return report_lib.add_comparisons(results), per_example_pd


def _variant_length(variant_runs: Sequence[Run]) -> dict[str, Any]:
  """``train_steps``: the steps the variant's evaluated models trained
  (the step of their eval_metrics.json; model 0's best step with early
  stopping), and ``length_from``: 'early stopping on validation (model 0)'
  or 'config'; nothing for runs without eval_metrics.json. Raises
  ValueError when the models disagree."""
  from recsys_smelu import train as train_lib  # pylint: disable=g-import-not-at-top
  if not all(os.path.exists(os.path.join(run.run_dir,
                                         train_lib.EVAL_METRICS_FILE))
             for run in variant_runs):
    return {}
  steps = sorted({_evaluated_step(run.run_dir) for run in variant_runs})
  if len(steps) != 1:
    raise ValueError(f"variant {variant_runs[0].variant.name!r}: its models "
                     f"trained for different numbers of steps {steps}; twins "
                     "must train equally long")
  return {"train_steps": steps[0],
          "length_from": ("early stopping on validation (model 0)"
                          if uses_early_stopping(variant_runs[0].config)
                          else "config")}


def environment(config: ml_collections.ConfigDict, seconds_per_model,
                determinism_from: str = "config") -> dict:
  """TF, Python, device, op determinism and where its value came from."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")
  return {
      "tensorflow": tf.__version__,
      "python": platform.python_version(),
      "device": (f"{len(gpus)} GPU(s)" if gpus else
                 platform_info.cpu_description()),
      "determinism": bool(config.determinism),
      "determinism_from": determinism_from,
      "seconds_per_model": seconds_per_model,
  }


# ----------------------------------------------------------------------------
# Library entry point


def evaluate_variants(config: ml_collections.ConfigDict, output_dir: str,
                      variants: Sequence[Variant], num_models: int = 3,
                      vary: Sequence[str] = ("init", "data_order"),
                      parallel: int = 1, mode: str = "all",
                      top_k: int = 10, determinism_from: str = "config",
                      local_dir: Optional[str] = None, *,
                      train_df=None, eval_df=None, validation_df=None
                      ) -> tuple[dict[str, Any], dict[str, str]]:
  """Trains (``mode`` all|train) and reports (all|report) the twin runs.

  Returns (results, failures); writes results.json, results.csv, report.md
  and the plots to ``output_dir`` unless ``mode == 'train'``.
  ``determinism_from`` says in the report where ``config.determinism``
  came from.

  A remote ``output_dir`` (``gs://...``, any ``tf.io.gfile`` scheme) is
  mirrored in ``local_dir`` (default: a directory named after it under the
  system's temporary directory, so a re-run on the same host resumes):
  what ``output_dir`` holds is copied there first, the runs and the report
  are written there, and finished runs and the report are copied back.

  DataFrames: ``train_df`` (and ``eval_df``, ``validation_df``), read by the
  config's column roles, are written once to ``output_dir/dataframes/*.csv``
  for the runs' subprocesses (``data.dataframes.write_dataframes``; a later
  call with other DataFrames is an error naming the split).
  """
  if train_df is not None or eval_df is not None or validation_df is not None:
    config = with_dataframes(config, output_dir, train_df, eval_df,
                             validation_df)
  if "://" not in output_dir:
    return _evaluate_in(config, output_dir, variants, num_models, vary,
                        parallel, mode, top_k, determinism_from)
  local_dir = local_dir or os.path.join(
      tempfile.gettempdir(), "recsys_smelu_twin",
      hashlib.sha256(output_dir.encode()).hexdigest()[:16])
  logging.info("%s: runs are written to %s and copied there", output_dir,
               local_dir)
  _copy_tree(output_dir, local_dir)
  try:
    results, failures = _evaluate_in(config, local_dir, variants, num_models,
                                     vary, parallel, mode, top_k,
                                     determinism_from)
  finally:
    _upload_finished(local_dir, output_dir)
  local_root = os.path.abspath(local_dir)
  return results, {run_dir.replace(local_root, output_dir.rstrip("/"), 1): error
                   for run_dir, error in failures.items()}


def with_dataframes(config: ml_collections.ConfigDict, output_dir: str,
                    train_df, eval_df=None, validation_df=None
                    ) -> ml_collections.ConfigDict:
  """``config`` reading ``train_df`` / ``eval_df`` / ``validation_df``,
  written as csv files under ``output_dir/dataframes`` (once)."""
  from recsys_smelu.data import dataframes  # pylint: disable=g-import-not-at-top
  if eval_df is None and not config.data.eval_files:
    raise ValueError("the twin evaluator scores eval_df (or data.eval_files); "
                     "give eval_df")
  frames = {"train": train_df, "eval": eval_df}
  if validation_df is not None:
    frames["validation"] = validation_df
  return dataframes.write_dataframes(
      config, os.path.join(output_dir, "dataframes"), frames)


def _copy_tree(source: str, destination: str,
               only: Optional[Sequence[str]] = None) -> int:
  """Copies the files under ``source`` (``tf.io.gfile`` paths) that are
  missing or of another size in ``destination``; ``only``: relative paths of
  the files or directories to copy. Returns the number copied."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.io.gfile.isdir(source):
    return 0
  copied = 0
  for root, _, names in tf.io.gfile.walk(source):
    relative_root = os.path.relpath(root, source) if root != source else ""
    for name in names:
      relative = os.path.join(relative_root, name)
      if only is not None and not any(
          relative == o or relative.startswith(o.rstrip("/") + "/")
          for o in only):
        continue
      target = os.path.join(destination, relative)
      if (tf.io.gfile.exists(target) and tf.io.gfile.stat(target).length ==
          tf.io.gfile.stat(os.path.join(root, name)).length):
        continue
      tf.io.gfile.makedirs(os.path.dirname(target))
      tf.io.gfile.copy(os.path.join(root, name), target, overwrite=True)
      copied += 1
  return copied


def _upload_finished(local_dir: str, output_dir: str) -> None:
  """Copies the report files and the finished (pruned) runs to ``output_dir``."""
  if not os.path.isdir(local_dir):
    return
  only = [name for name in os.listdir(local_dir)
          if os.path.isfile(os.path.join(local_dir, name))]
  runs_root = os.path.join(local_dir, "runs")
  for root, _, names in os.walk(runs_root):
    if DONE_FILE in names:
      only.append(os.path.relpath(root, local_dir))
  copied = _copy_tree(local_dir, output_dir, only)
  logging.info("copied %d files to %s", copied, output_dir)


def _evaluate_in(config, output_dir, variants, num_models, vary, parallel,
                 mode, top_k, determinism_from):
  """``evaluate_variants`` in a local (or mounted) ``output_dir``."""
  unknown = set(vary) - set(VARY_CHOICES)
  if unknown or not vary or ("none" in vary and len(vary) > 1):
    raise ValueError(f"vary={','.join(vary)!r}: give one or more of "
                     f"init, data_order, dropout, or 'none' alone")
  if num_models < 2:
    raise ValueError("num_models must be >= 2: PD needs a pair")
  config = config_lib.validate(config)
  output_dir = os.path.abspath(output_dir)
  variants = [select_on_validation(config, v, output_dir, mode)
              for v in variants]
  runs = []
  for variant in variants:
    for i in range(num_models):
      cfg = run_config(config, variant, i, vary)
      runs.append(Run(variant, i, os.path.join(output_dir, "runs", variant.name,
                                               str(i)), cfg,
                      model_seeds(config, i, vary)))
  failures: dict[str, str] = {}
  if mode in ("all", "train"):
    failures = train_runs(runs, parallel)
  else:
    set_twin_lengths(runs)
  if mode == "train":
    return {}, failures
  finished = [r for r in runs if r.is_done()]
  missing = [r.run_dir for r in runs if not r.is_done()]
  for run_dir in missing:
    failures.setdefault(run_dir, "not finished (no run_done.json)")
  if not finished:
    raise RuntimeError(f"no finished runs in {output_dir}/runs; nothing to report")
  results, per_example_pd = summarize(finished, output_dir, vary, top_k)
  results["failed_runs"] = failures
  report_lib.write_report(results, output_dir, per_example_pd=per_example_pd,
                          environment=environment(
                              config, results["seconds_per_model"],
                              determinism_from))
  return results, failures


# ----------------------------------------------------------------------------
# Command line


def apply_determinism_flag(config: ml_collections.ConfigDict,
                           determinism: bool, flag_given: bool,
                           config_overrides: dict[str, Any]
                           ) -> tuple[ml_collections.ConfigDict, str]:
  """(config, where its ``determinism`` came from) for the command line.

  ``--determinism`` (default true) sets ``determinism`` unless
  ``config_overrides`` (the ``--config.*`` flags given) has it, which wins.
  """
  if "determinism" in config_overrides:
    return config, "--config.determinism"
  return (config_lib.override(config, {"determinism": determinism}),
          "--determinism" if flag_given else "--determinism (default)")


def _load_named_variants(config_path: str) -> dict[str, dict]:
  """``get_variants()`` of the config file, if it defines one."""
  module = config_lib.load_config_module(config_path.split(":", 1)[0])
  return module.get_variants() if hasattr(module, "get_variants") else {}


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  config, determinism_from = apply_determinism_flag(
      f.config, f.determinism, bool(f["determinism"].present),
      config_flags.get_override_values(f["config"]))
  named = _load_named_variants(f["config"].config_filename)
  try:
    variants = variants_from_flags(f.variants, f.variant, named, config)
    results, failures = evaluate_variants(
        config, f.output_dir, variants, f.num_models, f.vary, f.parallel,
        f.mode, f.top_k, determinism_from)
  except (ValueError, RuntimeError) as e:
    raise SystemExit(f"error: {e}") from None
  if results:
    print(report_lib.format_text_table(results))
    root = (f.output_dir if "://" in f.output_dir else
            os.path.abspath(f.output_dir))
    print(f"\nReport: {os.path.join(root, 'report.md')}")
  if failures:
    print(f"\n{len(failures)} run(s) failed or unfinished:", file=sys.stderr)
    for run_dir, error in failures.items():
      print(f"  {run_dir}: {error}", file=sys.stderr)
    raise SystemExit(1)


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (configs/*.py); override keys "
      "with --config.section.key=value.", lock_config=True)
  flags.DEFINE_string("output_dir", None, "Where runs/ and the report go.")
  flags.DEFINE_string("variants", "", "Comma-separated variant specs, e.g. "
                      "relu,smelu:beta=1,gelu,ensemble:n=2 (';' also "
                      "separates); default: the config file's get_variants().")
  flags.DEFINE_multi_string(
      "variant", [], f"A variant that sets config keys: "
      f"'{CONFIG_VARIANT_FORMAT}', values typed like the key's default "
      "(lists as 64,8). Repeatable; runs after the --variants ones (alone, "
      "without get_variants(), when --variants is not given).")
  flags.DEFINE_integer("num_models", 3, "Models per variant (>= 2; 3 or more "
                       "to see the spread).")
  flags.DEFINE_list("vary", ["init", "data_order"], "What differs between the "
                    "models of a variant: init, data_order, dropout, or none.")
  flags.DEFINE_integer("parallel", 1, "Runs trained at once (subprocesses).")
  flags.DEFINE_enum("mode", "all", ["all", "train", "report"],
                    "train: only train missing runs; report: only merge.")
  flags.DEFINE_integer("top_k", 10, "k of the top-k swap rate (data with "
                       "data.group_feature only).")
  flags.DEFINE_boolean("determinism", True, "Op determinism in every run, so "
                       "models differ only in what --vary says; an explicit "
                       "--config.determinism wins.")
  flags.mark_flags_as_required(["config", "output_dir"])


def run():
  """Console script ``recsys-smelu-twin``."""
  from absl import app  # pylint: disable=g-import-not-at-top
  config_lib.check_command_line_overrides(sys.argv)
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
