"""Parquet files by named column roles (``data.format='parquet'``).

The same roles, vocabularies and dense transforms as the delimited-text
reader (``tabular``): ``TabularSpec(file_format='parquet', ...)`` names the
label, dense, categorical and ignored columns, and every column of a file's
schema needs exactly one role. Files are read through pyarrow
(``recsys-smelu[parquet]``) one row group at a time, in record batches of at
most ``BATCH_ROWS`` rows (streamed, never a whole file), inside
``tf.data.Dataset.from_generator``; the row groups of all files are the
units of sharding (``num_shards``) and of file-order shuffling.

Column types (checked when a file is opened; a wrong type is a DataError
naming the file and column): the label integer, boolean or floating with
values 0/1; dense columns integer or floating (null = missing); categorical
columns string, integer or boolean (the value's text is hashed, as the
csv reader hashes the field; null = missing, the empty string). Rows with a
null or non-0/1 label, or a dense value outside float32, are bad rows
(``label`` / ``dense_field``) and follow ``on_bad_row``, named
``file:row`` (rows numbered from 1 over the file).

Row ranges and the validation split (``recsys_smelu.data.splits``) number
the rows the same way, counted from the row-group metadata
(``row_counter``): a ``pipeline.LineSelector`` keeps the selected rows of
each record batch, and row groups wholly outside a file's range are not
read.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from recsys_smelu.data import pipeline
from recsys_smelu.data import splits
from recsys_smelu.data import tabular
from recsys_smelu.data.pipeline import BadRowCounter
from recsys_smelu.data.pipeline import DataError

BATCH_ROWS = 65_536  # rows per record batch read from a row group
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_REASON = {name: pipeline.BAD_ROW_REASONS.index(name)
           for name in ("label", "dense_field")}


def _pyarrow():
  try:
    import pyarrow  # pylint: disable=g-import-not-at-top
    import pyarrow.parquet  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    raise DataError("data.format='parquet' needs pyarrow: pip install "
                    "'recsys-smelu[parquet]'") from None
  return pyarrow


def _open(path: str):
  """A ``pyarrow.parquet.ParquetFile`` of ``path`` (local or gs://)."""
  pa = _pyarrow()
  try:
    if "://" not in path:
      return pa.parquet.ParquetFile(path)
    return pa.parquet.ParquetFile(pa.PythonFile(tf.io.gfile.GFile(path, "rb"),
                                                mode="r"))
  except (OSError, pa.ArrowException, tf.errors.OpError) as e:
    raise DataError(f"{path}: cannot read as Parquet ({e})") from None


def read_columns(path: str) -> tuple[str, ...]:
  """The column names of a Parquet file's schema."""
  return tuple(_open(path).schema_arrow.names)


def _check_types(path: str, arrow_schema, spec: tabular.TabularSpec) -> None:
  pa = _pyarrow()
  types = pa.types

  def kind(name):
    t = arrow_schema.field(name).type
    if types.is_dictionary(t):
      t = t.value_type
    return t

  allowed = (
      ((spec.label_column,), "label", "integer, boolean or floating",
       lambda t: types.is_integer(t) or types.is_boolean(t)
       or types.is_floating(t)),
      (spec.dense_columns, "dense", "integer or floating",
       lambda t: types.is_integer(t) or types.is_floating(t)),
      (spec.categorical_columns, "categorical", "string, integer or boolean",
       lambda t: types.is_string(t) or types.is_large_string(t)
       or types.is_integer(t) or types.is_boolean(t)),
  )
  for names, role, expected, ok in allowed:
    for name in names:
      if not ok(kind(name)):
        raise DataError(f"{path}: {role} column {name!r} has Parquet type "
                        f"{arrow_schema.field(name).type}, expected {expected}")


def check_files(files: Sequence[str], spec: tabular.TabularSpec,
                columns: Optional[Sequence[str]] = None
                ) -> tuple[tuple[str, ...], list[tuple[str, int, int, int]]]:
  """(the columns all files share, units (path, row group, first row, rows)).

  Checks each file's columns against the roles (``check_header``), their
  types, and that every file has the first one's columns (and ``columns``
  when given)."""
  if not files:
    raise pipeline.NoMatchingFilesError("no input files")
  first, units = None, []
  for path in files:
    parquet_file = _open(path)
    first = tabular.check_file_columns(
        path, parquet_file.schema_arrow.names, first, spec, columns)
    _check_types(path, parquet_file.schema_arrow, spec)
    row = 1
    metadata = parquet_file.metadata
    for group in range(metadata.num_row_groups):
      num_rows = metadata.row_group(group).num_rows
      units.append((path, group, row, num_rows))
      row += num_rows
  return first[1], units


def count_rows(files: Sequence[str], spec: tabular.TabularSpec) -> int:
  """Rows of ``files`` from their metadata (bad rows included)."""
  del spec
  return sum(_open(path).metadata.num_rows for path in files)


def row_counter(spec: tabular.TabularSpec) -> splits.RowCounter:
  """How the split layer numbers a file's rows: from 1, as many as its
  metadata says (``count_rows``)."""
  return splits.RowCounter(lambda path: count_rows([path], spec))


def _select_units(units, selector: Optional[pipeline.LineSelector]):
  """The units holding a row of ``selector``'s line range of their file."""
  if selector is None:
    return units
  ranges = dict(zip(selector.files, zip(selector.first, selector.end)))
  kept = []
  for unit in units:
    path, _, first_row, num_rows = unit
    first, end = ranges[path]
    if first_row < end and first < first_row + num_rows:
      kept.append(unit)
  return kept


def _categorical_text(column) -> np.ndarray:
  """A pyarrow column as numpy bytes, null -> b''."""
  pa = _pyarrow()
  if pa.types.is_dictionary(column.type):
    column = column.dictionary_decode()
  if pa.types.is_boolean(column.type):
    values = np.where(column.fill_null(False).to_numpy(zero_copy_only=False),
                      b"true", b"false")
    return np.where(column.is_null().to_numpy(zero_copy_only=False), b"",
                    values)
  if not (pa.types.is_string(column.type)
          or pa.types.is_large_string(column.type)):
    column = column.cast(pa.string())
  return np.array(column.fill_null("").to_pylist(), dtype=object).astype(
      np.bytes_) if len(column) else np.zeros([0], np.bytes_)


def _float_values(column) -> np.ndarray:
  """A numeric pyarrow column as float64, null -> NaN."""
  pa = _pyarrow()
  if pa.types.is_dictionary(column.type):
    column = column.dictionary_decode()
  return column.cast(pa.float64()).fill_null(float("nan")).to_numpy(
      zero_copy_only=False)


def _unit_batches(spec: tabular.TabularSpec):
  """generator(path, row group, first row) -> raw record batches of one
  row group: (first row, label float64 (NaN = null), dense float64 [n, k],
  categorical bytes [n] ...)."""
  names = ((spec.label_column,) + spec.dense_columns
           + spec.categorical_columns)

  def generate(path, group, first_row):
    path = path.decode() if isinstance(path, bytes) else path
    parquet_file = _open(path)
    row = int(first_row)
    for batch in parquet_file.iter_batches(batch_size=BATCH_ROWS,
                                           row_groups=[int(group)],
                                           columns=list(names)):
      n = batch.num_rows
      label = _float_values(batch.column(spec.label_column))
      dense = (np.stack([_float_values(batch.column(c))
                         for c in spec.dense_columns], 1)
               if spec.dense_columns else np.zeros([n, 0]))
      categorical = tuple(_categorical_text(batch.column(c))
                          for c in spec.categorical_columns)
      yield (np.int64(row), label, dense) + categorical
      row += n

  return generate


def _raw_chunks(units, schema: tabular.TabularSchema, *, on_bad_row: str,
                bad_rows: Optional[BadRowCounter], shuffle: bool,
                seed: Optional[int], parallel: int,
                selector: Optional[pipeline.LineSelector] = None
                ) -> tf.data.Dataset:
  """(raw dict, keep [n], dependency) chunks of ``units``: raw values as
  ``tabular``'s parser gives them (label float32, dense float32 NaN =
  missing, categorical strings), bad rows by ``on_bad_row``; only the rows
  ``selector`` selects are kept (and checked)."""
  spec = schema.spec
  num_dense = len(spec.dense_columns)
  signature = (tf.TensorSpec([], tf.int64), tf.TensorSpec([None], tf.float64),
               tf.TensorSpec([None, num_dense], tf.float64)) + tuple(
                   tf.TensorSpec([None], tf.string)
                   for _ in spec.categorical_columns)
  generate = _unit_batches(spec)
  dataset = tf.data.Dataset.from_tensor_slices((
      tf.constant([u[0] for u in units], tf.string),
      tf.constant([u[1] for u in units], tf.int64),
      tf.constant([u[2] for u in units], tf.int64)))
  if shuffle and len(units) > 1:
    dataset = dataset.shuffle(len(units), seed=seed,
                              reshuffle_each_iteration=True)
  dataset = dataset.interleave(
      lambda path, group, first: tf.data.Dataset.from_generator(
          generate, args=(path, group, first),
          output_signature=signature).map(
              lambda *parts: (path,) + parts),
      cycle_length=max(1, parallel), block_length=1,
      **({"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
         if parallel > 1 else {}))
  checker = pipeline.ChunkChecker(on_bad_row, bad_rows)
  dense_names = tf.constant(list(spec.dense_columns) or [""])

  def check(path, first_row, label, dense, *categorical):
    n = tf.shape(label, out_type=tf.int64)[0]
    rows = first_row + tf.range(n)
    label_ok = tf.equal(label, 0.0) | tf.equal(label, 1.0)
    present = ~tf.math.is_nan(dense)
    dense_ok = ~present | (tf.abs(dense) <= _FLOAT32_MAX)
    ok = label_ok & tf.reduce_all(dense_ok, axis=1)
    mine = (tf.ones_like(ok) if selector is None
            else selector.mask(path, rows))

    def describe_bad(indices):
      label_bad = ~tf.gather(label_ok, indices)
      if num_dense:
        bad_dense = ~tf.gather(dense_ok, indices)
        first_bad = tf.argmax(tf.cast(bad_dense, tf.int32), axis=1,
                              output_type=tf.int32)
        bad_value = tf.as_string(tf.gather(tf.gather(dense, indices),
                                           first_bad, batch_dims=1),
                                 shortest=True)
      else:
        first_bad = tf.zeros_like(indices, tf.int32)
        bad_value = tf.fill(tf.shape(indices), "")
      reasons = tf.where(label_bad, _REASON["label"], _REASON["dense_field"])
      label_text = tf.as_string(tf.gather(label, indices), shortest=True)
      label_text = tf.where(tf.math.is_nan(tf.gather(label, indices)),
                            "null", label_text)
      details = tf.where(
          label_bad,
          tf.strings.join([f"label column {spec.label_column} is [",
                           label_text, "], expected 0 or 1"]),
          tf.strings.join(["dense column ", tf.gather(dense_names, first_bad),
                           " is [", bad_value, "], expected a number within "
                           "float32 or null"]))
      return reasons, pipeline.describe_bad_rows(
          path, tf.gather(rows, indices), reasons, details,
          tf.where(label_bad,
                   tf.strings.join([f"{spec.label_column}=", label_text]),
                   tf.strings.join([tf.gather(dense_names, first_bad), "=",
                                    bad_value])), "column")

    dependency = checker(mine & ~ok, describe_bad)
    raw = {spec.label_column: tf.cast(tf.where(label_ok, label, 0.0),
                                      tf.float32)}
    dense32 = tf.cast(tf.where(dense_ok, dense, 0.0), tf.float32)
    for i, name in enumerate(spec.dense_columns):
      raw[name] = dense32[:, i]
    for name, values in zip(spec.categorical_columns, categorical):
      raw[name] = values
    return raw, mine & ok, dependency

  return dataset.map(check, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


def _shard(units, num_shards: int, shard_index: int):
  if num_shards <= 1:
    return units
  mine = units[shard_index::num_shards]
  if not mine:
    raise DataError(f"{len(units)} Parquet row groups cannot feed "
                    f"{num_shards} input pipelines (shard {shard_index} gets "
                    "none); write smaller row groups or more files")
  return mine


def raw_dataset(files: Sequence[str], schema: tabular.TabularSchema, *,
                on_bad_row: str = "error",
                bad_rows: Optional[BadRowCounter] = None,
                selector: Optional[pipeline.LineSelector] = None
                ) -> tf.data.Dataset:
  """Chunks of raw valid rows in file and row order (as
  ``tabular.raw_dataset``; only the rows ``selector`` selects when given)."""
  _, units = check_files(list(files), schema.spec, schema.columns)
  if selector is not None:
    selector = selector.with_files(list(files))
  units = _select_units(units, selector)

  def valid(raw, keep, dependency):
    with tf.control_dependencies([dependency]):
      return {k: tf.boolean_mask(v, keep) for k, v in raw.items()}

  return _raw_chunks(units, schema, on_bad_row=on_bad_row, bad_rows=bad_rows,
                     shuffle=False, seed=None, parallel=1,
                     selector=selector).map(valid)


def packed_chunks(files: Sequence[str], schema: tabular.TabularSchema, *,
                  on_bad_row: str = "error",
                  bad_rows: Optional[BadRowCounter] = None,
                  num_shards: int = 1, shard_index: int = 0,
                  shuffle_files: bool = False, seed: Optional[int] = None,
                  parallel_files: int = 1,
                  selector: Optional[pipeline.LineSelector] = None
                  ) -> tf.data.Dataset:
  """Packed rows int32 [k, packed_width] of the valid rows of ``files``
  (of the row groups holding ``selector``'s rows, when given, those
  ``shard_index::num_shards``)."""
  _, units = check_files(list(files), schema.spec, schema.columns)
  if selector is not None:
    selector = selector.with_files(list(files))
  units = _shard(_select_units(units, selector), num_shards, shard_index)

  def pack(raw, keep, dependency):
    return tabular.pack_raw_rows(raw, keep, dependency, schema)

  return _raw_chunks(units, schema, on_bad_row=on_bad_row, bad_rows=bad_rows,
                     shuffle=shuffle_files, seed=seed,
                     parallel=parallel_files, selector=selector).map(
                         pack, num_parallel_calls=tf.data.AUTOTUNE,
                         deterministic=True)


def build_schema(files: Sequence[str], spec: tabular.TabularSpec, *,
                 on_bad_row: str = "error",
                 bad_rows: Optional[BadRowCounter] = None,
                 selector: Optional[pipeline.LineSelector] = None
                 ) -> tabular.TabularSchema:
  """The schema of the training Parquet ``files`` (``tabular.build_schema``'s
  vocabularies and statistics, from a streamed pass over the rows
  ``selector`` selects, all when None)."""
  columns, _ = check_files(list(files), spec)
  return tabular.schema_from_raw_chunks(
      spec, columns, len(files),
      lambda reading: raw_dataset(files, reading, on_bad_row=on_bad_row,
                                  bad_rows=bad_rows, selector=selector))


def make_dataset(files: Sequence[str], schema: tabular.TabularSchema,
                 batch_size: int, *, training: bool = True,
                 shuffle: bool = True, shuffle_buffer: int = 10_000,
                 seed: Optional[int] = None, repeat: bool = False,
                 cycle_length: int = 8, on_bad_row: str = "error",
                 bad_rows: Optional[BadRowCounter] = None,
                 num_shards: int = 1, shard_index: int = 0,
                 drop_remainder: Optional[bool] = None,
                 selector: Optional[pipeline.LineSelector] = None
                 ) -> tf.data.Dataset:
  """Batches ``(features, label)`` of Parquet ``files`` (``tabular.
  make_dataset``'s rules, with row groups as the units of sharding and of
  file-order shuffling; ``selector``: only these rows, ``row_counter``'s
  numbering)."""
  if shuffle and not training:
    raise DataError("evaluation data is never shuffled (shuffle=True with "
                    "training=False)")
  if batch_size <= 0:
    raise DataError(f"batch_size must be > 0, got {batch_size}")
  chunks = packed_chunks(
      files, schema, on_bad_row=on_bad_row, bad_rows=bad_rows,
      num_shards=num_shards, shard_index=shard_index, shuffle_files=shuffle,
      seed=seed, parallel_files=cycle_length if training else 1,
      selector=selector)
  return tabular.batch_packed_chunks(
      chunks, schema, batch_size, shuffle=shuffle,
      shuffle_buffer=shuffle_buffer, seed=seed, repeat=repeat,
      drop_remainder=training if drop_remainder is None else drop_remainder,
      sharded=num_shards > 1)


__all__ = ["build_schema", "check_files", "count_rows", "make_dataset",
           "packed_chunks", "raw_dataset", "read_columns", "row_counter"]
