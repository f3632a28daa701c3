"""Criteo Display Advertising rows: TSV (plain or gzip), TFRecord, packed.

Row format (TSV): ``label \\t I1..I<num_dense> \\t C1..C<num_categorical>``;
label is ``0`` or ``1``, integer fields are empty (missing) or a decimal
integer (``-?[0-9]+``), categorical fields are any string without a tab
(usually 8 hex digits; empty = missing). TFRecord files hold tf.Example
records with the raw values (``features.tf_example_feature_spec``), written by
``python -m recsys_smelu.data.convert``. Packed files hold rows already
parsed (``recsys_smelu.data.packed``).

How the pipeline is fast (see ``make_dataset``): files are read in parallel by
a deterministic ``interleave``; each file's lines are batched into chunks of
``readers.CHUNK_ROWS`` *before* any parsing (``recsys_smelu.data.readers``),
and a chunk is validated and transformed by whole-tensor ops in a parallel
``map``. For training, TSV lines go through one native op
(``_tsv_native_packed_fn``: check, decode and hash in one pass per line,
``recsys_smelu.native``) or, when it is not built, through stock ops
(``_tsv_packed_fn``: one RE2 pass per line, only the numeric columns decoded,
the categorical fields from one split hashed together); both equal
``raw_to_model_inputs`` of the decoded raw row, which tests check. Each valid
row is packed into one int32 vector (``packed.pack_columns``), so a chunk is
one [rows, width] tensor; the shuffle buffer works on whole chunks
(``pipeline.shuffle_chunks``) and ``rebatch`` cuts them into batches, with no
per-row tf.data work after the reader. Packed files enter at that point: a
block of rows is one ``decode_raw``.

Bad rows (wrong column count, a non-integer integer field, a label other than
0/1; in TFRecord files a label that is missing or not 0/1) either stop the
pipeline (``on_bad_row='error'``) or are dropped and counted
(``'skip'``), as ``recsys_smelu.data.pipeline`` describes.
"""

from __future__ import annotations

from typing import Optional, Sequence

import tensorflow as tf

from recsys_smelu.data import features as features_lib
from recsys_smelu.data import packed as packed_lib
from recsys_smelu.data import pipeline
from recsys_smelu.data import readers
from recsys_smelu.data.pipeline import BadRowCounter
from recsys_smelu.data.pipeline import ChunkChecker
from recsys_smelu.data.pipeline import DataError
from recsys_smelu.data.pipeline import NoMatchingFilesError
from recsys_smelu import native

FILE_FORMATS = ("tsv", "tfrecord", "packed")
_ROW_SEED_OFFSET = 7919  # row shuffle seed = seed + this (files use seed)
# Features sharing a bucket count are hashed in one op over all fields (see
# _field_ids) when there are at least this many of them.
_MIN_FEATURES_HASHED_TOGETHER = 4
# An integer field: optional minus and 1-38 digits (float32 holds < 3.4e38;
# longer is reported as a bad row rather than parsed to inf).
_INTEGER_REGEX = "-?[0-9]{1,38}"


# ---------------------------------------------------------------------------
# Chunk parsing and bad rows.
# ---------------------------------------------------------------------------


def _row_regex(num_dense: int, num_categorical: int) -> str:
  """RE2 pattern a valid TSV row matches in full (one pass over the line)."""
  return ("[01]" + (f"(?:\t(?:{_INTEGER_REGEX})?){{{num_dense}}}"
                    if num_dense else "")
          + (f"(?:\t[^\t]*){{{num_categorical}}}" if num_categorical else ""))


def _bad_tsv_rows_fn(schema: features_lib.FeatureSchema):
  """describe(filename, lines, line_numbers, indices) -> (reasons, messages)
  of the bad lines at ``indices``: why each is bad (an index into
  ``pipeline.BAD_ROW_REASONS``) and its ``file:line: ...`` message. Only run
  when a chunk has bad rows."""
  num_dense = schema.num_dense
  num_columns = 1 + num_dense + len(schema.categorical)
  dense_names = tf.constant(list(schema.dense) or [""])

  def describe(filename, lines, line_numbers, indices):
    bad_lines = tf.gather(lines, indices)
    fields = tf.strings.split(bad_lines, "\t")
    counts = fields.row_lengths()
    columns = fields.to_tensor(default_value="", shape=[None, num_columns])
    labels = columns[:, 0]
    label_ok = tf.logical_or(tf.equal(labels, "0"), tf.equal(labels, "1"))
    if num_dense:
      dense_text = columns[:, 1:1 + num_dense]
      dense_ok = tf.strings.regex_full_match(dense_text,
                                             f"(?:{_INTEGER_REGEX})?")
      first_bad_dense = tf.argmax(tf.cast(~dense_ok, tf.int32), axis=1,
                                  output_type=tf.int32)
      bad_value = tf.gather(dense_text, first_bad_dense, batch_dims=1)
    else:
      first_bad_dense = tf.zeros_like(counts, tf.int32)
      bad_value = tf.fill(tf.shape(counts), "")
    reasons = tf.where(tf.not_equal(counts, num_columns), 0,
                       tf.where(label_ok, 1, 2))
    details = tf.stack([
        tf.strings.join([tf.as_string(counts),
                         f" columns, expected {num_columns}"]),
        tf.strings.join(["integer feature ",
                         tf.gather(dense_names, first_bad_dense), " is [",
                         bad_value, "]"]),
        tf.strings.join(["label is [", labels, "], expected 0 or 1"]),
    ], axis=1)
    details = tf.gather(details, reasons, batch_dims=1)
    return reasons, pipeline.describe_bad_rows(
        filename, tf.gather(line_numbers, indices), reasons, details,
        bad_lines, "line")

  return describe


def _tsv_line_check_fn(schema: features_lib.FeatureSchema,
                       checker: ChunkChecker, line_shards):
  """check(filename, first line number, lines [n], valid [n]) -> (keep [n],
  dependency): the lines of this shard that are valid, and the bad-row
  handling (``checker``) of this shard's invalid lines."""
  describe_bad = _bad_tsv_rows_fn(schema)

  def check(filename, first_line, lines, valid):
    n = tf.shape(lines, out_type=tf.int64)[0]
    line_numbers = first_line + tf.range(n)
    mine = pipeline.line_mask(filename, line_numbers, line_shards)
    dependency = checker(
        mine & ~valid,
        lambda indices: describe_bad(filename, lines, line_numbers, indices))
    return mine & valid, dependency

  return check


def _tsv_valid_lines_fn(schema: features_lib.FeatureSchema,
                        checker: ChunkChecker, line_shards):
  """(filename, first line number, lines [n]) -> (valid lines, dependency).

  A row is valid when it matches ``_row_regex`` (one RE2 pass per line), so
  the decoders that follow cannot fail. Bad rows are split and classified only
  when a chunk has any; ``dependency`` raises or counts them (``checker``).
  """
  row_regex = _row_regex(schema.num_dense, len(schema.categorical))
  check = _tsv_line_check_fn(schema, checker, line_shards)

  def valid_lines(filename, first_line, lines):
    keep, dependency = check(filename, first_line, lines,
                             tf.strings.regex_full_match(lines, row_regex))
    return pipeline.keep_rows(lines, keep), dependency

  return valid_lines


def _decode_valid_lines(lines, schema: features_lib.FeatureSchema):
  """(label [n], dense float32 [n, num_dense] with NaN = missing, fields
  string [n, columns]) of lines that passed the row check.

  ``decode_csv`` reads only the label and integer columns (``select_cols``:
  no strings made); all fields come from one ``tf.strings.split`` (unlike
  ``decode_csv``, it keeps a ``\\r`` inside the last field). ``fields`` is
  None when the schema has no categorical feature.
  """
  num_dense = schema.num_dense
  num_columns = 1 + num_dense + len(schema.categorical)
  numbers = tf.io.decode_csv(lines, [[float("nan")]] * (1 + num_dense),
                             field_delim="\t", use_quote_delim=False,
                             select_cols=list(range(1 + num_dense)))
  dense = (tf.stack(numbers[1:], axis=1) if num_dense
           else tf.zeros([tf.shape(lines)[0], 0]))
  fields = None
  if schema.categorical:
    fields = tf.reshape(tf.strings.split(lines, "\t").flat_values,
                        [-1, num_columns])
  return numbers[0], dense, fields


def _tsv_chunk_fn(schema: features_lib.FeatureSchema, checker: ChunkChecker,
                  line_shards):
  """(filename, first line number, lines [n]) -> (raw valid rows, dependency).

  Valid rows (``_tsv_valid_lines_fn``) are decoded (``_decode_valid_lines``)
  into the raw columns: label and dense float32 (NaN = missing), categorical
  strings.
  """
  valid_lines = _tsv_valid_lines_fn(schema, checker, line_shards)
  first_categorical = 1 + schema.num_dense

  def parse(filename, first_line, lines):
    good, dependency = valid_lines(filename, first_line, lines)
    label, dense, fields = _decode_valid_lines(good, schema)
    raw = {name: dense[:, i] for i, name in enumerate(schema.dense)}
    for i, name in enumerate(schema.categorical_names):
      raw[name] = fields[:, first_categorical + i]
    raw[schema.label] = label
    return raw, dependency

  return parse


def _field_ids(fields, first_column: int,
               schema: features_lib.FeatureSchema):
  """Bucket ids int32 [n, k] of the categorical columns of ``fields``.

  ``fields`` is a string matrix [n, columns] (static column count) whose
  columns ``first_column + i`` hold categorical feature i. Ids are
  ``features.categorical_ids`` of each column. Features hashed into the same
  number of buckets are hashed in one op over the whole matrix: hashing a few
  unused fields costs less than copying the strings out column by column.
  The ids are then taken with one slice (the common case: all features
  alike, consecutive columns) or one column gather.
  """
  groups: dict[int, list[int]] = {}
  for i, feature in enumerate(schema.categorical):
    if feature.vocabulary is None:
      groups.setdefault(feature.num_buckets, []).append(i)
  num_fields = int(fields.shape[1])
  matrices, column_of = [], [None] * len(schema.categorical)
  offset = 0
  for indices in groups.values():
    if len(indices) < _MIN_FEATURES_HASHED_TOGETHER:
      continue
    matrices.append(features_lib.categorical_ids(
        fields, schema.categorical[indices[0]]))
    for i in indices:
      column_of[i] = offset + first_column + i
    offset += num_fields
  for i, feature in enumerate(schema.categorical):
    if column_of[i] is None:
      matrices.append(features_lib.categorical_ids(
          fields[:, first_column + i:first_column + i + 1], feature))
      column_of[i] = offset
      offset += 1
  ids = matrices[0] if len(matrices) == 1 else tf.concat(matrices, axis=1)
  first, count = column_of[0], len(column_of)
  if column_of == list(range(first, first + count)):
    return ids[:, first:first + count]
  return tf.gather(ids, column_of, axis=1)


def _tsv_packed_fn(schema: features_lib.FeatureSchema, checker: ChunkChecker,
                   line_shards):
  """(filename, first line number, lines [n]) -> packed valid rows [k, width].

  The training path with stock ops, equal to
  ``packed.pack(raw_to_model_inputs(raw))`` of ``_tsv_chunk_fn``'s rows but
  faster (docs/benchmarks.md): the categorical fields are hashed by
  ``_field_ids`` straight from the field matrix.
  """
  valid_lines = _tsv_valid_lines_fn(schema, checker, line_shards)

  def parse(filename, first_line, lines):
    good, dependency = valid_lines(filename, first_line, lines)
    label, dense, fields = _decode_valid_lines(good, schema)
    ids = (_field_ids(fields, 1 + schema.num_dense, schema)
           if schema.categorical else None)
    with tf.control_dependencies([dependency]):
      return packed_lib.pack_columns(
          label, features_lib.dense_transform(dense), ids)

  return parse


def _tsv_native_packed_fn(schema: features_lib.FeatureSchema,
                          checker: ChunkChecker, line_shards, ops):
  """Same as ``_tsv_packed_fn`` (a test checks it), faster (docs/benchmarks.md).

  One native op (``native.decode_criteo_rows``) checks each line against the
  rule of ``_row_regex``, decodes its numbers and hashes its categorical
  fields in one pass; the stock ops then only transform the dense values,
  map vocabulary features and pack.
  """
  check = _tsv_line_check_fn(schema, checker, line_shards)
  moduli = [features_lib.hash_modulus(f) for f in schema.categorical]
  all_hashed = all(f.vocabulary is None for f in schema.categorical)

  def parse(filename, first_line, lines):
    label, dense, hashes, valid = native.decode_criteo_rows(
        ops, lines, schema.num_dense, moduli)
    keep, dependency = check(filename, first_line, lines, valid)
    ids = None
    if schema.categorical and all_hashed:
      ids = tf.cast(hashes, tf.int32)
    elif schema.categorical:
      ids = tf.stack([features_lib.ids_from_hashes(hashes[:, k], feature)
                      for k, feature in enumerate(schema.categorical)], axis=1)
    packed = packed_lib.pack_columns(
        label, features_lib.dense_transform(dense), ids)
    with tf.control_dependencies([dependency]):
      return pipeline.keep_rows(packed, keep)

  return parse


def _tfrecord_chunk_fn(schema: features_lib.FeatureSchema,
                       checker: ChunkChecker, line_shards):
  """(filename, first record, serialized [n]) -> (raw valid rows,
  dependency)."""
  spec = features_lib.tf_example_feature_spec(schema)

  def parse(filename, first_record, serialized):
    n = tf.shape(serialized, out_type=tf.int64)[0]
    record_numbers = first_record + tf.range(n)
    raw = tf.io.parse_example(serialized, spec)
    label = raw[schema.label]
    valid = tf.logical_or(tf.equal(label, 0.0), tf.equal(label, 1.0))
    mine = pipeline.line_mask(filename, record_numbers, line_shards)

    def describe_bad(indices):
      reasons = tf.fill(tf.shape(indices), 2)
      details = tf.strings.join(["label is [", tf.as_string(
          tf.gather(label, indices)), "], expected 0 or 1"])
      contents = tf.strings.join(["tf.Example of ", tf.as_string(
          tf.strings.length(tf.gather(serialized, indices))), " bytes"])
      return reasons, pipeline.describe_bad_rows(
          filename, tf.gather(record_numbers, indices), reasons, details,
          contents, "record")

    dependency = checker(mine & ~valid, describe_bad)
    keep = mine & valid
    kept = tf.cond(tf.reduce_all(keep), lambda: raw,
                   lambda: {k: tf.boolean_mask(v, keep)
                            for k, v in raw.items()})
    return kept, dependency

  return parse


def _raw_fn(file_format: str, schema: features_lib.FeatureSchema,
            checker: ChunkChecker, line_shards):
  """(filename, first line/record, chunk) -> (raw dict with label, dependency)

  ``raw`` holds the chunk's valid rows (of this shard): dense float32 (NaN =
  missing), categorical strings, the label float32; ``dependency`` is the bad
  row check (raise or count) that outputs must depend on.
  """
  make = _tsv_chunk_fn if file_format == "tsv" else _tfrecord_chunk_fn
  return make(schema, checker, line_shards)


def _packed_fn(raw_fn, schema: features_lib.FeatureSchema):
  def parse(filename, first, chunk):
    raw, dependency = raw_fn(filename, first, chunk)
    packed = packed_lib.pack(features_lib.raw_to_model_inputs(raw, schema),
                   raw[schema.label], schema)
    with tf.control_dependencies([dependency]):
      return tf.identity(packed)
  return parse



# ---------------------------------------------------------------------------
# The dataset.
# ---------------------------------------------------------------------------


def make_dataset(files: Sequence[str], schema: features_lib.FeatureSchema,
                 batch_size: int, *, file_format: str = "tsv",
                 training: bool = True, shuffle: bool = True,
                 shuffle_buffer: int = 10_000, seed: Optional[int] = None,
                 repeat: bool = False, cycle_length: int = 8,
                 on_bad_row: str = "error",
                 bad_rows: Optional[BadRowCounter] = None,
                 num_shards: int = 1, shard_index: int = 0,
                 drop_remainder: Optional[bool] = None,
                 native_decoder: Optional[bool] = None,
                 selector: Optional[pipeline.LineSelector] = None
                 ) -> tf.data.Dataset:
  """Batches ``(features, label)`` from Criteo TSV, TFRecord or packed files.

  * ``training``: files interleaved ``cycle_length`` at a time (chunk by
    chunk); else read one after the other, so rows come in exact file order.
  * ``shuffle`` (needs ``training``): file order (``Dataset.shuffle``, seed
    ``seed``) and rows (``shuffle_chunks``, buffer ``shuffle_buffer`` rows,
    seed ``seed + 7919``) are shuffled; with ``repeat`` every epoch is
    reshuffled differently, each epoch's randomness derived deterministically
    from the seeds, so a given ``seed`` fixes the whole order.
  * Sharding (``num_shards > 1``): by files when there are at least
    ``num_shards`` files (file i goes to shard ``i % num_shards``), else by
    lines (line l of every file to shard ``(l - 1) % num_shards``).
  * ``drop_remainder`` defaults to ``training`` (static batch shape for
    training; every eval row is kept).
  * ``native_decoder``: TSV lines through the native op
    (``recsys_smelu.native``): None = as ``RECSYS_SMELU_NATIVE_OPS``
    says (default: when it builds), True = required, False = stock ops.
  * ``selector``: only these lines of each file (a row range, a validation
    split; ``recsys_smelu.data.splits``); ``files`` must be among its files.
    Chunks wholly outside a file's range are not parsed, and reading a file
    stops after its range.
  """
  if file_format not in FILE_FORMATS:
    raise DataError(f"file_format must be one of {', '.join(FILE_FORMATS)}, "
                    f"got {file_format!r}")
  if shuffle and not training:
    raise DataError("evaluation data is never shuffled (shuffle=True with "
                    "training=False)")
  if not files:
    raise NoMatchingFilesError("no input files")
  if batch_size <= 0:
    raise DataError(f"batch_size must be > 0, got {batch_size}")
  checker = ChunkChecker(on_bad_row, bad_rows)
  files = list(files)
  if file_format == "packed":
    packed_lib.check_packed_files(files, schema)
  # The parsers' line filter: range, hash, line shard.
  files, line_shards = pipeline.shard_files(files, num_shards, shard_index,
                                            selector)
  if drop_remainder is None:
    drop_remainder = training
  row_seed = None if seed is None else seed + _ROW_SEED_OFFSET

  parallel_files = min(cycle_length, len(files)) if training else 1
  dataset = _chunks(files, schema, file_format, checker, line_shards,
                    shuffle_files=shuffle, seed=seed,
                    parallel_files=parallel_files,
                    native_decoder=native_decoder)
  if shuffle and shuffle_buffer > 0:
    dataset = pipeline.shuffle_chunks(dataset, shuffle_buffer, row_seed)
  if repeat:
    dataset = dataset.repeat()
  dataset = dataset.rebatch(batch_size, drop_remainder=drop_remainder)
  dataset = dataset.map(lambda rows: packed_lib.unpack(rows, schema),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return pipeline.finish_pipeline(dataset, sharded=num_shards > 1)


def _chunks(files: Sequence[str], schema: features_lib.FeatureSchema,
            file_format: str, checker: ChunkChecker, line_shards, *,
            shuffle_files: bool, seed: Optional[int], parallel_files: int,
            native_decoder: Optional[bool]) -> tf.data.Dataset:
  """Packed rows [n, packed_width] of ``files``, one chunk at a time.

  TSV lines are decoded by the native op when ``native.load(native_decoder)``
  gives it, else by stock ops; both give the same rows.
  """
  sizes = [readers.file_size(path, file_format) for path in files]
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.constant(files, tf.string), tf.constant(sizes, tf.int64)))
  if shuffle_files and len(files) > 1:
    dataset = dataset.shuffle(len(files), seed=seed,
                              reshuffle_each_iteration=True)
  read = readers.read_chunks(file_format, packed_lib.packed_width(schema))
  if isinstance(line_shards, pipeline.LineSelector):
    read_all, selector = read, line_shards
    read = lambda f, size: selector.skip_outside(f, read_all(f, size))  # pylint: disable=g-long-lambda
  dataset = dataset.interleave(
      read, cycle_length=parallel_files, block_length=1,
      **({"num_parallel_calls": tf.data.AUTOTUNE, "deterministic": True}
         if parallel_files > 1 else {}))
  if file_format == "tsv":
    ops = native.load(native_decoder)
    if ops is None:
      parse = _tsv_packed_fn(schema, checker, line_shards)
    else:
      parse = _tsv_native_packed_fn(schema, checker, line_shards, ops)
  elif file_format == "tfrecord":
    parse = _packed_fn(_raw_fn(file_format, schema, checker, line_shards),
                       schema)
  else:  # packed: already parsed; only the line shard is selected.
    def parse(filename, first, chunk):
      if line_shards is None:
        return chunk
      n = tf.shape(chunk, out_type=tf.int64)[0]
      return pipeline.keep_rows(chunk, pipeline.line_mask(
          filename, first + tf.range(n), line_shards))
  return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)


def packed_chunks(files: Sequence[str], schema: features_lib.FeatureSchema, *,
                  file_format: str = "tsv", on_bad_row: str = "error",
                  bad_rows: Optional[BadRowCounter] = None,
                  native_decoder: Optional[bool] = None) -> tf.data.Dataset:
  """Packed rows int32 [n, packed_width(schema)] of ``files`` in file and line
  order: what the training pipeline shuffles and batches (for writing packed
  files, ``recsys_smelu.data.convert``)."""
  return _chunks(list(files), schema, file_format,
                 ChunkChecker(on_bad_row, bad_rows), None,
                 shuffle_files=False, seed=None, parallel_files=1,
                 native_decoder=native_decoder).prefetch(tf.data.AUTOTUNE)


def raw_dataset(files: Sequence[str], schema: features_lib.FeatureSchema, *,
                file_format: str = "tsv", on_bad_row: str = "error",
                bad_rows: Optional[BadRowCounter] = None) -> tf.data.Dataset:
  """Chunks of raw rows of ``files`` in file and line order (for converting).

  Elements are dicts ``{label, I.., C..}`` of [n] tensors as
  ``tf_example_feature_spec`` parses them (dense float32 with NaN = missing,
  categorical strings), bad rows handled as in ``make_dataset``.
  """
  checker = ChunkChecker(on_bad_row, bad_rows)
  raw_fn = _raw_fn(file_format, schema, checker, None)

  def parse(filename, first, chunk):
    raw, dependency = raw_fn(filename, first, chunk)
    with tf.control_dependencies([dependency]):
      return {k: tf.identity(v) for k, v in raw.items()}

  files = list(files)
  sizes = [readers.file_size(path, file_format) for path in files]
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.constant(files, tf.string), tf.constant(sizes, tf.int64)))
  dataset = dataset.interleave(readers.read_chunks(file_format), cycle_length=1)
  return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True).prefetch(tf.data.AUTOTUNE)

