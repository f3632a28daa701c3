"""Criteo Display Advertising input pipeline: TSV (plain or gzip), TFRecord, packed.

Row format (TSV): ``label \\t I1..I<num_dense> \\t C1..C<num_categorical>``;
label is ``0`` or ``1``, integer fields are empty (missing) or a decimal
integer (``-?[0-9]+``), categorical fields are any string without a tab
(usually 8 hex digits; empty = missing). TFRecord files hold tf.Example
records with the raw values (``features.tf_example_feature_spec``), written by
``python -m recsys_smelu.data.convert``.

Packed files (``--format=packed`` of ``recsys_smelu.data.convert``) hold the
rows after all of that: int32 little-endian rows as ``_pack`` lays them out,
with ``packed_schema.json`` (``packed_schema_description``) beside them.

How the pipeline is fast (see ``make_dataset``): files are read in parallel by
a deterministic ``interleave``; each file's lines are batched into chunks of
``CHUNK_ROWS`` *before* any parsing, and a chunk is validated and
transformed by whole-tensor ops in a parallel ``map``. For training, TSV
lines go through one native op (``_tsv_native_packed_fn``: check, decode and
hash in one pass per line, ``recsys_smelu.native``) or, when it is not
built, through stock ops (``_tsv_packed_fn``: one RE2 pass per line, only the
numeric columns decoded, the categorical fields from one split hashed
together); both equal ``raw_to_model_inputs`` of the decoded raw row, which
tests check. Each
valid row is packed into one int32 vector (label, dense and bucket ids
bit-cast together), so a chunk is one [rows, width] tensor; the shuffle
buffer works on whole chunks (``shuffle_chunks``) and ``rebatch`` cuts them
into batches, with no per-row tf.data work after the reader. Packed files
enter at that point: a block of rows is one ``decode_raw``.

Bad rows (wrong column count, a non-integer integer field, a label other than
0/1; in TFRecord files a label that is missing or not 0/1) either stop the
pipeline (``on_bad_row='error'``: ``tf.errors.InvalidArgumentError`` whose
message names ``file:line``, the reason and the row, truncated) or are dropped
(``'skip'``) and counted by a ``BadRowCounter``.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Optional, Sequence

import tensorflow as tf

from recsys_smelu.data import features as features_lib
from recsys_smelu import native

CHUNK_ROWS = 4096  # lines (gzip) or records (TFRecord) parsed together
BLOCK_BYTES = 1 << 20  # plain text is read in blocks of this size
MAX_CONTENT_CHARS = 200  # a bad row is quoted up to this many characters
READ_BUFFER_BYTES = 8 << 20
BAD_ROW_REASONS = ("column_count", "integer_field", "label")
FILE_FORMATS = ("tsv", "tfrecord", "packed")
_ROW_SEED_OFFSET = 7919  # row shuffle seed = seed + this (files use seed)
# Features sharing a bucket count are hashed in one op over all fields (see
# _field_ids) when there are at least this many of them.
_MIN_FEATURES_HASHED_TOGETHER = 4
# An integer field: optional minus and 1-38 digits (float32 holds < 3.4e38;
# longer is reported as a bad row rather than parsed to inf).
_INTEGER_REGEX = "-?[0-9]{1,38}"


class DataError(ValueError):
  """Bad input data or a bad file pattern; the message names the file."""


class NoMatchingFilesError(DataError, FileNotFoundError):
  """A file pattern matched no file."""


class BadRowError(DataError):
  """A bad row under ``on_bad_row='error'``: ``file:line: bad row (reason:
  detail); line content: ...`` (see ``bad_row_error``)."""


_ASSERT_MARK = "assertion failed: ["
_SKIP_HINT = " (set data.on_bad_row=skip to skip and count bad rows)"


def bad_row_error(error: BaseException) -> Optional[BadRowError]:
  """The ``BadRowError`` inside a tf.data error, or None if it is not one.

  In 'error' mode the pipeline stops with ``tf.errors.InvalidArgumentError``
  (raised from inside tf.data, so it cannot be a ValueError itself); callers
  that want the plain message re-raise: ``except
  tf.errors.InvalidArgumentError as e: raise (bad_row_error(e) or e) from e``.
  """
  text = getattr(error, "message", None) or str(error)
  start = text.find(_ASSERT_MARK)
  end = text.find(_SKIP_HINT + "]", start)
  if start < 0 or end < 0 or ": bad row (" not in text[start:end]:
    return None
  return BadRowError(text[start + len(_ASSERT_MARK):end] + _SKIP_HINT)


def expand_patterns(patterns: str | Sequence[str]) -> list[str]:
  """Files of comma-separated glob patterns, in pattern order then sorted.

  Works for local paths and gs:// alike (``tf.io.gfile.glob``). A file matched
  twice is read once. Raises ``NoMatchingFilesError`` naming a pattern that
  matches nothing.
  """
  if isinstance(patterns, str):
    patterns = patterns.split(",")
  patterns = [p.strip() for p in patterns if p.strip()]
  if not patterns:
    raise NoMatchingFilesError("no file pattern given (empty string)")
  files, seen = [], set()
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise NoMatchingFilesError(f"file pattern {pattern!r} matches no file")
    for path in matched:
      if path not in seen:
        seen.add(path)
        files.append(path)
  return files


class BadRowCounter:
  """Counts rows skipped by the pipelines (``on_bad_row='skip'``).

  Thread-safe; the pipeline adds to it from inside ``tf.data`` (through
  ``tf.numpy_function``, called only for chunks that contain bad rows, so it
  costs nothing on clean data). Counts are cumulative until ``reset()``; read
  them when an epoch or an evaluation has been fully consumed (the pipeline
  prefetches, so mid-way the count may be ahead of the rows consumed).
  ``examples`` keeps the first ``max_examples`` descriptions ``file:line:
  reason; content: ...`` for the log.
  """

  def __init__(self, max_examples: int = 5):
    self._lock = threading.Lock()
    self._max_examples = max_examples
    self.reset()

  def reset(self) -> None:
    with self._lock:
      self._counts = {reason: 0 for reason in BAD_ROW_REASONS}
      self._examples: list[str] = []

  @property
  def total(self) -> int:
    with self._lock:
      return sum(self._counts.values())

  def by_reason(self) -> dict[str, int]:
    with self._lock:
      return dict(self._counts)

  @property
  def examples(self) -> list[str]:
    with self._lock:
      return list(self._examples)

  def summary(self) -> str:
    """One line for the log, e.g. ``skipped 3 bad rows (column_count=2, ...)``."""
    counts = self.by_reason()
    details = ", ".join(f"{k}={v}" for k, v in counts.items() if v)
    text = f"skipped {sum(counts.values())} bad rows"
    if details:
      text += f" ({details}); first: {self.examples[0]}"
    return text

  def _record(self, reasons, messages):
    """Called from the pipeline with numpy arrays of reason codes/messages."""
    with self._lock:
      for code in reasons.tolist():
        self._counts[BAD_ROW_REASONS[code]] += 1
      for message in messages.tolist():
        if len(self._examples) >= self._max_examples:
          break
        self._examples.append(message.decode("utf-8", "replace"))
    return reasons.size


# ---------------------------------------------------------------------------
# Packing: one int32 vector per row (label, dense, bucket ids).
# ---------------------------------------------------------------------------


def _pack_columns(label, dense, ids=None):
  """[n, 1 + num_dense + k] int32: label float32 [n], transformed dense
  float32 [n, num_dense] (bit-cast) and bucket ids int32 [n, k] (None: k=0)."""
  parts = [tf.bitcast(label, tf.int32)[:, None], tf.bitcast(dense, tf.int32)]
  if ids is not None:
    parts.append(ids)
  return tf.concat(parts, axis=1)


def _pack(model_inputs, label, schema: features_lib.FeatureSchema):
  ids = None
  if schema.categorical:
    ids = tf.stack([model_inputs[features_lib.SPARSE_KEY][n]
                    for n in schema.categorical_names], axis=1)
  return _pack_columns(label, model_inputs[features_lib.DENSE_KEY], ids)


def _unpack(packed, schema: features_lib.FeatureSchema):
  """Inverse of ``_pack`` for a batch: returns (features, label)."""
  num_dense = schema.num_dense
  label = tf.bitcast(packed[:, 0], tf.float32)
  dense = tf.bitcast(packed[:, 1:1 + num_dense], tf.float32)
  dense = tf.reshape(dense, [-1, num_dense])
  sparse = {name: packed[:, 1 + num_dense + i]
            for i, name in enumerate(schema.categorical_names)}
  return ({features_lib.DENSE_KEY: dense, features_lib.SPARSE_KEY: sparse},
          label)


# ---------------------------------------------------------------------------
# Chunk parsing and bad rows.
# ---------------------------------------------------------------------------


def _truncate(text):
  long = tf.strings.length(text) > MAX_CONTENT_CHARS
  cut = tf.strings.substr(text, 0, MAX_CONTENT_CHARS)
  return tf.where(long, tf.strings.join([cut, "..."]), text)


def _describe(filename, line_numbers, reasons, details, contents, unit: str):
  """Vectorized ``file:line: reason; content: ...`` strings."""
  return tf.strings.join([
      filename, ":", tf.as_string(line_numbers), ": bad row (",
      tf.gather(tf.constant(BAD_ROW_REASONS), reasons), ": ", details,
      f"); {unit} content: ", _truncate(contents)])


class _ChunkChecker:
  """Applies ``on_bad_row`` to a chunk given its validity mask."""

  def __init__(self, on_bad_row: str, counter: Optional[BadRowCounter]):
    if on_bad_row not in ("error", "skip"):
      raise DataError(f"on_bad_row must be 'error' or 'skip', got "
                      f"{on_bad_row!r}")
    self.on_bad_row = on_bad_row
    self.counter = counter

  def __call__(self, bad, describe_bad):
    """Returns a tensor to make the chunk's outputs depend on.

    ``bad``: bool [n]; ``describe_bad(indices)`` -> (reasons int32 [k],
    messages string [k]) for the bad rows at ``indices``.
    """
    any_bad = tf.reduce_any(bad)

    def on_bad():
      indices = tf.where(bad)[:, 0]
      if self.on_bad_row == "error":
        _, messages = describe_bad(indices[:1])
        message = tf.strings.join([messages[0], _SKIP_HINT])
        assertion = tf.debugging.Assert(tf.constant(False), [message],
                                        summarize=1)
        with tf.control_dependencies([assertion]):
          return tf.constant(0, tf.int64)
      if self.counter is None:
        return tf.constant(0, tf.int64)
      reasons, messages = describe_bad(indices)
      return tf.numpy_function(self.counter._record, [reasons, messages],  # pylint: disable=protected-access
                               tf.int64, stateful=True)

    return tf.cond(any_bad, on_bad, lambda: tf.constant(0, tf.int64))


def _shard_mask(line_numbers, line_shards):
  if line_shards is None:
    return tf.ones_like(line_numbers, tf.bool)
  num_shards, index = line_shards
  return tf.equal((line_numbers - 1) % num_shards, index)


def _row_regex(num_dense: int, num_categorical: int) -> str:
  """RE2 pattern a valid TSV row matches in full (one pass over the line)."""
  return ("[01]" + (f"(?:\t(?:{_INTEGER_REGEX})?){{{num_dense}}}"
                    if num_dense else "")
          + (f"(?:\t[^\t]*){{{num_categorical}}}" if num_categorical else ""))


def _bad_tsv_rows_fn(schema: features_lib.FeatureSchema):
  """describe(filename, lines, line_numbers, indices) -> (reasons, messages)
  of the bad lines at ``indices``: why each is bad (``BAD_ROW_REASONS``) and
  its ``file:line: ...`` message. Only run when a chunk has bad rows."""
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
    return reasons, _describe(filename, tf.gather(line_numbers, indices),
                              reasons, details, bad_lines, "line")

  return describe


def _keep_rows(rows, keep):
  """Rows where ``keep`` (the tensor itself when all are kept)."""
  return tf.cond(tf.reduce_all(keep), lambda: rows,
                 lambda: tf.boolean_mask(rows, keep))


def _tsv_line_check_fn(schema: features_lib.FeatureSchema,
                       checker: _ChunkChecker, line_shards):
  """check(filename, first line number, lines [n], valid [n]) -> (keep [n],
  dependency): the lines of this shard that are valid, and the bad-row
  handling (``checker``) of this shard's invalid lines."""
  describe_bad = _bad_tsv_rows_fn(schema)

  def check(filename, first_line, lines, valid):
    n = tf.shape(lines, out_type=tf.int64)[0]
    line_numbers = first_line + tf.range(n)
    mine = _shard_mask(line_numbers, line_shards)
    dependency = checker(
        mine & ~valid,
        lambda indices: describe_bad(filename, lines, line_numbers, indices))
    return mine & valid, dependency

  return check


def _tsv_valid_lines_fn(schema: features_lib.FeatureSchema,
                        checker: _ChunkChecker, line_shards):
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
    return _keep_rows(lines, keep), dependency

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


def _tsv_chunk_fn(schema: features_lib.FeatureSchema, checker: _ChunkChecker,
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


def _tsv_packed_fn(schema: features_lib.FeatureSchema, checker: _ChunkChecker,
                   line_shards):
  """(filename, first line number, lines [n]) -> packed valid rows [k, width].

  The training path with stock ops, equal to
  ``_pack(raw_to_model_inputs(raw))`` of ``_tsv_chunk_fn``'s rows but about
  1.5x faster: the categorical fields are hashed by ``_field_ids`` straight
  from the field matrix.
  """
  valid_lines = _tsv_valid_lines_fn(schema, checker, line_shards)

  def parse(filename, first_line, lines):
    good, dependency = valid_lines(filename, first_line, lines)
    label, dense, fields = _decode_valid_lines(good, schema)
    ids = (_field_ids(fields, 1 + schema.num_dense, schema)
           if schema.categorical else None)
    with tf.control_dependencies([dependency]):
      return _pack_columns(label, features_lib.dense_transform(dense), ids)

  return parse


def _tsv_native_packed_fn(schema: features_lib.FeatureSchema,
                          checker: _ChunkChecker, line_shards, ops):
  """Same as ``_tsv_packed_fn`` (a test checks it), about 3x faster.

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
    packed = _pack_columns(label, features_lib.dense_transform(dense), ids)
    with tf.control_dependencies([dependency]):
      return _keep_rows(packed, keep)

  return parse


def _tfrecord_chunk_fn(schema: features_lib.FeatureSchema,
                       checker: _ChunkChecker, line_shards):
  """(filename, first record, serialized [n]) -> (raw valid rows, dependency)."""
  spec = features_lib.tf_example_feature_spec(schema)

  def parse(filename, first_record, serialized):
    n = tf.shape(serialized, out_type=tf.int64)[0]
    record_numbers = first_record + tf.range(n)
    raw = tf.io.parse_example(serialized, spec)
    label = raw[schema.label]
    valid = tf.logical_or(tf.equal(label, 0.0), tf.equal(label, 1.0))
    mine = _shard_mask(record_numbers, line_shards)

    def describe_bad(indices):
      reasons = tf.fill(tf.shape(indices), 2)
      details = tf.strings.join(["label is [", tf.as_string(
          tf.gather(label, indices)), "], expected 0 or 1"])
      contents = tf.strings.join(["tf.Example of ", tf.as_string(
          tf.strings.length(tf.gather(serialized, indices))), " bytes"])
      return reasons, _describe(filename, tf.gather(record_numbers, indices),
                                reasons, details, contents, "record")

    dependency = checker(mine & ~valid, describe_bad)
    keep = mine & valid
    kept = tf.cond(tf.reduce_all(keep), lambda: raw,
                   lambda: {k: tf.boolean_mask(v, keep) for k, v in raw.items()})
    return kept, dependency

  return parse


def _raw_fn(file_format: str, schema: features_lib.FeatureSchema,
            checker: _ChunkChecker, line_shards):
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
    packed = _pack(features_lib.raw_to_model_inputs(raw, schema),
                   raw[schema.label], schema)
    with tf.control_dependencies([dependency]):
      return tf.identity(packed)
  return parse


def _file_blocks(filename, size, block_bytes: int) -> tf.data.Dataset:
  """A file's bytes as blocks of ``block_bytes``; the last block is shorter
  (``FixedLengthRecordDataset`` alone would drop it)."""
  tail = size % block_bytes
  blocks = tf.data.FixedLengthRecordDataset(
      filename, block_bytes, footer_bytes=tail, buffer_size=block_bytes)
  last_block = tf.data.FixedLengthRecordDataset(
      filename, tf.maximum(tail, 1), header_bytes=size - tail)
  return blocks.concatenate(last_block)


def _plain_text_chunks(filename, size):
  """Lines of an uncompressed text file, read in blocks of ``BLOCK_BYTES``.

  Reading fixed-size blocks and splitting them with one op avoids tf.data's
  per-line cost of ``TextLineDataset`` (about 4x faster here). A line cut by a
  block boundary is carried over (``scan``); the last line needs no newline;
  ``\r\n`` endings lose the ``\r`` as with ``TextLineDataset``.
  """
  pieces = _file_blocks(filename, size, BLOCK_BYTES).map(lambda b: (b, False))
  pieces = pieces.concatenate(tf.data.Dataset.from_tensors(
      (tf.constant(""), True)))

  def split_lines(state, piece):
    carry, next_line = state
    block, is_last = piece
    text = tf.strings.join([carry, block])
    parts = tf.strings.split(text, "\n")
    num_complete = tf.size(parts, out_type=tf.int64) - 1
    # On the last piece the carry is the final line if it is not empty.
    num_lines = tf.where(is_last, tf.cast(tf.strings.length(parts[-1]) > 0,
                                          tf.int64), num_complete)
    lines = parts[:num_lines]
    has_carriage_return = tf.size(tf.strings.split(text, "\r")) > 1
    lines = tf.cond(
        has_carriage_return,
        lambda: tf.strings.regex_replace(lines, "\r$", ""), lambda: lines)
    new_state = (tf.where(is_last, "", parts[-1]), next_line + num_lines)
    return new_state, (next_line, lines)

  initial = (tf.constant(""), tf.constant(1, tf.int64))
  return pieces.scan(initial, split_lines)


# ---------------------------------------------------------------------------
# Packed files: rows already parsed, validated, transformed and hashed.
# ---------------------------------------------------------------------------

PACKED_SCHEMA_FILE = "packed_schema.json"
PACKED_FORMAT_NAME = "recsys_smelu.packed"
PACKED_FORMAT_VERSION = 1


def packed_width(schema: features_lib.FeatureSchema) -> int:
  """int32 values per packed row: label, dense, one id per categorical."""
  return 1 + schema.num_dense + len(schema.categorical)


def packed_schema_description(schema: features_lib.FeatureSchema) -> dict:
  """What ``PACKED_SCHEMA_FILE`` records: the layout and everything the ids
  depend on (feature names, bucket counts, vocabulary sizes)."""
  return {
      "format": PACKED_FORMAT_NAME,
      "version": PACKED_FORMAT_VERSION,
      "row": "int32 little-endian: label (float32 bits), dense (float32 bits "
             "of log(1 + max(x, 0))), categorical bucket ids",
      "label": schema.label,
      "dense": list(schema.dense),
      "categorical": [{"name": f.name, "num_buckets": f.num_buckets,
                       "vocabulary_size": (None if f.vocabulary is None
                                           else len(f.vocabulary))}
                      for f in schema.categorical],
  }


def check_packed_files(files: Sequence[str],
                       schema: features_lib.FeatureSchema) -> None:
  """Raises DataError unless every packed file fits ``schema``.

  Each file's directory must hold ``PACKED_SCHEMA_FILE`` equal to
  ``packed_schema_description(schema)`` (the ids were hashed for exactly
  these features and bucket counts), and each file's size must be a whole
  number of rows.
  """
  want = packed_schema_description(schema)
  row_bytes = 4 * packed_width(schema)
  checked = set()
  for path in files:
    directory = os.path.dirname(path)
    if directory not in checked:
      checked.add(directory)
      schema_path = os.path.join(directory, PACKED_SCHEMA_FILE)
      if not tf.io.gfile.exists(schema_path):
        raise DataError(
            f"{path}: not a packed file ({schema_path} is missing); write "
            "packed files with recsys-smelu-convert --format=packed")
      with tf.io.gfile.GFile(schema_path) as f:
        try:
          have = json.load(f)
        except ValueError as e:
          raise DataError(f"{schema_path}: not valid JSON ({e})") from None
      _compare_packed_schema(schema_path, have, want)
    size = tf.io.gfile.stat(path).length
    if size % row_bytes:
      raise DataError(f"{path}: {size} bytes is not a whole number of "
                      f"{row_bytes}-byte rows (truncated or not a packed file)")


def _compare_packed_schema(schema_path: str, have: dict, want: dict) -> None:
  if have.get("format") != want["format"] or have.get("version") != want[
      "version"]:
    raise DataError(f"{schema_path}: format {have.get('format')!r} version "
                    f"{have.get('version')!r}, expected {want['format']!r} "
                    f"version {want['version']}")
  if have.get("dense") != want["dense"]:
    raise DataError(
        f"{schema_path}: the files have {len(have.get('dense') or [])} dense "
        f"features, the config {len(want['dense'])} (config key "
        "'data.num_dense')")
  have_cat, want_cat = have.get("categorical") or [], want["categorical"]
  if [c.get("name") for c in have_cat] != [c["name"] for c in want_cat]:
    raise DataError(
        f"{schema_path}: the files have {len(have_cat)} categorical "
        f"features, the config {len(want_cat)} (config key "
        "'data.num_categorical')")
  for h, w in zip(have_cat, want_cat):
    if h != w:
      raise DataError(
          f"{schema_path}: feature {w['name']} was hashed into "
          f"{h.get('num_buckets')} buckets, the config has {w['num_buckets']} "
          "(config key 'data.num_buckets'); convert the files again")
  if have.get("label") != want["label"]:
    raise DataError(f"{schema_path}: label {have.get('label')!r}, expected "
                    f"{want['label']!r}")


def write_packed_schema(output_dir: str,
                        schema: features_lib.FeatureSchema) -> str:
  path = os.path.join(output_dir, PACKED_SCHEMA_FILE)
  with tf.io.gfile.GFile(path, "w") as f:
    json.dump(packed_schema_description(schema), f, indent=1)
  return path


def _packed_file_chunks(filename, size, width: int):
  """(first row number, rows [n, width] int32) of a packed file, in blocks of
  ``CHUNK_ROWS`` rows (the last one shorter)."""
  rows = _file_blocks(filename, size, 4 * width * CHUNK_ROWS).map(
      lambda block: tf.reshape(tf.io.decode_raw(block, tf.int32), [-1, width]))
  return tf.data.Dataset.zip((tf.data.Dataset.range(1, 2**62, CHUNK_ROWS),
                              rows))


def _read_chunks(file_format: str, width: int = 0):
  """(filename, size) -> dataset of (filename, first line/record, chunk)."""

  def read(filename, size):
    if file_format == "packed":
      return _packed_file_chunks(filename, size, width).map(
          lambda first, chunk: (filename, first, chunk))
    is_gzip = tf.strings.regex_full_match(filename, r".*\.gz")
    compression = tf.where(is_gzip, "GZIP", "")
    if file_format == "tsv":
      lines = tf.data.TextLineDataset(filename, compression_type=compression,
                                      buffer_size=READ_BUFFER_BYTES)
      numbered = tf.data.Dataset.zip((
          tf.data.Dataset.range(1, 2**62, CHUNK_ROWS),
          lines.batch(CHUNK_ROWS)))
      # gzip: line by line; plain text: fast block reader (never both).
      everything, nothing = tf.constant(-1, tf.int64), tf.constant(0, tf.int64)
      numbered = numbered.take(tf.where(is_gzip, everything, nothing)).concatenate(
          _plain_text_chunks(filename, tf.maximum(size, 0)).take(
              tf.where(is_gzip, nothing, everything)))
    else:
      records = tf.data.TFRecordDataset(filename, compression_type=compression,
                                        buffer_size=READ_BUFFER_BYTES)
      numbered = tf.data.Dataset.zip((
          tf.data.Dataset.range(1, 2**62, CHUNK_ROWS),
          records.batch(CHUNK_ROWS)))
    numbered = numbered.filter(lambda first, chunk: tf.size(chunk) > 0)
    return numbered.map(lambda first, chunk: (filename, first, chunk))

  return read


# ---------------------------------------------------------------------------
# The dataset.
# ---------------------------------------------------------------------------


def shuffle_chunks(chunks: tf.data.Dataset, buffer_size: int,
                   seed: Optional[int]) -> tf.data.Dataset:
  """Row-level shuffle buffer over a dataset of row chunks [k, width].

  The vectorized equivalent of ``unbatch().shuffle(buffer_size).batch(k)``:
  a buffer of up to ``buffer_size`` rows is kept; each incoming chunk joins
  it, the pool is permuted (``stateless_shuffle`` with a per-chunk seed), and
  all but ``buffer_size`` rows leave, so every row that leaves is drawn
  uniformly from the buffer and the new chunk; at the end the buffer is
  flushed. It costs one gather per chunk instead of tf.data's per-row work
  (about 4x less here). Per-chunk seeds come from ``Dataset.random(seed,
  rerandomize_each_iteration=True)``, so a ``seed`` fixes every epoch's order
  and each repetition of the dataset is reshuffled differently.
  """
  width = chunks.element_spec.shape[1]
  empty = tf.zeros([0, width], chunks.element_spec.dtype)
  marked = chunks.map(lambda chunk: (chunk, False)).concatenate(
      tf.data.Dataset.from_tensors((empty, True)))
  seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True
                                 ).batch(2)

  def step(buffer, inputs):
    (chunk, is_last), chunk_seed = inputs
    pool = tf.concat([buffer, chunk], axis=0)
    size = tf.shape(pool)[0]
    order = tf.random.experimental.stateless_shuffle(tf.range(size),
                                                     seed=chunk_seed)
    pool = tf.gather(pool, order)
    leaving = tf.where(is_last, size, tf.maximum(size - buffer_size, 0))
    return pool[leaving:], pool[:leaving]

  shuffled = tf.data.Dataset.zip((marked, seeds)).scan(empty, step)
  return shuffled.filter(lambda rows: tf.shape(rows)[0] > 0)


def make_dataset(files: Sequence[str], schema: features_lib.FeatureSchema,
                 batch_size: int, *, file_format: str = "tsv",
                 training: bool = True, shuffle: bool = True,
                 shuffle_buffer: int = 10_000, seed: Optional[int] = None,
                 repeat: bool = False, cycle_length: int = 8,
                 on_bad_row: str = "error",
                 bad_rows: Optional[BadRowCounter] = None,
                 num_shards: int = 1, shard_index: int = 0,
                 drop_remainder: Optional[bool] = None,
                 native_decoder: Optional[bool] = None) -> tf.data.Dataset:
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
  checker = _ChunkChecker(on_bad_row, bad_rows)
  files = list(files)
  if file_format == "packed":
    check_packed_files(files, schema)
  line_shards = None
  if num_shards > 1:
    if len(files) >= num_shards:
      files = files[shard_index::num_shards]
    else:
      line_shards = (num_shards, shard_index)
  if drop_remainder is None:
    drop_remainder = training
  row_seed = None if seed is None else seed + _ROW_SEED_OFFSET

  parallel_files = min(cycle_length, len(files)) if training else 1
  dataset = _chunks(files, schema, file_format, checker, line_shards,
                    shuffle_files=shuffle, seed=seed,
                    parallel_files=parallel_files,
                    native_decoder=native_decoder)
  if shuffle and shuffle_buffer > 0:
    dataset = shuffle_chunks(dataset, shuffle_buffer, row_seed)
  if repeat:
    dataset = dataset.repeat()
  dataset = dataset.rebatch(batch_size, drop_remainder=drop_remainder)
  dataset = dataset.map(lambda packed: _unpack(packed, schema),
                        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return finish_pipeline(dataset, sharded=num_shards > 1)


def _chunks(files: Sequence[str], schema: features_lib.FeatureSchema,
            file_format: str, checker: _ChunkChecker, line_shards, *,
            shuffle_files: bool, seed: Optional[int], parallel_files: int,
            native_decoder: Optional[bool]) -> tf.data.Dataset:
  """Packed rows [n, packed_width] of ``files``, one chunk at a time.

  TSV lines are decoded by the native op when ``native.load(native_decoder)``
  gives it, else by stock ops; both give the same rows.
  """
  sizes = [_file_size(path, file_format) for path in files]
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.constant(files, tf.string), tf.constant(sizes, tf.int64)))
  if shuffle_files and len(files) > 1:
    dataset = dataset.shuffle(len(files), seed=seed,
                              reshuffle_each_iteration=True)
  dataset = dataset.interleave(
      _read_chunks(file_format, packed_width(schema)),
      cycle_length=parallel_files, block_length=1,
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
      del filename  # unused
      if line_shards is None:
        return chunk
      n = tf.shape(chunk, out_type=tf.int64)[0]
      return tf.boolean_mask(chunk, _shard_mask(first + tf.range(n),
                                                line_shards))
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
                 _ChunkChecker(on_bad_row, bad_rows), None,
                 shuffle_files=False, seed=None, parallel_files=1,
                 native_decoder=native_decoder).prefetch(tf.data.AUTOTUNE)


def finish_pipeline(dataset: tf.data.Dataset, sharded: bool) -> tf.data.Dataset:
  """Deterministic order, no second sharding by tf.distribute, prefetch."""
  options = tf.data.Options()
  options.deterministic = True
  if sharded:
    # Sharded here already; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)


def raw_dataset(files: Sequence[str], schema: features_lib.FeatureSchema, *,
                file_format: str = "tsv", on_bad_row: str = "error",
                bad_rows: Optional[BadRowCounter] = None) -> tf.data.Dataset:
  """Chunks of raw rows of ``files`` in file and line order (for converting).

  Elements are dicts ``{label, I.., C..}`` of [n] tensors as
  ``tf_example_feature_spec`` parses them (dense float32 with NaN = missing,
  categorical strings), bad rows handled as in ``make_dataset``.
  """
  checker = _ChunkChecker(on_bad_row, bad_rows)
  raw_fn = _raw_fn(file_format, schema, checker, None)

  def parse(filename, first, chunk):
    raw, dependency = raw_fn(filename, first, chunk)
    with tf.control_dependencies([dependency]):
      return {k: tf.identity(v) for k, v in raw.items()}

  files = list(files)
  sizes = [_file_size(path, file_format) for path in files]
  dataset = tf.data.Dataset.from_tensor_slices(
      (tf.constant(files, tf.string), tf.constant(sizes, tf.int64)))
  dataset = dataset.interleave(_read_chunks(file_format), cycle_length=1)
  return dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True).prefetch(tf.data.AUTOTUNE)


def _file_size(path: str, file_format: str) -> int:
  """Byte size for the block readers (plain text, packed); else -1."""
  if file_format == "tfrecord" or path.endswith(".gz"):
    return -1
  return tf.io.gfile.stat(path).length
