"""Logistic regression baseline, with L2 and learning rate chosen on validation.

The model is the CTR model's wide part alone (``model.wide=true``,
``model.deep=false``, see ``recsys_smelu.models.ctr``)::

  logit = b + sum_f w_f[id_f] + v . dense

on the same hashed categorical ids (each feature one-hot over its buckets)
and the same transformed dense features as every other model, trained by the
same trainer (``recsys_smelu.train.train``), tables and dense part both with
Adagrad. Regularization is one λ set as both ``model.embedding_l2`` (the
per-id weights, frequency-weighted) and ``model.dense_l2`` (v; the bias is
not penalized).

``select(config, validation_dataset)`` is the one place the hyperparameters
are chosen: it trains one model per point of ``l2_grid`` x
``learning_rates`` (the rate set as both ``train.learning_rate`` and
``train.embedding_learning_rate``) and keeps the point of lowest log loss on
``validation_dataset``, never on the eval split. The twin evaluator's
built-in ``logreg`` variant (``recsys_smelu.twin``) runs it once per
experiment and trains its models at the chosen point.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import tempfile
from typing import Any, Optional, Sequence

from absl import logging
import ml_collections

from recsys_smelu import config as config_lib
from recsys_smelu import metrics as metrics_lib

# The config changes that make the CTR model a logistic regression.
MODEL_CHANGES = {
    "model.wide": True,
    "model.deep": False,
    "train.optimizer": "adagrad",
    "train.embedding_optimizer": "adagrad",
}
# λ (for both L2 keys) and Adagrad rates searched by default. The rates reach
# 10: a one-hot weight's gradient is its examples' share of a batch mean,
# small beside Adagrad's starting accumulator (models.ctr), so rates that
# suit a deep model's tables leave logistic regression far from its optimum
# (MovieLens 100K: validation log loss 0.625 at the best rate up to 0.5,
# 0.580 at 10, against 0.578 for scikit-learn's converged fit).
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2)
LEARNING_RATES = (0.1, 0.3, 1.0, 3.0, 10.0)


def point_changes(l2: float, learning_rate: float) -> dict[str, Any]:
  """The config changes of one grid point (on top of ``MODEL_CHANGES``)."""
  return {"model.embedding_l2": float(l2), "model.dense_l2": float(l2),
          "train.learning_rate": float(learning_rate),
          "train.embedding_learning_rate": float(learning_rate)}


def logreg_config(config: ml_collections.ConfigDict, l2: float,
                  learning_rate: float) -> ml_collections.ConfigDict:
  """``config`` turned into logistic regression at one grid point."""
  return config_lib.override(config, {**MODEL_CHANGES,
                                      **point_changes(l2, learning_rate)})


def point_dir(work_dir: str, l2: float, learning_rate: float) -> str:
  """Where ``select`` trains the model of one grid point."""
  return os.path.join(work_dir, f"l2={l2:g},lr={learning_rate:g}")


@dataclasses.dataclass
class Selection:
  """The grid search's outcome.

  ``changes``: the config changes of the best point (``MODEL_CHANGES`` plus
  its L2 and rates); ``l2``, ``learning_rate``, ``validation_logloss``: that
  point; ``grid``: every point as ``{"l2", "learning_rate",
  "validation_logloss"}``, in search order.
  """
  changes: dict[str, Any]
  l2: float
  learning_rate: float
  validation_logloss: float
  grid: list[dict[str, float]]


def select(config: ml_collections.ConfigDict, validation_dataset,
           l2_grid: Optional[Sequence[float]] = None,
           learning_rates: Optional[Sequence[float]] = None,
           work_dir: Optional[str] = None) -> Selection:
  """Chooses λ and the learning rate of logistic regression on validation.

  Trains ``logreg_config(config, l2, rate)`` for every point with
  ``recsys_smelu.train.train`` (``mode='train'``: the eval split is never
  read) in ``point_dir(work_dir, l2, rate)`` (a temporary directory, deleted
  afterwards, when ``work_dir`` is None; a given one keeps the runs, and
  a rerun resumes them), scores ``validation_dataset`` (batches of
  ``(features, label)`` in the model's input format, e.g. the data
  pipeline's validation split) and keeps the lowest log loss (the first of
  equals). ``l2_grid`` and ``learning_rates`` default to ``L2_GRID`` and
  ``LEARNING_RATES``.
  """
  from recsys_smelu import train as train_lib  # pylint: disable=g-import-not-at-top
  l2_grid = L2_GRID if l2_grid is None else tuple(l2_grid)
  learning_rates = (LEARNING_RATES if learning_rates is None
                    else tuple(learning_rates))
  if not l2_grid or not learning_rates:
    raise ValueError("logreg.select needs at least one L2 value and one "
                     "learning rate")
  if any(l2 < 0 for l2 in l2_grid) or any(r <= 0 for r in learning_rates):
    raise ValueError(f"logreg.select: L2 values must be >= 0 and learning "
                     f"rates > 0, got {list(l2_grid)} and "
                     f"{list(learning_rates)}")
  temporary = None
  if work_dir is None:
    temporary = tempfile.TemporaryDirectory(prefix="recsys_smelu_logreg_")
    work_dir = temporary.name
  grid = []
  try:
    for l2, rate in itertools.product(l2_grid, learning_rates):
      point = logreg_config(config, l2, rate)
      result = train_lib.train(point, point_dir(work_dir, l2, rate),
                               mode="train", interactive=False)
      scored = train_lib.predict(result.model, validation_dataset)
      loss = metrics_lib.log_loss(scored["labels"], scored["probabilities"])
      logging.info("logreg l2=%g lr=%g: validation log loss %.5f", l2, rate,
                   loss)
      grid.append({"l2": float(l2), "learning_rate": float(rate),
                   "validation_logloss": float(loss)})
  finally:
    if temporary is not None:
      temporary.cleanup()
  best = min(grid, key=lambda p: p["validation_logloss"])
  if len(learning_rates) > 1 and best["learning_rate"] == max(learning_rates):
    logging.warning("logreg: the best learning rate is the grid's largest "
                    "(%g); a larger one may fit validation better",
                    best["learning_rate"])
  return Selection(
      changes={**MODEL_CHANGES,
               **point_changes(best["l2"], best["learning_rate"])},
      l2=best["l2"], learning_rate=best["learning_rate"],
      validation_logloss=best["validation_logloss"], grid=grid)


# C of scikit-learn's LogisticRegression (the inverse L2 strength) searched
# by ``sklearn_reference``.
SKLEARN_C_GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)


def design_matrix(config: ml_collections.ConfigDict, split: str):
  """(X, y) of ``split`` ('train' | 'validation' | 'eval') of
  ``config.data``, rows in file order: X is the one-hot bucket id of every
  categorical feature (one block of ``num_buckets`` columns per feature)
  followed by the transformed dense features, a scipy CSR matrix; y the 0/1
  labels. These are exactly the inputs of ``logreg``'s model."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from scipy import sparse  # pylint: disable=g-import-not-at-top
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  schema = data_lib.build_schema(config)
  # Training reads drop a short last batch: read rows one at a time.
  dataset = data_lib.build_dataset(config, split, 1, shuffle=False)
  dataset = dataset.rebatch(4096)
  ids, dense, labels = [], [], []
  for features, label in dataset:
    sparse_ids = features[data_lib.features.SPARSE_KEY]
    ids.append(np.stack([sparse_ids[f.name].numpy()
                         for f in schema.categorical], axis=1))
    dense.append(features[data_lib.features.DENSE_KEY].numpy())
    labels.append(label.numpy().reshape(-1))
  if not labels:
    raise ValueError(f"logreg.design_matrix: the {split} split has no rows")
  ids, dense = np.concatenate(ids), np.concatenate(dense)
  offsets = np.cumsum([0] + [f.num_buckets for f in schema.categorical])
  rows = np.repeat(np.arange(len(ids)), len(schema.categorical))
  columns = (ids + offsets[:-1]).reshape(-1)
  one_hot = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)),
                              shape=(len(ids), int(offsets[-1])))
  return (sparse.hstack([one_hot, sparse.csr_matrix(dense)]).tocsr(),
          np.concatenate(labels))


def sklearn_reference(config: ml_collections.ConfigDict,
                      c_grid: Sequence[float] = SKLEARN_C_GRID
                      ) -> dict[str, Any]:
  """scikit-learn's ``LogisticRegression`` (L2, lbfgs run to convergence)
  on ``design_matrix``'s features of ``config.data``, its C chosen on the
  validation split: the converged optimum that ``logreg`` (Adagrad, early
  stopping) is checked against. Returns ``{"C", "validation_logloss",
  "eval_logloss", "eval_auc", "grid": [{"C", "validation_logloss"}]}``;
  the eval split is scored only at the chosen C."""
  from sklearn.linear_model import LogisticRegression  # pylint: disable=g-import-not-at-top
  if not c_grid or any(c <= 0 for c in c_grid):
    raise ValueError(f"sklearn_reference: C values must be > 0, got "
                     f"{list(c_grid)}")
  x_train, y_train = design_matrix(config, "train")
  x_val, y_val = design_matrix(config, "validation")
  grid, best = [], None
  for c in c_grid:
    model = LogisticRegression(C=c, max_iter=10_000).fit(x_train, y_train)
    loss = metrics_lib.log_loss(y_val, model.predict_proba(x_val)[:, 1])
    grid.append({"C": float(c), "validation_logloss": float(loss)})
    if best is None or loss < best[0]:
      best = (loss, c, model)
  loss, c, model = best
  x_eval, y_eval = design_matrix(config, "eval")
  scores = model.predict_proba(x_eval)[:, 1]
  return {"C": float(c), "validation_logloss": float(loss),
          "eval_logloss": metrics_lib.log_loss(y_eval, scores),
          "eval_auc": metrics_lib.roc_auc(y_eval, scores), "grid": grid}
