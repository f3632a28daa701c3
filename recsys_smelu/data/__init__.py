"""Input data: feature schema, Criteo TSV/TFRecord/packed pipelines, synthetic data, MovieLens.

Every dataset this package yields has elements ``(features, label)``:

* ``features["dense_features"]``: float32 ``[batch, num_dense]`` (already
  transformed: missing -> 0, then ``log(1 + max(x, 0))``);
* ``features["sparse_features"]``: dict ``{name: int32 [batch]}`` of bucket ids
  in ``[0, num_buckets)``;
* ``label``: float32 ``[batch]`` in {0, 1}.

The trainer, the twin evaluator, export and the benchmarks read data only
through this package:

* ``build_schema(config)`` -> ``FeatureSchema`` (the model builds its tables
  from it);
* ``build_dataset(config, split, batch_size, ...)`` -> ``tf.data.Dataset``
  of the split 'train', 'validation' or 'eval'; ``count_rows(config, split)``
  its row count; ``has_validation(config)`` whether there is a validation
  split;
* ``raw_to_model_inputs(raw, schema)`` / ``tf_example_feature_spec(schema)``:
  the one raw -> model transformation, shared with the serving signature;
* ``BadRowCounter``: rows skipped under ``data.on_bad_row='skip'``.

Criteo-format rows come as TSV (``data.format='tsv'``), TFRecord of raw
values (``'tfrecord'``) or packed parsed rows (``'packed'``, written by
``recsys-smelu-convert --format=packed``). Modules, lowest first:
``features`` (the schema and the raw -> model transformation), ``pipeline``
(errors, bad-row counting, file patterns, shuffling, finishing),
``readers`` (files -> numbered chunks), ``packed`` (the packed row layout and
its schema file), ``criteo`` (parsing and the Criteo dataset), ``movielens``,
``splits`` (row ranges and the validation split: which lines a split reads);
``convert`` and ``synthetic`` are command-line tools.

Tabular files by named column roles (``data.format='csv'``, ``'parquet'``,
or ``'tsv'`` with ``data.header``; ``data.label_column``, ...): ``tabular``
(csv/tsv) and ``parquet`` read them; ``tabular_schema(config)`` is their
schema (vocabularies and dense statistics from the training files, or the
run's ``data.schema_file``), whose ``features`` carries the dense transform
into the model and the SavedModel. ``dataframes`` writes pandas DataFrames
as csv files by the same roles.

MovieLens (``data.format='movielens'``): 7 categorical features with
vocabularies and 19 dense genre flags, see ``recsys_smelu.data.movielens``.
"""

from __future__ import annotations

from typing import Optional

import ml_collections

from recsys_smelu import tf_keras2

tf_keras2.import_tensorflow_quietly()  # tf.data only; tf.keras untouched

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from recsys_smelu import choices
from recsys_smelu.data import criteo
from recsys_smelu.data import movielens
from recsys_smelu.data import packed
from recsys_smelu.data import readers
from recsys_smelu.data import splits
from recsys_smelu.data import tabular
from recsys_smelu.data.pipeline import BAD_ROW_REASONS
from recsys_smelu.data.pipeline import bad_row_error
from recsys_smelu.data.pipeline import BadRowCounter
from recsys_smelu.data.pipeline import BadRowError
from recsys_smelu.data.pipeline import DataError
from recsys_smelu.data.pipeline import expand_patterns
from recsys_smelu.data.pipeline import NoMatchingFilesError
from recsys_smelu.data.features import CategoricalFeature
from recsys_smelu.data.features import criteo_schema
from recsys_smelu.data.features import DENSE_KEY
from recsys_smelu.data.features import FeatureSchema
from recsys_smelu.data.features import raw_to_model_inputs
from recsys_smelu.data.features import SPARSE_KEY
from recsys_smelu.data.features import tf_example_feature_spec
from recsys_smelu.data.movielens import MovieLensFormatError

from recsys_smelu.config import ConfigError

SPLITS = splits.SPLITS


def build_schema(config: ml_collections.ConfigDict) -> FeatureSchema:
  """The feature schema of ``config``: ``config.data`` plus the model's
  ``config.model.embedding_dim``, the one key outside ``config.data`` that the
  data package reads (only here; everything below takes the schema).

  tsv/tfrecord/packed: ``criteo_schema(data.num_buckets, model.embedding_dim,
  data.num_dense, data.num_categorical)``; movielens: vocabularies read from
  ``data.movielens_dir`` (``data.num_*`` are ignored); the tabular formats
  (and any format with ``data.schema_file``, e.g. packed files converted
  from csv): ``tabular_schema(config).features``, the named columns with
  their dense transform and statistics.
  """
  if is_tabular(config.data) or config.data.schema_file:
    return tabular_schema(config).features
  return feature_schema(config.data, config.model.embedding_dim)


def is_tabular(data: ml_collections.ConfigDict) -> bool:
  """Whether ``data`` (``config.data``) is read by named column roles:
  formats 'csv' and 'parquet', and 'tsv' with ``data.header``."""
  return choices.is_tabular(data.format, data.header)


def tabular_spec(config: ml_collections.ConfigDict) -> tabular.TabularSpec:
  """The ``TabularSpec`` of ``config.data``'s role keys (DataError naming
  the key for a bad entry)."""
  d = config.data
  return tabular.TabularSpec.from_strings(
      label_column=d.label_column, dense_columns=d.dense_columns,
      categorical_columns=d.categorical_columns,
      ignore_columns=d.ignore_columns,
      num_buckets_per_column=d.num_buckets_per_column,
      vocabulary_files=d.vocabulary_files,
      vocabulary_columns=d.vocabulary_columns, file_format=d.format,
      delimiter=d.delimiter, header=True, num_buckets=d.num_buckets,
      vocab_min_count=d.vocab_min_count, dense_transform=d.dense_transform,
      embedding_dim=config.model.embedding_dim)


_SCHEMA_CACHE: dict = {}


def _file_state(paths) -> tuple:
  """(path, size, mtime) of each file: a cache key that changes with them."""
  state = []
  for path in paths:
    stat = tf.io.gfile.stat(path)
    state.append((path, stat.length, stat.mtime_nsec))
  return tuple(state)


def tabular_schema(config: ml_collections.ConfigDict) -> tabular.TabularSchema:
  """The ``TabularSchema`` of ``config``: loaded from ``data.schema_file``
  (the run's ``schema.json``) when set, else built from the train split
  (``tabular.build_schema``: vocabularies and statistics from the rows the
  model trains on: ``data.train_files``, within ``data.train_rows``, less
  the validation rows of ``data.validation_fraction``). With role keys set,
  a schema file whose roles differ from them is an error naming the first
  key that differs. Cached per file state, so the one pass over the
  training files runs once per process."""
  d = config.data
  if d.schema_file:
    key = ("file", _file_state([d.schema_file]))
    if key not in _SCHEMA_CACHE:
      _SCHEMA_CACHE[key] = tabular.load_schema(d.schema_file)
    schema = _SCHEMA_CACHE[key]
    if is_tabular(d):
      check_schema_roles(schema, tabular_spec(config), d.schema_file)
    return schema
  spec = tabular_spec(config)
  if not d.train_files:
    raise NoMatchingFilesError("config key 'data.train_files' is empty; the "
                               "tabular schema is built from the training "
                               "files")
  reader = _tabular_reader(d.format)
  rows = splits.split_rows(config, "train", reader.row_counter(spec))
  key = ("build", spec, d.on_bad_row, _file_state(rows.files), d.train_rows,
         d.validation_fraction, d.validation_split)
  if key not in _SCHEMA_CACHE:
    _SCHEMA_CACHE[key] = reader.build_schema(
        rows.files, spec, on_bad_row=d.on_bad_row, selector=rows.selector)
  return _SCHEMA_CACHE[key]


def check_schema_roles(schema: tabular.TabularSchema,
                       spec: tabular.TabularSpec, source: str) -> None:
  """Raises DataError naming the first config key where ``spec`` (the
  config's roles) differs from ``schema.spec`` (read from ``source``)."""
  keys = {"label_column": "data.label_column",
          "dense_columns": "data.dense_columns",
          "categorical_columns": "data.categorical_columns",
          "ignore_columns": "data.ignore_columns",
          "file_format": "data.format", "delimiter": "data.delimiter",
          "num_buckets": "data.num_buckets",
          "num_buckets_per_column": "data.num_buckets_per_column",
          "vocabulary_files": "data.vocabulary_files",
          "vocabulary_columns": "data.vocabulary_columns",
          "vocab_min_count": "data.vocab_min_count",
          "dense_transform": "data.dense_transform",
          "embedding_dim": "model.embedding_dim"}
  for field, key in keys.items():
    have, want = getattr(schema.spec, field), getattr(spec, field)
    if have != want:
      raise DataError(
          f"{source}: config key {key!r} is {want!r} but the run's schema "
          f"was built with {have!r}; use the run's config (or a new "
          "model_dir)")


def feature_schema(data: ml_collections.ConfigDict,
                   embedding_dim: int) -> FeatureSchema:
  """The feature schema of the data section ``data`` (``config.data``) with
  every categorical feature embedded in ``embedding_dim`` dimensions."""
  if data.format == "movielens":
    return movielens.load(data.movielens_dir).schema(embedding_dim)
  return criteo_schema(data.num_buckets, embedding_dim, data.num_dense,
                       data.num_categorical)


def build_dataset(config: ml_collections.ConfigDict, split: str,
                  batch_size: int, *, seed: Optional[int] = None,
                  repeat: bool = False, shuffle: Optional[bool] = None,
                  input_context: Optional[tf.distribute.InputContext] = None,
                  bad_rows: Optional[BadRowCounter] = None) -> tf.data.Dataset:
  """The ``split`` ('train' | 'validation' | 'eval') of ``config.data`` as
  batches.

  * ``batch_size`` is the *global* batch size; with ``input_context`` each
    input pipeline batches ``input_context.get_per_replica_batch_size(
    batch_size)`` rows and reads its shard: whole files when there are at
    least ``num_input_pipelines`` files, else every n-th line (MovieLens:
    every n-th row). Use with ``strategy.distribute_datasets_from_function``.
  * train: data.train_files, shuffled when ``shuffle`` (default: when
    data.shuffle_buffer > 0) with ``seed`` (None = not reproducible), files
    interleaved data.cycle_length at a time, ``drop_remainder=True``; with
    ``repeat`` it cycles forever, each epoch reshuffled deterministically.
  * eval: data.eval_files read one after another in ``expand_patterns`` order
    (patterns in order, each sorted) and line order, never shuffled, last
    batch kept, so every example is scored once in file order.
  * validation: read like eval (never shuffled, in order, last batch kept):
    data.validation_files, or the rows data.validation_fraction splits off
    the training rows ('tail' | 'hash'), or for MovieLens each user's last
    data.validation_ratings_per_user training ratings
    (``recsys_smelu.data.splits``); ``has_validation(config)`` says whether
    there is one (else this raises ``DataError``).
  * Row ranges data.train_rows / data.eval_rows select rows of the split's
    files concatenated in pattern order; a bound outside them raises
    ``ConfigError`` naming the key. The train split never holds validation
    rows. ``check_splits(config)`` checks every split before training.
  * Bad rows: data.on_bad_row 'error' raises ``tf.errors.InvalidArgumentError``
    naming ``file:line`` when the bad row is reached while iterating
    (``bad_row_error(e)`` turns it into a ``BadRowError``, a ValueError, with
    just the message); 'skip' drops it and adds it to ``bad_rows`` if given.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  data = config.data
  training = split == "train"
  if shuffle is None:
    shuffle = training and data.shuffle_buffer > 0
  if shuffle and not training:
    raise ValueError(f"the {split} split is never shuffled (shuffle=True)")
  if split == "validation" and not has_validation(config):
    raise DataError(splits.NO_VALIDATION)
  num_shards, shard_index = 1, 0
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(batch_size)
    num_shards = input_context.num_input_pipelines
    shard_index = input_context.input_pipeline_id
  schema = build_schema(config)
  if data.format == "movielens":
    return movielens.make_dataset(
        data.movielens_dir, split, batch_size, schema=schema, shuffle=shuffle,
        shuffle_buffer=data.shuffle_buffer, seed=seed, repeat=repeat,
        num_shards=num_shards, shard_index=shard_index,
        validation_per_user=data.validation_ratings_per_user)
  rows = splits.split_rows(config, split, _row_counter(config))
  if is_tabular(data):
    return _tabular_reader(data.format).make_dataset(
        rows.files, tabular_schema(config), batch_size,
        training=training, shuffle=shuffle,
        shuffle_buffer=data.shuffle_buffer, seed=seed, repeat=repeat,
        cycle_length=data.cycle_length, on_bad_row=data.on_bad_row,
        bad_rows=bad_rows, num_shards=num_shards, shard_index=shard_index,
        selector=rows.selector)
  return criteo.make_dataset(
      rows.files, schema, batch_size,
      file_format=data.format, training=training, shuffle=shuffle,
      shuffle_buffer=data.shuffle_buffer, seed=seed, repeat=repeat,
      cycle_length=data.cycle_length, on_bad_row=data.on_bad_row,
      bad_rows=bad_rows, num_shards=num_shards, shard_index=shard_index,
      selector=rows.selector)


def has_validation(config: ml_collections.ConfigDict) -> bool:
  """Whether ``config.data`` defines a validation split:
  data.validation_files or data.validation_fraction, or for MovieLens
  data.validation_ratings_per_user (``recsys_smelu.data.splits``)."""
  return splits.has_validation(config)


def _tabular_reader(file_format: str):
  """The module reading a tabular format: ``parquet`` or ``tabular``."""
  if file_format == "parquet":
    from recsys_smelu.data import parquet  # pylint: disable=g-import-not-at-top
    return parquet
  return tabular


def count_rows(config: ml_collections.ConfigDict, split: str) -> int:
  """Rows of the ``split`` ('train' | 'validation' | 'eval') of
  ``config.data``, after row ranges and the validation split
  (``recsys_smelu.data.splits``), as the files hold them: TSV lines,
  TFRecord records, packed rows (bad rows included; they are found only
  while reading), MovieLens ratings; tabular files: rows less the header
  lines (Parquet: from the metadata). Builds no model, so the trainer can
  size epochs first."""
  return splits.count_rows(config, split, _row_counter(config),
                           _count_all(config))


def check_splits(config: ml_collections.ConfigDict) -> dict[str, int]:
  """Row counts of every split (``{'train', 'validation' when there is one,
  'eval'}``), checked: raises ``ConfigError`` naming the key for a row range
  outside its files, eval rows overlapping the train rows, or an empty
  split. The trainer calls it before building the model."""
  return splits.check_splits(config, _row_counter(config), _count_all(config))


def _packed_width(config: ml_collections.ConfigDict) -> int:
  if config.data.format != "packed":
    return 0
  return packed.packed_width(build_schema(config))


def _row_counter(config: ml_collections.ConfigDict) -> splits.RowCounter:
  """How ``splits`` counts and numbers the rows of one file of ``config``:
  the tabular readers' own (rows below a header start on line 2; Parquet
  rows from the metadata), else by ``data.format``."""
  if is_tabular(config.data):
    return _tabular_reader(config.data.format).row_counter(
        tabular_spec(config))
  return splits.file_format_counter(config.data.format, _packed_width(config))


def _count_all(config: ml_collections.ConfigDict):
  """Counts a split that reads all of its files in one pass, as before."""
  if is_tabular(config.data):
    reader, spec = _tabular_reader(config.data.format), tabular_spec(config)
    return lambda files: reader.count_rows(files, spec)
  fmt, width = config.data.format, _packed_width(config)
  return lambda files: readers.count_rows(files, fmt, width)


__all__ = [
    "BAD_ROW_REASONS", "BadRowCounter", "BadRowError", "CategoricalFeature",
    "DENSE_KEY", "bad_row_error",
    "DataError", "FeatureSchema", "MovieLensFormatError",
    "NoMatchingFilesError", "SPARSE_KEY", "build_dataset", "build_schema",
    "ConfigError", "check_splits", "count_rows", "has_validation",
    "criteo_schema", "expand_patterns", "feature_schema", "is_tabular",
    "raw_to_model_inputs", "tabular_schema", "tabular_spec",
    "tf_example_feature_spec",
]
