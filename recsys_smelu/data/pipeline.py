"""What every input pipeline shares: errors, bad-row handling, file patterns,
the chunk shuffle buffer and the finishing options.

The Criteo readers (``readers``), the packed row layout (``packed``), the
Criteo parsers (``criteo``) and MovieLens (``movielens``) build on this
module; it imports none of them.

Bad rows (e.g. a wrong column count) are found per chunk of rows by the
parsers, which hand this module a validity mask (``ChunkChecker``): under
``on_bad_row='error'`` the pipeline stops with ``tf.errors.InvalidArgumentError``
whose message names ``file:line``, the reason and the row (truncated), and
``bad_row_error`` recovers that message as a ``BadRowError``; under
``'skip'`` the rows are dropped and counted by a ``BadRowCounter``.
"""

from __future__ import annotations

import re
import threading
from typing import Optional, Sequence

import tensorflow as tf

MAX_CONTENT_CHARS = 200  # a bad row is quoted up to this many characters
# column_count, integer_field (Criteo TSV), label: all readers; dense_field
# (a dense value that is not a number) and quote (a quoted field not closed by
# RFC 4180 rules): the header-CSV/TSV reader (``recsys_smelu.data.tabular``).
BAD_ROW_REASONS = ("column_count", "integer_field", "label", "dense_field",
                   "quote")


class DataError(ValueError):
  """Bad input data or a bad file pattern; the message names the file."""


class NoMatchingFilesError(DataError, FileNotFoundError):
  """A file pattern matched no file."""


class BadRowError(DataError):
  """A bad row under ``on_bad_row='error'``: ``file:line: bad row (reason:
  detail); line content: ...`` (see ``bad_row_error``)."""


_ASSERT_MARK = "assertion failed: ["
SKIP_HINT = " (set data.on_bad_row=skip to skip and count bad rows)"


def bad_row_error(error: BaseException) -> Optional[BadRowError]:
  """The ``BadRowError`` inside a tf.data error, or None if it is not one.

  In 'error' mode the pipeline stops with ``tf.errors.InvalidArgumentError``
  (raised from inside tf.data, so it cannot be a ValueError itself); callers
  that want the plain message re-raise: ``except
  tf.errors.InvalidArgumentError as e: raise (bad_row_error(e) or e) from e``.
  """
  text = getattr(error, "message", None) or str(error)
  start = text.find(_ASSERT_MARK)
  end = text.find(SKIP_HINT + "]", start)
  if start < 0 or end < 0 or ": bad row (" not in text[start:end]:
    return None
  return BadRowError(_c_unescape(text[start + len(_ASSERT_MARK):end])
                     + SKIP_HINT)


_C_ESCAPE = re.compile(r"\\([\\'\"ntr]|[0-7]{3}|x[0-9a-fA-F]{2})")
_C_ESCAPED = {"n": "\n", "t": "\t", "r": "\r"}


def _c_unescape(text: str) -> str:
  """Undoes the C escaping of ``tf.debugging.Assert``'s message (``\\"``,
  ``\\t``, octal bytes), so the row is quoted as the file holds it."""
  def replace(match):
    code = match.group(1)
    if len(code) == 1:
      return _C_ESCAPED.get(code, code)
    return chr(int(code[1:], 16) if code[0] == "x" else int(code, 8))
  return _C_ESCAPE.sub(replace, text)


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

  A training pipeline reads its files many times (``repeat``), meeting each
  bad row once per pass: ``total`` and ``by_reason()`` count every time a row
  was skipped, ``distinct`` the different rows (``file:line``), and
  ``passes`` is the most times any one of them was skipped. ``examples``
  keeps the first ``max_examples`` distinct descriptions ``file:line: bad row
  (reason: ...); line content: ...`` for the log.
  """

  def __init__(self, max_examples: int = 5):
    self._lock = threading.Lock()
    self._max_examples = max_examples
    self.reset()

  def reset(self) -> None:
    with self._lock:
      self._counts = {reason: 0 for reason in BAD_ROW_REASONS}
      self._rows: dict[str, list[int]] = {}  # file:line -> [reason, times]
      self._examples: list[str] = []

  @property
  def total(self) -> int:
    """Rows skipped, counting a row once per pass that skipped it."""
    with self._lock:
      return sum(self._counts.values())

  @property
  def distinct(self) -> int:
    """Different rows (``file:line``) skipped."""
    with self._lock:
      return len(self._rows)

  @property
  def passes(self) -> int:
    """The most times one row was skipped (0 when none was)."""
    with self._lock:
      return max((times for _, times in self._rows.values()), default=0)

  def by_reason(self) -> dict[str, int]:
    """Rows skipped per reason, counting a row once per pass."""
    with self._lock:
      return dict(self._counts)

  def distinct_by_reason(self) -> dict[str, int]:
    """Different rows skipped per reason."""
    with self._lock:
      counts = {reason: 0 for reason in BAD_ROW_REASONS}
      for code, _ in self._rows.values():
        counts[BAD_ROW_REASONS[code]] += 1
      return counts

  @property
  def examples(self) -> list[str]:
    with self._lock:
      return list(self._examples)

  def summary(self) -> str:
    """One line for the log, e.g. ``skipped 3 distinct bad rows (24 over 8
    passes): column_count=2, label=1; first: data.tsv:7: bad row (...)``;
    with one pass ``skipped 3 bad rows: ...``."""
    distinct, total, passes = self.distinct, self.total, self.passes
    if passes > 1:
      text = (f"skipped {distinct} distinct bad rows ({total} over {passes} "
              "passes)")
    else:
      text = f"skipped {distinct} bad rows"
    details = ", ".join(f"{k}={v}" for k, v in
                        self.distinct_by_reason().items() if v)
    if details:
      text += f": {details}; first: {self.examples[0]}"
    return text

  def record(self, reasons, messages):
    """Adds bad rows: numpy arrays of reason codes (``BAD_ROW_REASONS``
    indices) and ``file:line: bad row ...`` messages. Called from the
    pipeline (``ChunkChecker``); returns the number of rows."""
    with self._lock:
      for code, message in zip(reasons.tolist(), messages.tolist()):
        self._counts[BAD_ROW_REASONS[code]] += 1
        text = message.decode("utf-8", "replace")
        row = text.split(": bad row (", 1)[0]  # file:line
        seen = self._rows.get(row)
        if seen is None:
          self._rows[row] = [code, 1]
          if len(self._examples) < self._max_examples:
            self._examples.append(text)
        else:
          seen[1] += 1
    return reasons.size


# ---------------------------------------------------------------------------
# Per-chunk bad-row handling, used by the parsers.
# ---------------------------------------------------------------------------


def _truncate(text):
  long = tf.strings.length(text) > MAX_CONTENT_CHARS
  cut = tf.strings.substr(text, 0, MAX_CONTENT_CHARS)
  return tf.where(long, tf.strings.join([cut, "..."]), text)


def describe_bad_rows(filename, line_numbers, reasons, details, contents,
                      unit: str):
  """Vectorized ``file:line: bad row (reason: detail); <unit> content: ...``
  strings (contents truncated to ``MAX_CONTENT_CHARS``)."""
  return tf.strings.join([
      filename, ":", tf.as_string(line_numbers), ": bad row (",
      tf.gather(tf.constant(BAD_ROW_REASONS), reasons), ": ", details,
      f"); {unit} content: ", _truncate(contents)])


class ChunkChecker:
  """Applies ``on_bad_row`` ('error' | 'skip') to a chunk given its validity
  mask; skipped rows go to ``counter`` when it is given."""

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
        message = tf.strings.join([messages[0], SKIP_HINT])
        assertion = tf.debugging.Assert(tf.constant(False), [message],
                                        summarize=1)
        with tf.control_dependencies([assertion]):
          return tf.constant(0, tf.int64)
      if self.counter is None:
        return tf.constant(0, tf.int64)
      reasons, messages = describe_bad(indices)
      return tf.numpy_function(self.counter.record, [reasons, messages],
                               tf.int64, stateful=True)

    return tf.cond(any_bad, on_bad, lambda: tf.constant(0, tf.int64))


def shard_mask(line_numbers, line_shards):
  """bool mask of the lines (numbered from 1) of shard ``line_shards =
  (num_shards, index)``: line l goes to shard ``(l - 1) % num_shards``;
  all lines when ``line_shards`` is None."""
  if line_shards is None:
    return tf.ones_like(line_numbers, tf.bool)
  num_shards, index = line_shards
  return tf.equal((line_numbers - 1) % num_shards, index)


HASH_BUCKETS = 1 << 32  # row fingerprints fall in [0, HASH_BUCKETS)


def row_fingerprints(filename, line_numbers):
  """int64 [n] in ``[0, HASH_BUCKETS)``: ``Fingerprint64`` (through
  ``to_hash_bucket_fast``) of ``"<file base name>:<line number>"``.

  It depends only on the file's base name and the line (record, row) number,
  so a row's value is the same in every run, on every shard, and wherever the
  file is copied to.
  """
  base = tf.strings.regex_replace(filename, r"^.*/", "")
  keys = tf.strings.join([base, ":", tf.as_string(line_numbers)])
  return tf.strings.to_hash_bucket_fast(keys, HASH_BUCKETS)


class LineSelector:
  """Which lines (records, rows) of which files a split reads.

  ``files[i]`` contributes its lines numbered ``[first[i], end[i])`` (from 1,
  as the readers number them); with ``hash_threshold`` > 0 only those whose
  ``row_fingerprints`` value is below it (``hash_below=True``) or at least it
  (``False``) are kept; with ``shards = (num_shards, index)`` only line ``l``
  with ``(l - 1) % num_shards == index``. Parsers apply it to the row mask of
  a chunk before bad rows are checked, as for line sharding (``line_mask``),
  so a bad row outside the selection is not this split's concern.
  """

  def __init__(self, files, first, end, *, hash_threshold: int = 0,
               hash_below: bool = True, shards=None):
    self.files = tuple(files)
    self.first = tuple(int(v) for v in first)
    self.end = tuple(int(v) for v in end)
    if not len(self.files) == len(self.first) == len(self.end):
      raise ValueError("files, first and end must have the same length")
    self.hash_threshold = int(hash_threshold)
    self.hash_below = hash_below
    self.shards = shards

  def with_files(self, files) -> "LineSelector":
    """The same selection restricted to ``files`` (a subset, any order)."""
    index = {f: i for i, f in enumerate(self.files)}
    keep = [index[f] for f in files]
    return LineSelector([self.files[i] for i in keep],
                        [self.first[i] for i in keep],
                        [self.end[i] for i in keep],
                        hash_threshold=self.hash_threshold,
                        hash_below=self.hash_below, shards=self.shards)

  def with_shards(self, shards) -> "LineSelector":
    return LineSelector(self.files, self.first, self.end,
                        hash_threshold=self.hash_threshold,
                        hash_below=self.hash_below, shards=shards)

  def line_range(self, filename):
    """(first, end) int64 scalars of ``filename`` (a string tensor)."""
    match = tf.equal(tf.constant(self.files), filename)
    index = tf.argmax(tf.cast(match, tf.int32), output_type=tf.int32)
    return (tf.gather(tf.constant(self.first, tf.int64), index),
            tf.gather(tf.constant(self.end, tf.int64), index))

  def mask(self, filename, line_numbers):
    """bool [n]: which of ``line_numbers`` of ``filename`` are selected."""
    first, end = self.line_range(filename)
    keep = (line_numbers >= first) & (line_numbers < end)
    if self.hash_threshold:
      below = row_fingerprints(filename, line_numbers) < self.hash_threshold
      keep &= below if self.hash_below else ~below
    return keep & shard_mask(line_numbers, self.shards)

  def skip_outside(self, filename, chunks: tf.data.Dataset) -> tf.data.Dataset:
    """``chunks`` of ``filename`` (``(filename, first line, rows)``) without
    those wholly outside the line range, stopping after its end."""
    first, end = self.line_range(filename)
    return chunks.take_while(lambda _, start, rows: start < end).filter(
        lambda _, start, rows: start + tf.shape(rows, out_type=tf.int64)[0]
        > first)


def line_mask(filename, line_numbers, line_filter):
  """bool [n] of the lines a parser keeps: ``line_filter`` is None (all), a
  line shard ``(num_shards, index)`` (``shard_mask``) or a
  ``LineSelector``."""
  if isinstance(line_filter, LineSelector):
    return line_filter.mask(filename, line_numbers)
  return shard_mask(line_numbers, line_filter)


def shard_files(files, num_shards: int, shard_index: int,
                selector: Optional[LineSelector] = None):
  """(this shard's files, the parsers' line filter) of ``files``: by files
  (file i to shard ``i % num_shards``) when there are at least
  ``num_shards``, else every file's line l to shard ``(l - 1) %
  num_shards``; the filter is ``selector`` (restricted to the shard's files
  and lines) when given, else the line shard or None."""
  files = list(files)
  if selector is not None:
    selector = selector.with_files(files)
  line_shards = None
  if num_shards > 1:
    if len(files) >= num_shards:
      files = files[shard_index::num_shards]
      if selector is not None:
        selector = selector.with_files(files)
    else:
      line_shards = (num_shards, shard_index)
      if selector is not None:
        selector = selector.with_shards(line_shards)
  return files, (line_shards if selector is None else selector)


def keep_rows(rows, keep):
  """Rows where ``keep`` (the tensor itself when all are kept)."""
  return tf.cond(tf.reduce_all(keep), lambda: rows,
                 lambda: tf.boolean_mask(rows, keep))


# ---------------------------------------------------------------------------
# Shuffling and finishing.
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
  (measured in docs/benchmarks.md). Per-chunk seeds come from ``Dataset.random(seed,
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


def finish_pipeline(dataset: tf.data.Dataset, sharded: bool) -> tf.data.Dataset:
  """Deterministic order, no second sharding by tf.distribute, prefetch."""
  options = tf.data.Options()
  options.deterministic = True
  if sharded:
    # Sharded here already; tf.distribute must not shard again.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return dataset.with_options(options).prefetch(tf.data.AUTOTUNE)
