"""Experiment config: the schema with defaults, and validation.

Every experiment is an ``ml_collections.ConfigDict`` that starts from
``default_config()`` and changes only keys that exist there. Config files in
``configs/`` define ``get_config()`` returning ``override(default_config(),
{...})`` so a typo in a config file fails the same way as a typo on the command
line (``--config.model.actvation=smelu`` -> "unknown key model.actvation; did
you mean model.activation?").

Sections (one per layer of the library, read by that layer only):

* ``data``   -> ``recsys_smelu.data``   (files, format, schema, bad rows)
* ``model``  -> ``recsys_smelu.models`` (architecture, activations)
* ``train``  -> ``recsys_smelu.train``  (optimizers, steps, checkpoints)
* ``seed``   -> everywhere randomness enters (init, data order, dropout)
* ``determinism`` -> op determinism switch (bit-identical twins)
"""

from __future__ import annotations

import difflib
import json
import os
import re
from typing import Any, Iterable, Mapping, Optional, Sequence

import ml_collections

from recsys_smelu import choices

# Placeholder for "no value" in list-valued fields, which ConfigDict types
# strictly; empty string means "not set" for optional paths.
_UNSET = ""


def default_config() -> ml_collections.ConfigDict:
  """Returns the full schema with defaults (a small synthetic DLRM)."""
  c = ml_collections.ConfigDict()

  c.data = ml_collections.ConfigDict()
  # 'tsv' (Criteo text, plain or .gz), 'tfrecord' (tf.Example), 'packed'
  # (parsed rows, recsys-smelu-convert --format=packed), 'movielens', or
  # named columns: 'csv', 'parquet' (and 'tsv' with header=true), below.
  c.data.format = "tsv"
  c.data.train_files = _UNSET  # file pattern(s), comma separated; gs:// ok
  c.data.eval_files = _UNSET
  c.data.movielens_dir = _UNSET  # format == 'movielens': u.data, u.user, u.item
  # Optional per-eval-example true probabilities (synthetic data), one float
  # per line in eval order; enables excess log loss in reports.
  c.data.eval_truth = _UNSET
  c.data.num_dense = 13
  c.data.num_categorical = 26
  c.data.num_buckets = 10_000  # hash buckets per categorical feature
  c.data.on_bad_row = "error"  # 'error' | 'skip'
  # Categorical feature whose value groups eval examples for ranking metrics
  # (top-k swap rate), e.g. 'user_id' on MovieLens; '' = no groups.
  c.data.group_feature = _UNSET
  c.data.shuffle_buffer = 10_000  # 0 disables shuffling
  c.data.cycle_length = 8  # files read in parallel
  # Tabular files with named columns: format 'csv' or 'parquet', or 'tsv'
  # with header=true (recsys_smelu.data.tabular). Roles are comma-separated
  # column names ('' = none); every header column needs exactly one role.
  c.data.delimiter = _UNSET  # one character; '' = the format's (',' / tab)
  c.data.header = False  # tsv: the first line names the columns; csv: must be true
  c.data.label_column = _UNSET  # the 0/1 column, e.g. 'click'
  c.data.dense_columns = _UNSET
  c.data.categorical_columns = _UNSET
  c.data.ignore_columns = _UNSET  # e.g. 'id'
  c.data.num_buckets_per_column = _UNSET  # 'site_id=100000,device_ip=1000000'
  c.data.vocabulary_files = _UNSET  # 'C1=/path/c1.txt,...': one value a line
  c.data.vocabulary_columns = _UNSET  # vocabularies counted over train_files
  c.data.vocab_min_count = 1  # ... keeping values seen at least this often
  c.data.dense_transform = "log1p_clip0"  # 'log1p_clip0' | 'none' | 'standardize'
  # The run's schema.json (roles, vocabularies, statistics): set by the
  # trainer to model_dir/schema.json; '' = build it from the train split.
  c.data.schema_file = _UNSET
  # Validation data (training length, early stopping; never the eval split),
  # read like eval (in order, never shuffled), from one source:
  # * validation_files: file pattern(s) as for train_files;
  # * validation_fraction f in (0, 1) of the training rows (0 = off), split
  #   off by validation_split: 'tail' = the last ceil(f * N) rows (for
  #   time-ordered files), 'hash' = the rows whose fingerprint of (file base
  #   name, line) falls in the lowest f of its range; train excludes them;
  # * format 'movielens': validation_ratings_per_user k > 0 = each user's
  #   last k training ratings by timestamp (fraction and files are refused).
  c.data.validation_files = _UNSET
  c.data.validation_fraction = 0.0
  c.data.validation_split = "tail"  # 'tail' | 'hash'
  c.data.validation_ratings_per_user = 0
  # Row ranges 'start:stop' (a python slice, no step) over the rows of the
  # split's files concatenated in pattern order, numbered from 0; '' = all.
  # eval_rows with eval_files '' selects from the training files (it must
  # not overlap train_rows); a validation tail comes from within train_rows.
  c.data.train_rows = _UNSET
  c.data.eval_rows = _UNSET

  c.model = ml_collections.ConfigDict()
  c.model.interaction = "dot"  # 'dot' (DLRM) | 'cross' (DCN-v2) | 'concat'
  c.model.embedding_dim = 8
  c.model.bottom_mlp = [64, 8]  # last width == embedding_dim for 'dot'
  c.model.top_mlp = [64, 32, 1]  # last width is the logit
  c.model.activation = "relu"  # registry spec, used by every block ...
  c.model.bottom_activation = _UNSET  # ... unless overridden per block
  c.model.top_activation = _UNSET
  c.model.cross_num_layers = 2
  c.model.cross_mode = "stacked"  # 'stacked' | 'parallel'
  c.model.cross_projection_dim = 0  # >0: low-rank cross
  c.model.cross_activation = _UNSET  # activation after the cross stack
  c.model.normalization = "none"  # 'none' | 'layer' | 'batch'
  c.model.dropout = 0.0
  c.model.ensemble_size = 1  # >1: average logits of N independently seeded towers
  c.model.mixed_precision = "float32"  # 'float32'|'mixed_bfloat16'|'mixed_float16'
  # Regularization and the wide (linear) part. embedding_l2: lambda times the
  # sum of ||e||^2 over the embedding rows looked up in a batch (a row once per
  # occurrence), averaged over the global batch like the loss. dense_l2:
  # lambda * ||W||^2 of every dense kernel (not biases or norm parameters).
  c.model.embedding_l2 = 0.0
  c.model.dense_l2 = 0.0
  # Std of the truncated-normal embedding init; 0 = 1/sqrt(embedding_dim)
  # (TFRS's). Small values (DeepCTR uses 1e-4) keep the rows of rare and
  # unseen ids near zero, which matters on small data.
  c.model.embedding_init_stddev = 0.0
  c.model.wide = False  # add a linear term over hashed + dense features to each tower's logit
  c.model.deep = True  # false (with wide=true): logistic regression, the wide part alone

  c.train = ml_collections.ConfigDict()
  c.train.batch_size = 256
  c.train.eval_batch_size = 1024
  c.train.steps = 1000  # total optimizer steps
  c.train.optimizer = "adam"  # dense layers: 'adam' | 'adagrad' | 'sgd'
  c.train.learning_rate = 1e-3
  c.train.embedding_optimizer = "adagrad"  # 'adam' | 'adagrad' | 'sgd'
  c.train.embedding_learning_rate = 0.05
  c.train.warmup_steps = 0
  c.train.decay = "none"  # 'none' | 'cosine' | 'linear'
  c.train.steps_per_execution = 1
  c.train.jit_compile = False
  c.train.checkpoint_every = 500
  c.train.keep_checkpoints = 3
  c.train.log_every = 100
  c.train.export = False  # write a SavedModel at the end of training
  # Training length, validation and early stopping. Exactly one of
  # train.steps and train.epochs is > 0; epochs -> steps =
  # ceil(epochs * train rows / batch_size), resolved before the model is built.
  c.train.epochs = 0.0
  # Every eval_every steps (a multiple of checkpoint_every; 0 = off): log
  # loss, AUC and normalized entropy on the validation data, to TensorBoard
  # and MODEL_DIR/validation.json.
  c.train.eval_every = 0
  # Stop after this many evaluations without a lower validation log loss
  # (0 = off); the best checkpoint (MODEL_DIR/best/) is then the one
  # evaluated and exported.
  c.train.early_stopping_patience = 0
  # > 0: stop training at this step while the learning-rate schedule still
  # spans the full length (the twin evaluator trains twins to the length
  # model 0 chose by early stopping); 0 = train to the end.
  c.train.stop_at_step = 0

  c.seed = ml_collections.ConfigDict()
  c.seed.init = 1  # weights
  c.seed.data = 1  # shuffle order
  c.seed.dropout = 1

  c.determinism = False  # TF op determinism (oneDNN untouched): bit-identical runs
  return c


class ConfigError(ValueError):
  """A config key or value is invalid; the message names the key."""


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
  out = {}
  for key, value in d.items():
    path = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(_flatten(value, path + "."))
    else:
      out[path] = value
  return out


def flat_keys() -> list[str]:
  """All dotted keys of the schema, e.g. 'model.activation'."""
  return sorted(_flatten(default_config().to_dict()))


def unknown_key_message(key: str, valid: Iterable[str] | None = None) -> str:
  """'unknown config key 'x'; did you mean 'y'? Valid keys: ...'."""
  valid = sorted(valid if valid is not None else flat_keys())
  close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
  hint = f"; did you mean {close[0]!r}?" if close else "."
  return f"unknown config key {key!r}{hint} Valid keys: {', '.join(valid)}"


def check_command_line_overrides(argv: Sequence[str]) -> None:
  """Rejects ``--config.a.b=`` overrides of unknown keys before flag parsing.

  ml-collections would raise a bare AttributeError traceback; this exits with
  the key and its nearest valid neighbour instead.
  """
  valid = flat_keys()
  for arg in argv[1:]:
    if arg.startswith("--config.") and "=" in arg:
      key = arg[len("--config."):].split("=", 1)[0]
      if key not in valid:
        raise SystemExit(f"error: {unknown_key_message(key, valid)}")


def _unknown_key_error(key: str, valid: Iterable[str]) -> ConfigError:
  return ConfigError(unknown_key_message(key, valid))


def override(config: ml_collections.ConfigDict,
             changes: Mapping[str, Any]) -> ml_collections.ConfigDict:
  """Returns a copy of ``config`` with dotted-key ``changes`` applied.

  ``override(c, {"model.activation": "smelu", "train.steps": 50})``. An
  unknown key raises ConfigError naming it and its nearest valid neighbour.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  valid = _flatten(config.to_dict())
  for key, value in changes.items():
    if key not in valid:
      raise _unknown_key_error(key, valid)
    *parents, leaf = key.split(".")
    node = config
    for p in parents:
      node = node[p]
    try:
      node[leaf] = value
    except TypeError as e:
      raise ConfigError(f"config key {key!r}: {e}") from None
  return config


_POSITIVE = ("data.num_buckets", "model.embedding_dim", "train.batch_size",
             "train.eval_batch_size", "train.learning_rate",
             "train.embedding_learning_rate", "train.steps_per_execution",
             "train.checkpoint_every", "train.keep_checkpoints",
             "train.log_every", "model.ensemble_size", "data.cycle_length")


def validate(config: ml_collections.ConfigDict, check_paths: bool = True
             ) -> ml_collections.ConfigDict:
  """Checks keys, types, choices, ranges and paths; returns the config unchanged.

  Every check of a key on its own (or of keys of one section together) is
  here; the model adds only the checks that need the feature schema
  (``models.check_model_config``) and resolves the activation specs. Runs
  before any TensorFlow work so a typo costs seconds, not a failed job.
  Raises ConfigError naming the offending key.
  """
  schema = _flatten(default_config().to_dict())
  given = _flatten(config.to_dict())
  for key in given:
    if key not in schema:
      raise _unknown_key_error(key, schema)
  for key, default in schema.items():
    if key not in given:
      raise ConfigError(f"config key {key!r} is missing")
    value = given[key]
    if isinstance(default, bool) != isinstance(value, bool) or (
        isinstance(default, (int, float)) and not isinstance(value, (int, float))
    ) or (isinstance(default, str) and not isinstance(value, str)) or (
        isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple))):
      raise ConfigError(f"config key {key!r} must be {type(default).__name__}, "
                        f"got {value!r}")
  for key, allowed in choices.BY_KEY.items():
    if given[key] not in allowed:
      raise ConfigError(f"config key {key!r} is {given[key]!r}; choose one of "
                        f"{', '.join(allowed)}")
  for key in _POSITIVE:
    if not given[key] > 0:
      raise ConfigError(f"config key {key!r} must be > 0, got {given[key]!r}")
  if not 0.0 <= given["model.dropout"] < 1.0:
    raise ConfigError(f"config key 'model.dropout' must be in [0, 1), got "
                      f"{given['model.dropout']!r}")
  _check_data_keys(config.data)
  _check_model_keys(config.model)
  _check_train_keys(config.train)
  _check_tabular_keys(config.data)
  if check_paths:
    _check_data_paths(config)
  return config


_ROW_RANGE = re.compile(r"\s*(-?[0-9][0-9_]*)?\s*:\s*(-?[0-9][0-9_]*)?\s*")


def parse_row_range(text: str, key: str
                    ) -> tuple[Optional[int], Optional[int]] | None:
  """``'start:stop'`` (python slice bounds, either may be omitted or
  negative, no step) -> ``(start, stop)`` with None for an omitted bound;
  ``''`` -> None (all rows). Raises ConfigError naming ``key`` otherwise."""
  if not text.strip():
    return None
  match = _ROW_RANGE.fullmatch(text)
  if not match:
    raise ConfigError(f"config key {key!r} is {text!r}; expected a row range "
                      "'start:stop' such as '0:8000', ':8000', '8000:' or "
                      "'-2000:' (a python slice without step), or '' for all "
                      "rows")
  return tuple(None if v is None else int(v) for v in match.groups())


def resolve_row_range(text: str, key: str, num_rows: int,
                      what: str = "the files") -> tuple[int, int]:
  """The rows ``[start, stop)`` that ``parse_row_range(text)`` selects out of
  ``num_rows`` (negative bounds count from the end, as in python). A bound
  beyond the rows, or an empty range, raises ConfigError naming ``key``, the
  range and ``num_rows``: unlike a python slice, nothing is clipped."""
  parsed = parse_row_range(text, key)
  if parsed is None:
    return 0, num_rows
  start, stop = parsed
  start = 0 if start is None else start
  stop = num_rows if stop is None else stop
  start = start + num_rows if start < 0 else start
  stop = stop + num_rows if stop < 0 else stop
  if not 0 <= start <= num_rows or not 0 <= stop <= num_rows:
    raise ConfigError(f"config key {key!r} is {text!r}, outside the rows of "
                      f"{what}: they hold {num_rows} rows (0:{num_rows})")
  if start >= stop:
    raise ConfigError(f"config key {key!r} is {text!r}, which selects no rows"
                      f" of {what} ({num_rows} rows)")
  return start, stop


def _check_data_keys(d: ml_collections.ConfigDict) -> None:
  """The ``data`` checks that need no file: validation source, row ranges."""
  f = d.validation_fraction
  if not (f == 0 or 0 < f < 1):
    raise ConfigError(f"config key 'data.validation_fraction' must be in "
                      f"(0, 1), or 0 for none, got {f!r}")
  if d.validation_files and f:
    raise ConfigError("config keys 'data.validation_files' and "
                      "'data.validation_fraction' are both set; validation "
                      "data comes from one of them")
  k = d.validation_ratings_per_user
  if k < 0:
    raise ConfigError(f"config key 'data.validation_ratings_per_user' must be"
                      f" >= 0 (0 = none), got {k!r}")
  if d.format == "movielens":
    # The MovieLens split is per user by time; a row fraction or range of
    # u.data would cut across users.
    for key in ("validation_files", "validation_fraction", "train_rows",
                "eval_rows"):
      if d[key]:
        hint = (" (use 'data.validation_ratings_per_user': each user's last "
                "k training ratings)" if key.startswith("validation") else "")
        raise ConfigError(f"config key 'data.{key}' is {d[key]!r}, but "
                          f"data.format='movielens' splits by user and time"
                          f"{hint}")
  elif k:
    raise ConfigError("config key 'data.validation_ratings_per_user' is only "
                      "for data.format='movielens'; use "
                      "'data.validation_fraction' or 'data.validation_files'")
  for key in ("train_rows", "eval_rows"):
    parse_row_range(d[key], f"data.{key}")


def _check_model_keys(m: ml_collections.ConfigDict) -> None:
  """The ``model`` checks that need no feature schema (the model adds those)."""
  for key in ("bottom_mlp", "top_mlp"):
    widths = list(m[key])
    if any(not isinstance(w, int) or isinstance(w, bool) or w <= 0
           for w in widths):
      raise ConfigError(f"config key 'model.{key}' must list positive integer "
                        f"widths, got {widths!r}")
  top = list(m.top_mlp)
  if not top:
    raise ConfigError("config key 'model.top_mlp' is empty; it needs at least "
                      "the final width 1 (the logit)")
  if top[-1] != 1:
    raise ConfigError(f"config key 'model.top_mlp' must end with width 1 (the "
                      f"logit), got {top!r}")
  for key in ("embedding_l2", "dense_l2", "embedding_init_stddev"):
    if not m[key] >= 0.0:
      raise ConfigError(f"config key 'model.{key}' must be >= 0, got "
                        f"{m[key]!r}")
  if not m.deep and not m.wide:
    raise ConfigError("config key 'model.deep' is false and 'model.wide' is "
                      "false: the model would have no logit; set "
                      "model.wide=true for logistic regression")
  if m.interaction == "cross":
    if m.cross_num_layers < 1:
      raise ConfigError(f"config key 'model.cross_num_layers' must be >= 1, "
                        f"got {m.cross_num_layers!r}")
    if m.cross_projection_dim < 0:
      raise ConfigError(f"config key 'model.cross_projection_dim' must be >= 0"
                        f" (0 = full rank), got {m.cross_projection_dim!r}")


def _check_train_keys(t: ml_collections.ConfigDict) -> None:
  """Length, validation and early-stopping keys; whether validation data
  exists is the trainer's check (``train.check_validation``)."""
  for key in ("steps", "epochs", "eval_every", "early_stopping_patience",
              "stop_at_step"):
    if t[key] < 0:
      raise ConfigError(f"config key 'train.{key}' must be >= 0, got "
                        f"{t[key]!r}")
  if (t.steps > 0) == (t.epochs > 0):
    raise ConfigError(
        "config keys 'train.steps' and 'train.epochs': exactly one must be "
        f"> 0, got train.steps={t.steps!r} and train.epochs={t.epochs!r} "
        "(set the other to 0)")
  if t.eval_every % t.checkpoint_every:
    raise ConfigError(
        "config key 'train.eval_every' must be a multiple of "
        f"'train.checkpoint_every' ({t.eval_every} vs {t.checkpoint_every}): "
        "validation runs when a checkpoint is written")
  if t.early_stopping_patience and not t.eval_every:
    raise ConfigError(
        "config key 'train.early_stopping_patience' needs validation: set "
        "'train.eval_every' > 0 (and validation data)")
  if t.steps and t.stop_at_step > t.steps:
    raise ConfigError(
        f"config key 'train.stop_at_step' ({t.stop_at_step}) is beyond "
        f"'train.steps' ({t.steps})")
  # Keras reports (and the trainer checkpoints) once per steps_per_execution.
  if t.checkpoint_every % t.steps_per_execution:
    raise ConfigError(
        "config key 'train.checkpoint_every' must be a multiple of "
        f"'train.steps_per_execution' ({t.checkpoint_every} vs "
        f"{t.steps_per_execution})")


# Column roles that become model inputs, hence signature keys of the export.
_INPUT_ROLE_KEYS = ("dense_columns", "categorical_columns")
_ROLE_KEYS = ("label_column", "dense_columns", "categorical_columns",
              "ignore_columns", "num_buckets_per_column", "vocabulary_files",
              "vocabulary_columns")
# A SavedModel signature keeps an input name only if it looks like this.
_SIGNATURE_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DEFAULT_NUM_DENSE = 13
_DEFAULT_NUM_CATEGORICAL = 26


def is_tabular(data: ml_collections.ConfigDict) -> bool:
  """Whether ``data`` is read by named column roles: 'csv', 'parquet', or
  'tsv' with ``data.header`` (else tsv is Criteo-shaped rows)."""
  return choices.is_tabular(data.format, data.header)


def _column_names(text: str) -> list[str]:
  return [name.strip() for name in text.split(",")] if text.strip() else []


def _check_tabular_keys(d: ml_collections.ConfigDict) -> None:
  """Role keys only for the tabular formats; there, a label, role counts
  equal to ``data.num_dense`` / ``data.num_categorical`` (or those left at
  their defaults) and input column names that can be signature keys. The
  roles against the files' headers are checked by ``data.tabular``."""
  if d.format == "csv" and not d.header:
    raise ConfigError("config key 'data.header' must be true for "
                      "data.format='csv' (the first line names the columns)")
  if not is_tabular(d):
    for key in _ROLE_KEYS + ("delimiter",):
      if d[key]:
        raise ConfigError(
            f"config key 'data.{key}' is set but data.format={d.format!r} "
            "has no named columns (column roles need data.format 'csv' or "
            "'parquet', or 'tsv' with data.header=true)")
    if d.dense_transform != "log1p_clip0":
      raise ConfigError(
          f"config key 'data.dense_transform' is {d.dense_transform!r}; "
          f"data.format={d.format!r} (Criteo rows) always uses log1p_clip0")
    return
  if not d.label_column.strip():
    raise ConfigError(f"config key 'data.label_column' is empty; "
                      f"data.format={d.format!r} needs the 0/1 label column")
  for key, default, role in (
      ("num_dense", _DEFAULT_NUM_DENSE, "dense_columns"),
      ("num_categorical", _DEFAULT_NUM_CATEGORICAL, "categorical_columns")):
    count = len(_column_names(d[role]))
    if d[key] not in (default, count):
      raise ConfigError(
          f"config key 'data.{key}' is {d[key]} but 'data.{role}' names "
          f"{count} columns; leave data.{key} at its default ({default}) or "
          "make them agree")
  if not _column_names(d.dense_columns) + _column_names(
      d.categorical_columns):
    raise ConfigError("config keys 'data.dense_columns' and "
                      "'data.categorical_columns' are both empty; the model "
                      "needs at least one input column")
  for key in _INPUT_ROLE_KEYS:
    for name in _column_names(d[key]):
      if not _SIGNATURE_KEY.fullmatch(name):
        raise ConfigError(
            f"config key 'data.{key}': column {name!r} cannot be a serving "
            "signature input key (letters, digits and '_', starting with a "
            "letter); rename the column in the files")
  if d.vocab_min_count < 1:
    raise ConfigError(f"config key 'data.vocab_min_count' must be >= 1, got "
                      f"{d.vocab_min_count}")


def _check_data_paths(config: ml_collections.ConfigDict) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  d = config.data
  if d.format == "movielens":
    if not d.movielens_dir or not tf.io.gfile.isdir(d.movielens_dir):
      raise ConfigError(f"config key 'data.movielens_dir' is {d.movielens_dir!r}"
                        ", which is not a directory")
    return
  for key in ("train_files", "eval_files", "validation_files"):
    pattern = d[key]
    if not pattern:
      if key == "validation_files" or (key == "eval_files" and d.eval_rows):
        continue  # optional; eval_rows alone selects from train_files
      raise ConfigError(f"config key 'data.{key}' is empty; give a file pattern"
                        + (" (or data.eval_rows to evaluate on rows of the "
                           "training files)" if key == "eval_files" else ""))
    for part in pattern.split(","):
      if not tf.io.gfile.glob(part.strip()):
        raise ConfigError(f"config key 'data.{key}': pattern {part!r} matches "
                          "no file")
  if d.schema_file and not tf.io.gfile.exists(d.schema_file):
    raise ConfigError(f"config key 'data.schema_file': {d.schema_file!r} "
                      "does not exist")
  if d.eval_truth and not tf.io.gfile.exists(d.eval_truth):
    raise ConfigError(f"config key 'data.eval_truth': {d.eval_truth!r} does "
                      "not exist")


def to_json(config: ml_collections.ConfigDict) -> str:
  return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def from_json(text: str) -> ml_collections.ConfigDict:
  """Inverse of ``to_json``; unknown keys are rejected by ``validate``."""
  return override(default_config(), _flatten(json.loads(text)))


def save(config: ml_collections.ConfigDict, directory: str) -> str:
  """Writes ``directory/config.json`` (the resolved config of a run)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.io.gfile.makedirs(directory)
  path = os.path.join(directory, "config.json")
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(to_json(config))
  return path


def load_config_module(path: str):
  """Imports a ``configs/*.py`` file as a module (its ``get_config()`` etc.).

  For config files that build on another one, and for ``get_variants()``.
  A missing file raises ``absl.flags.IllegalFlagValueError`` naming it and
  the config file that loads it: while ``--config`` is parsed that ends the
  command with the message alone (a config file copied without the sibling
  it loads), where an ``OSError`` would surface later in a traceback.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  import inspect  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    caller = inspect.currentframe().f_back.f_globals.get("__file__")
    loaded_by = (f" (loaded by config file {caller}: copy it along, or use the "
                 "repository's configs/)" if caller else "")
    raise flags.IllegalFlagValueError(
        f"config file {path} not found{loaded_by}")
  name = os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def write_config_file(config: ml_collections.ConfigDict, path: str) -> str:
  """Writes a ``configs/*.py``-style file whose ``get_config()`` is ``config``.

  The command line takes config files, so this is how a library caller (the
  twin evaluator, tests) hands a resolved config to ``recsys_smelu.train``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with tf.io.gfile.GFile(path, "w") as f:
    f.write("# Generated by recsys_smelu.config.write_config_file.\n"
            "from recsys_smelu import config as config_lib\n\n\n"
            "def get_config():\n"
            f"  return config_lib.from_json({to_json(config)!r})\n")
  return path


def load(directory: str) -> ml_collections.ConfigDict:
  """Reads ``directory/config.json`` written by ``save``."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  path = os.path.join(directory, "config.json")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"{path} not found: is {directory!r} a model_dir "
                            "written by recsys_smelu.train?")
  with tf.io.gfile.GFile(path) as f:
    return from_json(f.read())
