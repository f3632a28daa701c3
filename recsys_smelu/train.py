r"""Trainer: one entry point over tf.distribute, with checkpoints and resume.

Library: ``train(config, model_dir, strategy=..., mode=...)`` builds the data
and the model from a validated config, trains with Keras ``fit`` under the
chosen ``tf.distribute`` strategy, checkpoints every
``train.checkpoint_every`` steps, resumes from the latest checkpoint, and
evaluates on the eval split with exact metrics from the predictions.

Command line (thin: flags -> config -> ``train``)::

  python -m recsys_smelu.train --config=configs/quickstart.py \
      --model_dir=/tmp/run1 --config.model.activation=smelu:beta=1
  recsys-smelu-train --config=configs/tpu_criteo_dlrm.py --strategy=tpu \
      --tpu=local --model_dir=gs://bucket/run1

Resume without replaying or skipping data: the training input is a
deterministic function of ``seed.data`` (seeded shuffle, seeded per-epoch
reshuffle, deterministic interleave), so on restart from a checkpoint at step
``s`` the dataset is rebuilt and its first ``s`` batches are skipped
(``Dataset.skip`` on the batched stream: the skipped data is read and decoded
again but never trained on). The step lives in the optimizer's ``iterations``,
which is checkpointed with the model and the optimizer slots.

Length: ``train.steps``, or ``train.epochs`` resolved to
``ceil(epochs * train rows / batch_size)`` steps before the model is built
(``total_steps``; the learning-rate schedules span it; eval_metrics.json
records it as ``train_steps``). ``train.stop_at_step`` stops earlier under
the same schedule.

Validation and early stopping: every ``train.eval_every`` steps (at a
checkpoint) the validation split is scored (``validation.json``,
TensorBoard ``validation/*``); the best checkpoint by validation log loss is
kept in ``best/``. With ``train.early_stopping_patience`` training stops
after that many evaluations without a lower log loss, and the best
checkpoint is the one evaluated and exported. The state survives a kill:
see ``_Validation``.

Optimizers: embedding tables and dense layers get separate optimizers
(``train.embedding_optimizer`` / ``train.optimizer``). The trainer compiles the
model with the dense one; the model owns the embedding one (on CPU/GPU its
``train_step`` routes table gradients to it, under TPUStrategy the TPU
embedding engine applies it).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import json
import math
import os
import sys
import tempfile
import time
from typing import Any, Optional

from absl import logging
import ml_collections
import numpy as np
from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

import tensorflow as tf  # pylint: disable=wrong-import-position

from recsys_smelu import compat
from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu import metrics as metrics_lib
from recsys_smelu import models as models_lib
from recsys_smelu.models import schedules

STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
MODES = ("train", "eval", "train_and_eval")
EVAL_METRICS_FILE = "eval_metrics.json"
PREDICTIONS_FILE = "predictions.npz"
CHECKPOINT_SUBDIR = "checkpoints"
VALIDATION_FILE = "validation.json"
BEST_SUBDIR = "best"


class NonFiniteLossError(RuntimeError):
  """Training produced a NaN/Inf loss; the last good checkpoint is kept."""


# ----------------------------------------------------------------------------
# Strategy and determinism


def make_strategy(name: str, tpu: str = "") -> tf.distribute.Strategy:
  """Returns the tf.distribute strategy named by ``--strategy``.

  * ``default``: the default (single device) strategy.
  * ``mirrored``: all GPUs, or all logical CPU devices when there is no GPU
    (so it can be exercised on a CPU host with
    ``tf.config.set_logical_device_configuration``).
  * ``multi_worker_mirrored``: synchronous data parallelism over the workers
    described by the ``TF_CONFIG`` environment variable.
  * ``tpu``: Cloud TPU through ``TPUClusterResolver(tpu)``: ``local`` on a
    TPU VM, else the TPU name or ``grpc://`` address.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    if tf.config.list_logical_devices("GPU"):
      return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)
  if name == "multi_worker_mirrored":
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
    if tpu not in ("", "local"):
      tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"--strategy={name!r}: choose one of {', '.join(STRATEGIES)}")


def configure_determinism(config: ml_collections.ConfigDict) -> None:
  """Seeds TF's global RNG and, with ``determinism: true``, op determinism.

  Model weights, data order and dropout take their own seeds from
  ``config.seed``; the global seed only covers anything left unseeded.
  Op determinism does not switch off oneDNN, whose kernels x86 CPU builds of
  TensorFlow use by default (TF 2.21 still reports oneDNN enabled after
  ``enable_op_determinism()``). oneDNN may sum in another order than the
  stock kernels, so a run may differ in the last bits from one with
  ``TF_ENABLE_ONEDNN_OPTS=0``. TensorFlow reads that variable once, when it
  loads, and nothing here sets it: set it in the environment to rule oneDNN
  out (the bit-identity test does).
  """
  tf.random.set_seed(config.seed.init)
  if config.determinism:
    tf.config.experimental.enable_op_determinism()


# ----------------------------------------------------------------------------
# Optimizers


_DENSE_OPTIMIZERS = {
    "adam": tf.keras.optimizers.Adam,
    "adagrad": tf.keras.optimizers.Adagrad,
    "sgd": tf.keras.optimizers.SGD,
}


def learning_rate(base: float, train_config: ml_collections.ConfigDict,
                  total_steps: Optional[int] = None):
  """``base`` with the warm-up and decay of ``train_config``
  (``config.train``) over ``total_steps`` (default ``train.steps``; see
  ``total_steps``), through ``models.schedules``."""
  t = train_config
  return schedules.learning_rate(base, warmup_steps=t.warmup_steps,
                                 total_steps=total_steps or t.steps,
                                 decay=t.decay)


def make_dense_optimizer(config: ml_collections.ConfigDict,
                         total_steps: Optional[int] = None
                         ) -> tf.keras.optimizers.Optimizer:
  """The optimizer of every non-embedding variable (``train.optimizer``).

  The embedding tables get theirs from the model (``train.embedding_optimizer``,
  see ``recsys_smelu.models``): on CPU/GPU the model's ``train_step`` routes
  table gradients to it, on TPU the TPU embedding engine applies it.
  """
  t = config.train
  return _DENSE_OPTIMIZERS[t.optimizer](
      learning_rate=learning_rate(t.learning_rate, t, total_steps))


def build_model(config: ml_collections.ConfigDict,
                schema: data_lib.FeatureSchema,
                total_steps: Optional[int] = None) -> models_lib.CTRModel:
  """``models.build_model`` with the embedding optimizer ``config.train`` names.

  ``train.embedding_optimizer`` at ``train.embedding_learning_rate``, with
  the warm-up and decay of ``learning_rate`` on CPU/GPU.
  """
  t = config.train
  return models_lib.build_model(
      config, schema,
      embedding_optimizer=models_lib.embedding_optimizer(
          t.embedding_optimizer, t.embedding_learning_rate),
      embedding_learning_rate=learning_rate(t.embedding_learning_rate, t,
                                            total_steps))


# ----------------------------------------------------------------------------
# Training length and validation data


def total_steps(config: ml_collections.ConfigDict) -> int:
  """The run's length in optimizer steps: ``train.steps``, or with
  ``train.epochs`` ``ceil(epochs * train rows / train.batch_size)`` (the
  rows the training split holds, ``data.count_rows``). Known before the
  model is built: the learning-rate schedule spans it."""
  t = config.train
  if t.steps > 0:
    return t.steps
  rows = data_lib.count_rows(config, "train")
  if rows <= 0:
    raise config_lib.ConfigError(
        "config key 'train.epochs': the training split has no rows")
  steps = math.ceil(t.epochs * rows / t.batch_size)
  if t.stop_at_step > steps:
    raise config_lib.ConfigError(
        f"config key 'train.stop_at_step' ({t.stop_at_step}) is beyond the "
        f"{steps} steps of train.epochs={t.epochs!r}")
  return steps


def check_validation(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError when ``train.eval_every`` or
  ``train.early_stopping_patience`` is set without validation data. Run
  before any model is built."""
  t = config.train
  key = ("train.early_stopping_patience" if t.early_stopping_patience
         else "train.eval_every" if t.eval_every else None)
  if key and not data_lib.has_validation(config):
    raise config_lib.ConfigError(
        f"config key {key!r} needs validation data, and the config has none: "
        "set data.validation_files, or data.validation_fraction (with "
        "data.validation_split)")


def check_data_splits(config: ml_collections.ConfigDict) -> None:
  """``data.check_splits`` (row ranges inside their files, no empty split)
  when the config selects rows, has validation data or counts epochs; a
  plain run's files are not counted (a Criteo day is large). Run before any
  model is built."""
  d, t = config.data, config.train
  if d.train_rows or d.eval_rows or t.epochs or data_lib.has_validation(config):
    data_lib.check_splits(config)


def validation_dataset(config: ml_collections.ConfigDict) -> tf.data.Dataset:
  """The validation split in a fixed order, never shuffled, last batch kept."""
  return data_lib.build_dataset(config, "validation",
                                config.train.eval_batch_size)


# ----------------------------------------------------------------------------
# The monitor callback: progress, summaries, NaN guard, checkpoints


def _is_chief(strategy: tf.distribute.Strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not isinstance(
      strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return task_type == "chief" or (task_type == "worker" and task_id == 0
                                  and not has_chief) or task_type is None


class _TrainingMonitor(tf.keras.callbacks.Callback):
  """Checkpoints, NaN guard, examples/s, learning rate, progress and logs.

  Keras reports batch ends once per ``steps_per_execution`` steps. The
  monitor has Keras pass its logs as tensors (see ``compat``), reads only
  the loss on every report (for the NaN guard); the other metrics are read
  only when a line is logged, so a step costs one host sync, not one per
  metric. The step is the optimizer's ``iterations``, read once per epoch and
  advanced by Keras' batch index in between.

  After the first report (the train function is traced by then) the objects
  alive are frozen out of Python's garbage collector (``gc.freeze``) until
  training ends: full collections otherwise rescan the model's and the
  traced graphs' Python objects and stall a step every few hundred steps
  (docs/benchmarks.md#where-the-training-step-goes).
  """

  def __init__(self, manager: tf.train.CheckpointManager, total_steps: int,
               global_batch_size: int, log_every: int, writer, interactive: bool,
               bad_rows=None, validation: Optional[_Validation] = None):
    super().__init__()
    self._validation = validation
    compat.receive_logs_as_tensors(self)
    self._bad_rows = bad_rows
    self._manager = manager
    self._total = total_steps
    self._batch = global_batch_size
    self._log_every = log_every
    self._writer = writer
    self._interactive = interactive
    self._last_logged_step = None
    self._last_time = None
    self._epoch_start_step = 0
    self._bar = None
    self._froze_gc = False
    self.non_finite_step: Optional[int] = None
    self.examples_per_second: list[float] = []

  def _step(self) -> int:
    return int(self.model.optimizer.iterations.numpy())

  def on_train_begin(self, logs=None):
    step = self._step()
    self._last_logged_step, self._last_time = step, time.perf_counter()
    if self._interactive:
      from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
      self._bar = tqdm(total=self._total, initial=step, unit="step",
                       dynamic_ncols=True, file=sys.stderr)

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start_step = self._step()

  def on_train_batch_end(self, batch, logs=None):
    if not self._froze_gc:
      gc.collect()
      gc.freeze()
      self._froze_gc = True
    logs = logs or {}
    # ``batch`` is the index in the epoch of the last step run.
    step = self._epoch_start_step + batch + 1
    loss = float(logs.get("loss", 0.0))
    if not math.isfinite(loss):
      self.non_finite_step = step
      self.model.stop_training = True
      return
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
    if step >= self._total:
      self.model.stop_training = True
    if step - self._last_logged_step >= self._log_every or step >= self._total:
      now = time.perf_counter()
      rate = (step - self._last_logged_step) * self._batch / max(
          now - self._last_time, 1e-9)
      self.examples_per_second.append(rate)
      lr = compat.current_learning_rate(self.model.optimizer)
      values = {name: float(logs[name]) for name in
                ("auc", "log_loss", "mean_prediction", "mean_label")
                if name in logs}
      if self._bar is not None:
        self._bar.set_postfix(loss=f"{loss:.4f}", ex_per_s=f"{rate:,.0f}")
      else:
        logging.info("step %d/%d  loss %.5f  auc %.4f  lr %.3g  %.0f examples/s",
                     step, self._total, loss, values.get("auc", float("nan")),
                     lr, rate)
      if self._writer is not None:
        with self._writer.as_default(step=step):
          tf.summary.scalar("train/loss", loss)
          for name, value in values.items():
            tf.summary.scalar(f"train/{name}", value)
          tf.summary.scalar("train/learning_rate", lr)
          tf.summary.scalar("train/examples_per_second", rate)
      self._last_logged_step, self._last_time = step, now

  def on_epoch_end(self, epoch, logs=None):
    if self.non_finite_step is None:
      step = self._step()
      self._manager.save(checkpoint_number=step)
      if self._validation is not None and self._validation.is_due(step):
        self._validation.evaluate(step)
        if self._validation.should_stop():
          logging.info("Early stopping at step %d: best validation log loss "
                       "at step %d", step, self._validation.best()["step"])
          self.model.stop_training = True
    if self._bad_rows is not None and self._bad_rows.total:
      logging.warning("Training data so far: %s", self._bad_rows.summary())

  def unfreeze_gc(self) -> None:
    if self._froze_gc:
      gc.unfreeze()
      self._froze_gc = False

  def on_train_end(self, logs=None):
    self.unfreeze_gc()
    if self._bar is not None:
      self._bar.close()
    if self._writer is not None:
      self._writer.flush()


# ----------------------------------------------------------------------------
# Evaluation


class _PredictWithLabels(tf.keras.Model):
  """Wraps a CTR model so one ``predict`` pass returns logits and labels.

  Keras ``predict`` keeps example order under every strategy and handles the
  last partial batch, so the eval split is read once and scored exactly once.
  With ``group_feature`` the bucket id of that categorical feature (e.g. the
  user) comes back too, for ranking metrics.
  """

  def __init__(self, model: tf.keras.Model, group_feature: str = ""):
    super().__init__()
    self.ctr_model = model
    self.group_feature = group_feature

  def predict_step(self, data):
    features, labels = data
    logits = tf.reshape(self.ctr_model(features, training=False), [-1])
    outputs = {"logit": tf.cast(logits, tf.float32), "label": labels}
    if self.group_feature:
      outputs["group"] = features["sparse_features"][self.group_feature]
    return outputs


def predict(model: tf.keras.Model, dataset: tf.data.Dataset,
            group_feature: str = "") -> dict[str, np.ndarray]:
  """Scores the whole dataset in order.

  Returns ``{"probabilities", "labels"}`` (float64) and ``"groups"`` when
  ``group_feature`` is given.
  """
  outputs = _PredictWithLabels(model, group_feature).predict(dataset, verbose=0)
  logits = outputs["logit"].astype(np.float64)
  result = {"probabilities": 1.0 / (1.0 + np.exp(-logits)),
            "labels": outputs["label"].astype(np.float64)}
  if group_feature:
    result["groups"] = outputs["group"]
  return result


def _write_json_atomically(path: str, value: Any) -> None:
  """Writes ``path`` through a temporary file and a rename, so a kill leaves
  the old or the new file, never half of one."""
  temporary = path + ".tmp"
  with tf.io.gfile.GFile(temporary, "w") as f:
    json.dump(value, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(temporary, path, overwrite=True)


def read_validation(model_dir: str) -> list[dict[str, Any]]:
  """``model_dir/validation.json``: ``[{"step", "logloss", "auc", "ne"}]``."""
  path = os.path.join(model_dir, VALIDATION_FILE)
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


class _Validation:
  """Validation every ``train.eval_every`` steps, and early stopping.

  At a step ``s`` that is a multiple of ``eval_every`` (and at the last
  step) the monitor, right after the rolling checkpoint of ``s``, calls
  ``evaluate(s)``: exact log loss, AUC and normalized entropy
  (``log loss / H(mean label)``, ``metrics.normalized_entropy``) of the
  validation split go to TensorBoard (``validation/logloss`` ...,
  ``work_dir/validation``) and to ``model_dir/validation.json``; a lower log
  loss than every earlier one saves the model to ``model_dir/best/`` (one
  checkpoint, kept apart from the rolling ones). With
  ``train.early_stopping_patience = P`` training stops once P evaluations
  in a row found no lower log loss.

  The early-stopping state is ``validation.json`` itself (the best step is
  the first with the lowest log loss), written atomically after the rolling
  checkpoint and before the best one. So after a kill, ``resume(step)`` at
  the restored checkpoint drops records past it, evaluates ``step`` if
  its record is missing, and saves the best checkpoint if its record is
  there but the checkpoint is not: the state is then the one an
  uninterrupted run had at ``step``.
  """

  def __init__(self, config: ml_collections.ConfigDict,
               model: tf.keras.Model, checkpoint: tf.train.Checkpoint,
               strategy: tf.distribute.Strategy, model_dir: str,
               work_dir: str, total: int):
    t = config.train
    self._config = config
    self._model = model
    self._strategy = strategy
    self._model_dir = model_dir
    self._chief = _is_chief(strategy)
    self._every = t.eval_every
    self._patience = t.early_stopping_patience
    self._total = total
    self._dataset = None
    self._predictor = None
    self.best_manager = tf.train.CheckpointManager(
        checkpoint, os.path.join(work_dir, BEST_SUBDIR), max_to_keep=1)
    self._writer = tf.summary.create_file_writer(
        os.path.join(work_dir, "validation")) if self._chief else None
    self.records = read_validation(model_dir)

  def is_due(self, step: int) -> bool:
    return step > 0 and (step % self._every == 0 or step == self._total)

  def best(self) -> Optional[dict[str, Any]]:
    """The first record with the lowest validation log loss."""
    return min(self.records, key=lambda r: r["logloss"]) if self.records \
        else None

  def should_stop(self) -> bool:
    """P evaluations in a row after the best one found no lower log loss."""
    best = self.best()
    if not self._patience or best is None:
      return False
    after = sum(1 for r in self.records if r["step"] > best["step"])
    return after >= self._patience

  def resume(self, step: int) -> None:
    """Brings the state to the restored ``step`` (see the class docstring)."""
    self.records = [r for r in self.records if r["step"] <= step]
    if self.is_due(step) and (not self.records
                              or self.records[-1]["step"] != step):
      with self._strategy.scope():
        self.evaluate(step)
      return
    best = self.best()
    if best is not None and best["step"] == step and not (
        self.best_checkpoint() or "").endswith(f"-{step}"):
      self.best_manager.save(checkpoint_number=step)

  def best_checkpoint(self) -> Optional[str]:
    return self.best_manager.latest_checkpoint

  def evaluate(self, step: int) -> dict[str, Any]:
    """Scores the validation split at ``step``; records it and keeps the
    best checkpoint. Call after the rolling checkpoint of ``step``."""
    if self._dataset is None:
      self._dataset = validation_dataset(self._config)
      self._predictor = _PredictWithLabels(self._model)
    outputs = self._predictor.predict(self._dataset, verbose=0)
    logits = outputs["logit"].astype(np.float64)
    probabilities = 1.0 / (1.0 + np.exp(-logits))
    labels = outputs["label"].astype(np.float64)
    logloss = metrics_lib.log_loss(labels, probabilities)
    try:
      auc = metrics_lib.roc_auc(labels, probabilities)
    except metrics_lib.MetricInputError:  # one class only
      auc = None
    record = {"step": int(step), "logloss": logloss, "auc": auc,
              "ne": metrics_lib.normalized_entropy(logloss, labels.mean())}
    previous = self.best()
    self.records.append(record)
    logging.info("Validation at step %d: %s", step, json.dumps(record))
    if self._chief:
      _write_json_atomically(os.path.join(self._model_dir, VALIDATION_FILE),
                             self.records)
      with self._writer.as_default(step=step):
        for name in ("logloss", "auc", "ne"):
          if record[name] is not None:
            tf.summary.scalar(f"validation/{name}", record[name])
      self._writer.flush()
    if previous is None or logloss < previous["logloss"]:
      self.best_manager.save(checkpoint_number=step)
    return record


def check_eval_truth(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError unless ``data.eval_truth`` (when set) has one value
  per row of ``data.eval_files``, e.g. after overriding only the eval files
  of a config made for synthetic data. Run before any model is built."""
  truth = read_eval_truth(config.data.eval_truth)
  if truth is None:
    return
  rows = data_lib.count_rows(config, "eval")
  if len(truth) != rows:
    eval_key = ("data.movielens_dir" if config.data.format == "movielens"
                else "data.eval_files")
    raise config_lib.ConfigError(
        f"config keys '{eval_key}' and 'data.eval_truth' do not match: the "
        f"eval split has {rows} rows, {config.data.eval_truth!r} has "
        f"{len(truth)} values (one true probability per eval row). Give the "
        "eval files' own truth file, or clear it: "
        "--config.data.eval_truth=''")


def read_eval_truth(path: str) -> Optional[np.ndarray]:
  """Per-eval-example true probabilities (synthetic data), one per line."""
  if not path:
    return None
  with tf.io.gfile.GFile(path) as f:
    return np.loadtxt(f, dtype=np.float64, ndmin=1)


def evaluate(config: ml_collections.ConfigDict, model: tf.keras.Model,
             strategy: tf.distribute.Strategy, model_dir: Optional[str],
             bad_rows=None, extra: Optional[dict[str, Any]] = None
             ) -> dict[str, Any]:
  """Exact AUC, log loss and calibration on the eval split.

  Writes ``model_dir/eval_metrics.json`` and ``model_dir/predictions.npz``
  (probabilities, labels and, with ``data.group_feature``, groups, in
  eval-file order) when ``model_dir`` is given. ``extra`` keys are added
  to the metrics (the run's length and early stopping, see ``train``).
  """
  dataset = data_lib.build_dataset(config, "eval", config.train.eval_batch_size,
                                   bad_rows=bad_rows)
  with strategy.scope():
    scored = predict(model, dataset, config.data.group_feature)
  probabilities, labels = scored["probabilities"], scored["labels"]
  truth = read_eval_truth(config.data.eval_truth)
  if truth is not None and len(truth) != len(labels):
    raise ValueError(f"data.eval_truth {config.data.eval_truth!r} has "
                     f"{len(truth)} values but the eval split has "
                     f"{len(labels)} examples")
  result = metrics_lib.model_metrics(labels, probabilities, truth)
  result["step"] = int(model.optimizer.iterations.numpy()) if model.optimizer else 0
  if bad_rows is not None:
    result["skipped_bad_rows"] = bad_rows.total
  result.update(extra or {})
  if model_dir and _is_chief(strategy):
    with tf.io.gfile.GFile(os.path.join(model_dir, EVAL_METRICS_FILE), "w") as f:
      json.dump(result, f, indent=2, sort_keys=True)
    buffer = io.BytesIO()  # np.savez seeks; GFile (gs://) cannot
    np.savez(buffer, **scored)
    with tf.io.gfile.GFile(os.path.join(model_dir, PREDICTIONS_FILE), "wb") as f:
      f.write(buffer.getvalue())
  return result


# ----------------------------------------------------------------------------
# The library entry point


@dataclasses.dataclass
class TrainResult:
  model: tf.keras.Model
  step: int
  eval_metrics: Optional[dict[str, Any]]
  examples_per_second: Optional[float]
  checkpoint: Optional[str]
  # The run's length (train.steps, or resolved from train.epochs) and, with
  # early stopping, where it stopped (``step`` is then the best step).
  total_steps: Optional[int] = None
  last_step: Optional[int] = None


def _absolute_paths(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Local data paths made absolute, so config.json works from any directory."""
  changes = {}
  for key in ("train_files", "eval_files", "movielens_dir", "eval_truth",
              "validation_files", "schema_file"):
    value = config.data[key]
    if value and "://" not in value:
      changes[f"data.{key}"] = ",".join(
          os.path.abspath(os.path.expanduser(p.strip())) for p in value.split(","))
  return config_lib.override(config, changes)


def _worker_dir(model_dir: str, strategy: tf.distribute.Strategy) -> str:
  """Chief writes to model_dir; other MWMS workers to a fresh scratch dir.

  Every worker must take part in saving (collective ops), but only the
  chief's files are kept; all workers restore from the chief's checkpoints.
  """
  if _is_chief(strategy):
    return model_dir
  resolver = strategy.cluster_resolver
  return tempfile.mkdtemp(
      prefix=f"recsys_smelu_{resolver.task_type}_{resolver.task_id}_")


def prepare_tabular_schema(config: ml_collections.ConfigDict, model_dir: str,
                           write_dir: Optional[str] = None
                           ) -> ml_collections.ConfigDict:
  """For the tabular formats, the run's ``schema.json`` (roles,
  vocabularies, statistics) and ``config`` with ``data.schema_file`` on it.

  A run that has ``model_dir/schema.json`` (resume, ``--mode=eval``) reuses
  it after checking the config's roles still match (DataError naming the
  key otherwise); a new run takes ``data.schema_file`` when set, else
  builds the schema from the train split's rows only (``data.
  tabular_schema``), and writes it to
  ``write_dir/schema.json`` (default ``model_dir``; a non-chief worker's
  scratch directory). Every later step (datasets, export, twins) reads the
  schema from that file. Other formats: ``config`` unchanged.
  """
  if not data_lib.is_tabular(config.data):
    return config
  path = os.path.join(model_dir, data_lib.tabular.SCHEMA_FILE)
  if tf.io.gfile.exists(path):
    config = config_lib.override(config, {"data.schema_file": path})
    data_lib.tabular_schema(config)  # checks the roles
    return config
  schema = data_lib.tabular_schema(config)
  path = os.path.join(write_dir or model_dir, data_lib.tabular.SCHEMA_FILE)
  data_lib.tabular.save_schema(schema, path)
  logging.info("Wrote %s", path)
  return config_lib.override(config, {"data.schema_file": path})


def build(config: ml_collections.ConfigDict, strategy: tf.distribute.Strategy,
          total: Optional[int] = None
          ) -> tuple[tf.keras.Model, tf.train.Checkpoint]:
  """Model + optimizer compiled under ``strategy``, and its checkpoint;
  the learning-rate schedules span ``total`` steps (``total_steps``)."""
  schema = data_lib.build_schema(config)
  with strategy.scope():
    model = build_model(config, schema, total)
    if not isinstance(strategy, tf.distribute.TPUStrategy):
      models_lib.create_variables(model, schema)
    optimizer = make_dense_optimizer(config, total)
    model.compile(optimizer=optimizer,
                  steps_per_execution=config.train.steps_per_execution,
                  jit_compile=config.train.jit_compile)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
  return model, checkpoint


def train(config: ml_collections.ConfigDict, model_dir: str,
          strategy: Optional[tf.distribute.Strategy] = None,
          mode: str = "train_and_eval",
          interactive: Optional[bool] = None) -> TrainResult:
  """Trains and/or evaluates the model ``config`` describes in ``model_dir``.

  Resumes from the latest checkpoint in ``model_dir/checkpoints`` when there is
  one. With ``train.eval_every`` the validation split is scored during
  training (``model_dir/validation.json``); with
  ``train.early_stopping_patience`` training stops when its log loss stops
  improving, and the best checkpoint (``model_dir/best/``) is the one
  evaluated, exported and returned. Raises ``NonFiniteLossError`` (keeping the last good checkpoint) when
  the training loss becomes NaN or Inf, ``ConfigError`` for a bad config, and
  ``data.BadRowError`` (``file:line: bad row ...``) for a bad training or
  eval row under ``data.on_bad_row='error'``.
  """
  if mode not in MODES:
    raise ValueError(f"mode={mode!r}: choose one of {', '.join(MODES)}")
  config = _absolute_paths(config_lib.validate(config))
  if mode in ("eval", "train_and_eval"):
    check_eval_truth(config)
  check_data_splits(config)
  check_validation(config)
  total = total_steps(config)
  if config.train.epochs:
    logging.info("train.epochs=%g: %d steps", config.train.epochs, total)
  strategy = strategy or tf.distribute.get_strategy()
  configure_determinism(config)
  work_dir = _worker_dir(model_dir, strategy)
  tf.io.gfile.makedirs(work_dir)
  config = prepare_tabular_schema(config, model_dir, work_dir)
  if _is_chief(strategy):
    config_lib.save(config, model_dir)

  model, checkpoint = build(config, strategy, total)
  manager = tf.train.CheckpointManager(
      checkpoint, os.path.join(work_dir, CHECKPOINT_SUBDIR),
      max_to_keep=config.train.keep_checkpoints)
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, CHECKPOINT_SUBDIR))
  if latest:
    checkpoint.restore(latest).expect_partial()
    logging.info("Restored %s (step %d)", latest,
                 int(model.optimizer.iterations.numpy()))
  elif mode == "eval":
    raise FileNotFoundError(f"--mode=eval: no checkpoint in "
                            f"{os.path.join(model_dir, CHECKPOINT_SUBDIR)}")

  validation = None
  if config.train.eval_every:
    validation = _Validation(config, model, checkpoint, strategy, model_dir,
                             work_dir, config.train.stop_at_step or total)
  bad_rows = data_lib.BadRowCounter()
  rate = None
  if mode in ("train", "train_and_eval"):
    with _bad_row_as_data_error():
      if validation is not None:
        validation.resume(int(model.optimizer.iterations.numpy()))
      rate = _fit(config, model, manager, strategy, work_dir, bad_rows,
                  sys.stderr.isatty() if interactive is None else interactive,
                  total, validation)
    if bad_rows.total:
      logging.warning("Training data: %s", bad_rows.summary())
  last_step = int(model.optimizer.iterations.numpy())
  early_stopping = None
  if validation is not None and config.train.early_stopping_patience:
    early_stopping = _restore_best(validation, checkpoint, model_dir,
                                   last_step, config.train.stop_at_step or total)
  step = int(model.optimizer.iterations.numpy())
  if work_dir != model_dir:
    tf.io.gfile.rmtree(work_dir)

  eval_metrics = None
  if mode in ("eval", "train_and_eval"):
    eval_bad_rows = data_lib.BadRowCounter()
    with _bad_row_as_data_error():
      eval_metrics = evaluate(config, model, strategy, model_dir,
                              eval_bad_rows,
                              extra=_length_outputs(config, total,
                                                    early_stopping))
    logging.info("Eval at step %d: %s", step, json.dumps(eval_metrics))
    if eval_bad_rows.total:
      logging.warning("Eval data: %s", eval_bad_rows.summary())
  if config.train.export and _is_chief(strategy):
    from recsys_smelu import export as export_lib  # pylint: disable=g-import-not-at-top
    # A model built under a distribution strategy is rebuilt on CPU from
    # a checkpoint: the best one when early stopping chose it.
    best = (early_stopping or {}).get("checkpoint")
    rebuilt = best and not _on_default_strategy(strategy)
    export_lib.export_saved_model(model_dir, os.path.join(model_dir, "export"),
                                  model=model, config=config,
                                  checkpoint=best if rebuilt else None)
  return TrainResult(model=model, step=step, eval_metrics=eval_metrics,
                     examples_per_second=rate,
                     checkpoint=(early_stopping or {}).get("checkpoint") or
                     tf.train.latest_checkpoint(
                         os.path.join(model_dir, CHECKPOINT_SUBDIR)),
                     total_steps=total, last_step=last_step)


def _on_default_strategy(strategy: tf.distribute.Strategy) -> bool:
  return not isinstance(strategy, (tf.distribute.MirroredStrategy,
                                   tf.distribute.MultiWorkerMirroredStrategy,
                                   tf.distribute.TPUStrategy))


def _restore_best(validation: _Validation, checkpoint: tf.train.Checkpoint,
                  model_dir: str, last_step: int, stop_step: int
                  ) -> dict[str, Any]:
  """Restores the best validation checkpoint into the model (its optimizer
  step is then the best step); returns what eval_metrics.json reports of
  it. ``model_dir/best`` is read (the chief's), as for resume."""
  best = validation.best()
  path = tf.train.latest_checkpoint(os.path.join(model_dir, BEST_SUBDIR))
  if best is None or path is None or not path.endswith(f"-{best['step']}"):
    raise FileNotFoundError(
        f"train.early_stopping_patience: no best checkpoint for "
        f"{os.path.join(model_dir, VALIDATION_FILE)} in "
        f"{os.path.join(model_dir, BEST_SUBDIR)} (trained yet?)")
  checkpoint.restore(path).expect_partial()
  logging.info("Restored the best checkpoint %s (validation log loss %.6f)",
               path, best["logloss"])
  return {"checkpoint": path, "last_step": last_step,
          "best_validation_logloss": best["logloss"],
          "stopped_early": last_step < stop_step}


def _length_outputs(config: ml_collections.ConfigDict, total: int,
                    early_stopping: Optional[dict[str, Any]]) -> dict[str, Any]:
  """The keys eval_metrics.json adds to the metrics: ``train_steps`` (the
  resolved length) with ``train.epochs``; ``last_step``,
  ``best_validation_logloss`` and ``stopped_early`` with early stopping.
  None by default, so a default run's file is as before."""
  extra = {}
  if config.train.epochs:
    extra["train_steps"] = total
  if early_stopping:
    extra.update({k: v for k, v in early_stopping.items()
                  if k != "checkpoint"})
  return extra


DATAFRAMES_SUBDIR = "dataframes"


def train_dataframes(config: ml_collections.ConfigDict, model_dir: str,
                     train_df, eval_df=None, validation_df=None,
                     strategy: Optional[tf.distribute.Strategy] = None,
                     mode: str = "train_and_eval",
                     interactive: Optional[bool] = None) -> TrainResult:
  """``train`` on pandas DataFrames, by the config's column roles.

  ``data.label_column`` / ``dense_columns`` / ``categorical_columns`` /
  ``ignore_columns`` name the DataFrame columns (every column needs one
  role). The DataFrames are written once to ``model_dir/dataframes/*.csv``
  (``data.dataframes.write_dataframes``), so the run is the csv run of
  their rows: the schema (vocabularies, statistics) from ``train_df`` only,
  ``model_dir/schema.json``, any strategy, export. Resuming checks each
  DataFrame is the one the run was started with (row count and content
  hash; DataError otherwise). ``eval_df`` is required for the eval modes
  unless ``data.eval_files`` names csv files of the same columns.
  """
  from recsys_smelu.data import dataframes  # pylint: disable=g-import-not-at-top
  if mode in ("eval", "train_and_eval") and eval_df is None and (
      not config.data.eval_files):
    raise ValueError(f"mode={mode!r} needs eval_df (or data.eval_files)")
  frames = {"train": train_df, "eval": eval_df}
  if validation_df is not None:
    frames["validation"] = validation_df
  config = dataframes.write_dataframes(
      config, os.path.join(model_dir, DATAFRAMES_SUBDIR), frames)
  return train(config, model_dir, strategy=strategy, mode=mode,
               interactive=interactive)


@contextlib.contextmanager
def _bad_row_as_data_error():
  """Turns the tf.data error of a bad row (``data.on_bad_row='error'``)
  into ``data_lib.BadRowError``: just ``file:line: bad row (reason); line
  content: ...``, without TensorFlow's node and stack text."""
  try:
    yield
  except tf.errors.InvalidArgumentError as e:
    bad_row = data_lib.bad_row_error(e)
    if bad_row is None:
      raise
    raise bad_row from None


def _fit(config, model, manager, strategy, work_dir, bad_rows, interactive,
         total, validation=None) -> Optional[float]:
  """Runs Keras fit from the restored step to ``total`` (``total_steps``),
  or to ``train.stop_at_step``, or until early stopping."""
  t = config.train
  stop = t.stop_at_step or total
  start = int(model.optimizer.iterations.numpy())
  if start >= stop:
    logging.info("Already trained to step %d (of %d)", start, stop)
    return None
  if validation is not None and validation.should_stop():
    logging.info("Already stopped early at step %d (best: step %d)", start,
                 validation.best()["step"])
    return None

  def dataset_fn(input_context: tf.distribute.InputContext) -> tf.data.Dataset:
    dataset = data_lib.build_dataset(
        config, "train", t.batch_size, seed=config.seed.data, repeat=True,
        input_context=input_context, bad_rows=bad_rows)
    return dataset.skip(start)

  dataset = strategy.distribute_datasets_from_function(dataset_fn)

  writer = tf.summary.create_file_writer(os.path.join(work_dir, "train")) \
      if _is_chief(strategy) else None
  monitor = _TrainingMonitor(manager, stop, t.batch_size, t.log_every, writer,
                             interactive, bad_rows, validation)
  epochs = math.ceil(stop / t.checkpoint_every)
  try:
    model.fit(dataset, epochs=epochs, initial_epoch=start // t.checkpoint_every,
              steps_per_epoch=t.checkpoint_every, callbacks=[monitor],
              verbose=0)
  finally:
    monitor.unfreeze_gc()  # also when fit raises
  if monitor.non_finite_step is not None:
    raise NonFiniteLossError(
        f"training loss became NaN/Inf at step {monitor.non_finite_step} "
        f"(reported every train.steps_per_execution={t.steps_per_execution} "
        f"steps); stopped without saving. Last good checkpoint: "
        f"{manager.latest_checkpoint or 'none'}. Try a lower learning rate.")
  step = int(model.optimizer.iterations.numpy())
  if manager.latest_checkpoint is None or not manager.latest_checkpoint.endswith(
      f"-{step}"):
    manager.save(checkpoint_number=step)
  rates = monitor.examples_per_second
  return float(np.median(rates)) if rates else None


# ----------------------------------------------------------------------------
# Command line


def _define_flags():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  config_flags.DEFINE_config_file(
      "config", None, "Experiment config file (configs/*.py), optionally "
      "file.py:variant; override any key with --config.section.key=value.",
      lock_config=True)
  flags.DEFINE_string("model_dir", None, "Directory for checkpoints, "
                      "TensorBoard summaries, config.json, eval_metrics.json.")
  flags.DEFINE_enum("strategy", "default", STRATEGIES, "tf.distribute strategy.")
  flags.DEFINE_string("tpu", "", "TPU name or grpc:// address; 'local' on a "
                      "TPU VM. Only with --strategy=tpu.")
  flags.DEFINE_enum("mode", "train_and_eval", MODES, "What to run.")
  flags.mark_flags_as_required(["config", "model_dir"])
  return flags.FLAGS


def main(argv):
  del argv
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  config = f.config
  strategy = make_strategy(f.strategy, f.tpu)
  try:
    train(config, f.model_dir, strategy, f.mode)
  except (NonFiniteLossError, config_lib.ConfigError, FileNotFoundError,
          data_lib.DataError) as e:
    logging.error("%s", e)
    raise SystemExit(f"error: {e}") from None


def run():
  """Console script ``recsys-smelu-train``."""
  from absl import app  # pylint: disable=g-import-not-at-top
  config_lib.check_command_line_overrides(sys.argv)
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
