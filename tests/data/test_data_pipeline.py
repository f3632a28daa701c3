"""Shared pipeline parts: file patterns, bad-row counting over passes,
bad-row messages, the chunk shuffle buffer."""

from __future__ import annotations

import os

import numpy as np
import pytest

from recsys_smelu.data import pipeline
import tensorflow as tf

from conftest import small_criteo_rows, write_lines


def _messages(*rows: tuple[str, int, str]):
  return (np.array([pipeline.BAD_ROW_REASONS.index(r) for _, _, r in rows],
                   np.int32),
          np.array([f"{f}:{line}: bad row ({r}: x); line content: y".encode()
                    for f, line, r in rows]))


def test_counter_counts_distinct_rows_and_passes():
  counter = pipeline.BadRowCounter(max_examples=2)
  assert counter.summary() == "skipped 0 bad rows"
  one_pass = [("a.tsv", 3, "label"), ("a.tsv", 9, "column_count"),
              ("b.tsv", 3, "column_count")]
  assert counter.record(*_messages(*one_pass)) == 3
  assert counter.summary().startswith(
      "skipped 3 bad rows: column_count=2, label=1; first: a.tsv:3: bad row")
  for _ in range(7):
    counter.record(*_messages(*one_pass))
  assert (counter.total, counter.distinct, counter.passes) == (24, 3, 8)
  assert counter.by_reason() == {"column_count": 16, "integer_field": 0,
                                 "label": 8, "dense_field": 0, "quote": 0}
  assert counter.distinct_by_reason() == {"column_count": 2,
                                          "integer_field": 0, "label": 1,
                                          "dense_field": 0, "quote": 0}
  assert counter.summary().startswith(
      "skipped 3 distinct bad rows (24 over 8 passes): column_count=2, "
      "label=1; first: a.tsv:3: bad row (label: x)")
  assert [e.split(":")[1] for e in counter.examples] == ["3", "9"]
  counter.reset()
  assert (counter.total, counter.distinct, counter.passes) == (0, 0, 0)


def test_bad_row_error_recovers_the_message_from_a_tf_error():
  message = "f.tsv:2: bad row (label: label is [2], expected 0 or 1)"
  error = tf.errors.InvalidArgumentError(
      None, None, f"Graph execution error:\n\nassertion failed: [{message}"
      f"{pipeline.SKIP_HINT}]\n\t [[{{node Assert}}]]")
  found = pipeline.bad_row_error(error)
  assert isinstance(found, pipeline.BadRowError)
  assert str(found) == message + pipeline.SKIP_HINT
  assert pipeline.bad_row_error(ValueError("assertion failed: [x]")) is None


def test_missing_pattern_is_named(tmp_path):
  write_lines(str(tmp_path / "a.tsv"), small_criteo_rows(2))
  missing = str(tmp_path / "nope-*.tsv")
  with pytest.raises(pipeline.NoMatchingFilesError, match="nope-"):
    pipeline.expand_patterns(f"{tmp_path}/a.tsv, {missing}")
  with pytest.raises(ValueError, match="empty"):
    pipeline.expand_patterns(" ")


def test_comma_separated_patterns_keep_pattern_order(tmp_path):
  for name in ("b1.tsv", "b2.tsv", "a1.tsv"):
    write_lines(str(tmp_path / name), small_criteo_rows(1))
  files = pipeline.expand_patterns(f"{tmp_path}/b*.tsv,{tmp_path}/a*.tsv,"
                                 f"{tmp_path}/b1.tsv")
  assert [os.path.basename(f) for f in files] == ["b1.tsv", "b2.tsv", "a1.tsv"]


def test_shuffle_chunks_is_a_row_level_shuffle_buffer():
  rows = tf.reshape(tf.range(100), [100, 1])
  chunks = tf.data.Dataset.from_tensor_slices(tf.reshape(rows, [10, 10, 1]))
  out = np.concatenate(list(pipeline.shuffle_chunks(chunks, 30, seed=1)))[:, 0]
  assert sorted(out) == list(range(100))
  # A row leaves at most buffer + one chunk positions before it arrived.
  assert all(value < position + 30 + 10 for position, value in enumerate(out))
  assert not np.array_equal(out, np.arange(100))
  # Rows mix across chunks: the first 10 outputs come from several chunks.
  assert len({v // 10 for v in out[:10]}) >= 3
  # With a buffer holding everything, the first row is uniform over all rows.
  firsts = [int(next(iter(pipeline.shuffle_chunks(chunks, 1000, seed=s)))[0, 0])
            for s in range(40)]
  assert 35 < np.mean(firsts) < 65
  assert len(set(firsts)) > 20
