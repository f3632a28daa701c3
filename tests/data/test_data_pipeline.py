"""Shared pipeline parts: bad-row counting over passes, bad-row messages."""

from __future__ import annotations

import numpy as np

from recsys_smelu.data import pipeline
import tensorflow as tf


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
