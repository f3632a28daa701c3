"""Which rows of which files each split reads: row ranges and validation.

The rows of a split are those of its files concatenated in
``expand_patterns`` order (patterns in order, each sorted), numbered from 0:
TSV lines, TFRecord records, packed rows, as the files hold them (bad rows
included; they are found only while reading). From the config
(``recsys_smelu.config``, data section):

* train: ``data.train_files``, rows ``data.train_rows`` (all when empty),
  less the validation rows when they come from a fraction;
* validation, from one source (``has_validation``):
  ``data.validation_files`` (every row), or ``data.validation_fraction`` f of
  the train rows R (those of ``train_rows``) by ``data.validation_split``:
  'tail' takes the last ``ceil(f * |R|)`` rows of R (for time-ordered files),
  'hash' the rows whose ``pipeline.row_fingerprints`` value (file base name
  and line) is below ``f * HASH_BUCKETS``, about f of them, the same in every
  run and on every shard;
* eval: ``data.eval_files`` (the training files when empty), rows
  ``data.eval_rows``; rows selected from the training files must not overlap
  the train rows.

A split is a ``SplitRows``: its files and a ``pipeline.LineSelector`` that
the readers apply (None when the split reads every row of its files, as
with the default config, so nothing is counted up front). Bounds of a row
range need each file's row count (a ``RowCounter``: for Criteo formats
``readers.count_file_rows``, read once per file and process; a reader of
files with a header line gives its own, rows starting at line 2, and applies
the selector with ``pipeline.line_mask``). ``check_splits`` computes every split's row count and
raises ``ConfigError`` (naming the key) for an empty split or overlapping
train and eval rows, before a model is built. MovieLens splits are per user
(``recsys_smelu.data.movielens``); this module only counts them.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
from typing import Callable, Optional, Sequence

import ml_collections
import tensorflow as tf

from recsys_smelu.config import ConfigError
from recsys_smelu.config import resolve_row_range
from recsys_smelu.data import movielens
from recsys_smelu.data import pipeline
from recsys_smelu.data import readers
from recsys_smelu.data.pipeline import DataError

SPLITS = ("train", "validation", "eval")
_NO_END = 2**62  # a line range's end when every line of a file is taken
_HASH_COUNT_BLOCK = 1 << 20  # line numbers fingerprinted at once when counting

NO_VALIDATION = ("the config has no validation split: set "
                 "data.validation_files or data.validation_fraction "
                 "(data.validation_ratings_per_user for MovieLens)")


def has_validation(config: ml_collections.ConfigDict) -> bool:
  """Whether ``config.data`` defines a validation split."""
  d = config.data
  if d.format == "movielens":
    return d.validation_ratings_per_user > 0
  return bool(d.validation_files) or d.validation_fraction > 0


@dataclasses.dataclass(frozen=True)
class SplitRows:
  """The files of a split and the lines of them it reads (``selector``;
  None = all of them)."""
  files: tuple[str, ...]
  selector: Optional[pipeline.LineSelector]


def validation_tail_rows(fraction: float, num_rows: int) -> int:
  """``ceil(fraction * num_rows)``, with ``fraction`` taken as the decimal
  it prints as (0.7 * 10 is 7, not 8 as in binary floating point)."""
  return math.ceil(fractions.Fraction(repr(float(fraction))) * num_rows)


def hash_threshold(fraction: float) -> int:
  """Rows with fingerprint below this are the 'hash' validation rows."""
  return max(1, int(fractions.Fraction(repr(float(fraction)))
                    * pipeline.HASH_BUCKETS))


@dataclasses.dataclass(frozen=True)
class RowCounter:
  """How a file format numbers and counts its rows: ``count(path)`` = rows
  in one file, and the line number of its first row (2 below a header)."""
  count: Callable[[str], int]
  first_line: int = 1


def file_format_counter(file_format: str, width: int = 0) -> RowCounter:
  """Rows of Criteo TSV, TFRecord or packed (``width``) files."""
  return RowCounter(lambda path: readers.count_file_rows(path, file_format,
                                                         width))


def _line_ranges(counts: Sequence[int], start: int, stop: int,
                 first_line: int = 1):
  """Per file (first, end) line numbers of the rows [start, stop) of the
  files concatenated, whose row counts are ``counts``; a file's row 0 is at
  line ``first_line``."""
  first, end, offset = [], [], 0
  for n in counts:
    lo = min(max(start - offset, 0), n)
    hi = min(max(stop - offset, 0), n)
    first.append(lo + first_line)
    end.append(max(hi, lo) + first_line)
    offset += n
  return first, end


class _Resolver:
  """Resolves the splits of one config (file lists computed once)."""

  def __init__(self, config: ml_collections.ConfigDict, counter: RowCounter):
    self.config = config
    self.data = config.data
    self.counter = counter
    self._files: dict[str, tuple[str, ...]] = {}

  def files(self, key: str) -> tuple[str, ...]:
    if key not in self._files:
      pattern = self.data[key]
      if not pattern:
        raise pipeline.NoMatchingFilesError(
            f"config key 'data.{key}' is empty; give a file pattern")
      self._files[key] = tuple(pipeline.expand_patterns(pattern))
    return self._files[key]

  def counts(self, files: Sequence[str]) -> list[int]:
    return [self.counter.count(f) for f in files]

  def line_ranges(self, files: Sequence[str], start: int, stop: int):
    return _line_ranges(self.counts(files), start, stop,
                        self.counter.first_line)

  def train_range(self) -> tuple[int, int]:
    """[start, stop) of data.train_rows over the training files."""
    files = self.files("train_files")
    total = sum(self.counts(files))
    return resolve_row_range(self.data.train_rows, "data.train_rows", total,
                             f"data.train_files {self.data.train_files!r}")

  def eval_reads_train_files(self) -> bool:
    d = self.data
    if not d.eval_files:
      return True
    return bool(d.eval_rows) and self.files("eval_files") == self.files(
        "train_files")

  def split(self, split: str) -> SplitRows:
    d = self.data
    if split == "eval":
      return self._eval()
    fraction = d.validation_fraction
    if split == "validation" and d.validation_files:
      return SplitRows(self.files("validation_files"), None)
    if split == "validation" and not fraction:
      raise DataError(NO_VALIDATION)
    files = self.files("train_files")
    if not d.train_rows and not fraction:
      return SplitRows(files, None)
    if d.validation_split == "hash" and fraction:
      if d.train_rows:
        first, end = self.line_ranges(files, *self.train_range())
      else:
        first = [self.counter.first_line] * len(files)
        end = [_NO_END] * len(files)
      return SplitRows(files, pipeline.LineSelector(
          files, first, end, hash_threshold=hash_threshold(fraction),
          hash_below=split == "validation"))
    start, stop = self.train_range()
    if fraction:  # tail
      cut = stop - validation_tail_rows(fraction, stop - start)
      start, stop = (cut, stop) if split == "validation" else (start, cut)
    first, end = self.line_ranges(files, start, stop)
    return SplitRows(files, pipeline.LineSelector(files, first, end))

  def _eval(self) -> SplitRows:
    d = self.data
    if not d.eval_rows:
      return SplitRows(self.files("eval_files"), None)
    from_train = self.eval_reads_train_files()
    files = self.files("train_files" if from_train else "eval_files")
    source = ("the training files (data.eval_files is empty)"
              if not d.eval_files else f"data.eval_files {d.eval_files!r}")
    start, stop = resolve_row_range(d.eval_rows, "data.eval_rows",
                                    sum(self.counts(files)), source)
    if from_train:
      train_start, train_stop = self.train_range()
      if start < train_stop and train_start < stop:
        raise ConfigError(
            f"config key 'data.eval_rows' is {d.eval_rows!r} (rows "
            f"{start}:{stop} of the training files), which overlaps the "
            f"training rows {train_start}:{train_stop} (data.train_rows "
            f"{d.train_rows!r}): evaluation rows must not be trained on")
    first, end = self.line_ranges(files, start, stop)
    return SplitRows(files, pipeline.LineSelector(files, first, end))


def split_rows(config: ml_collections.ConfigDict, split: str,
               counter: RowCounter) -> SplitRows:
  """The files and lines of ``split``, rows counted by ``counter``
  (``file_format_counter`` for Criteo formats; a reader of files with a
  header passes its own, ``first_line=2``). Raises ConfigError for a row
  range outside its files or eval rows overlapping the train rows."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if split == "validation" and not has_validation(config):
    raise DataError(NO_VALIDATION)
  return _Resolver(config, counter).split(split)


def count_selected(rows: SplitRows, counter: RowCounter,
                   count_all: Optional[Callable[[Sequence[str]], int]] = None
                   ) -> int:
  """Rows ``rows`` reads: arithmetic on line ranges, and for a 'hash' split
  the fingerprints of the line numbers (no file is read again).
  ``count_all(files)`` counts a split without a selector (default: the sum
  of ``counter.count``)."""
  if rows.selector is None:
    if count_all is not None:
      return count_all(rows.files)
    return sum(counter.count(f) for f in rows.files)
  s = rows.selector
  total = 0
  for path, first, end in zip(s.files, s.first, s.end):
    end = min(end, counter.count(path) + counter.first_line)
    if not s.hash_threshold:
      total += max(end - first, 0)
      continue
    for lo in range(first, end, _HASH_COUNT_BLOCK):
      lines = tf.range(lo, min(lo + _HASH_COUNT_BLOCK, end), dtype=tf.int64)
      below = int(tf.reduce_sum(tf.cast(
          pipeline.row_fingerprints(tf.constant(path), lines)
          < s.hash_threshold, tf.int64)))
      total += below if s.hash_below else int(lines.shape[0]) - below
  return total


def count_rows(config: ml_collections.ConfigDict, split: str,
               counter: RowCounter,
               count_all: Optional[Callable[[Sequence[str]], int]] = None
               ) -> int:
  """Rows ``split`` reads (see the module doc), MovieLens ratings included;
  ``counter`` and ``count_all`` as for ``split_rows``/``count_selected``."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if split == "validation" and not has_validation(config):
    raise DataError(NO_VALIDATION)
  d = config.data
  if d.format == "movielens":
    return len(movielens.split_rows(d.movielens_dir, split,
                                    d.validation_ratings_per_user)["label"])
  return count_selected(split_rows(config, split, counter), counter,
                        count_all)


def check_splits(config: ml_collections.ConfigDict, counter: RowCounter,
                 count_all: Optional[Callable[[Sequence[str]], int]] = None
                 ) -> dict[str, int]:
  """Row counts ``{'train': n, 'validation': n (when there is one), 'eval':
  n}``; raises ConfigError naming the key for a row range outside its files,
  train and eval rows that overlap, or an empty split."""
  d = config.data
  counts = {split: count_rows(config, split, counter, count_all)
            for split in SPLITS
            if split != "validation" or has_validation(config)}
  if d.format == "movielens":
    source = "data.validation_ratings_per_user"
  elif d.validation_files:
    source = "data.validation_files"
  else:
    source = "data.validation_fraction"
  if counts.get("validation") == 0:
    detail = {"data.validation_files":
                  f"{d.validation_files!r} holds no rows",
              "data.validation_fraction":
                  f"{d.validation_fraction!r} with data.validation_split="
                  f"{d.validation_split!r} selects no rows of the "
                  f"{counts['train']} training rows"}.get(source, "")
    raise ConfigError(f"config key {source!r}: the validation split is empty"
                      f" ({detail})")
  if counts["train"] == 0:
    key = "data.train_rows" if d.train_rows else "data.train_files"
    if "validation" in counts and source != "data.validation_files":
      key = source
    raise ConfigError(f"config key {key!r}: the train split is empty ("
                      f"{counts.get('validation', 0)} rows went to validation)"
                      if key == source else
                      f"config key {key!r}: the train split is empty")
  if counts["eval"] == 0:
    key = "data.eval_rows" if d.eval_rows else "data.eval_files"
    raise ConfigError(f"config key {key!r}: the eval split is empty")
  return counts
