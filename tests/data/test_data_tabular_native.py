"""The tabular reader's native decoder (``PackDelimitedRows`` / ``Text``,
and ``DecodeDelimitedRows`` / ``Text`` with vocabularies) against its
stock-op path: the same batches (bit
for bit), the same bad rows with the same reasons and messages, on CSV and
TSV files with a header holding quotes, empty, negative and fractional dense
values, non-ASCII text and bad rows; and the stock path alone with the native
ops switched off. (Invalid UTF-8 bytes are compared line by line in
tests/test_native.py.)"""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import tensorflow as tf

from conftest import require_native_compiler
from recsys_smelu import native
from recsys_smelu.data import pipeline
from recsys_smelu.data import readers
from recsys_smelu.data import tabular

HEADER = ["id", "label", "price", "delta", "city", "site"]
# (fields after id, valid?) in file order: a row is id,label,price,delta,
# city,site; ``None`` marks a raw line written as it stands.
ROWS = [
    '1,2.5,-3,paris,s1',
    '0,,0.125,"lyon, fr",s2',            # empty dense; delimiter in quotes
    '"1",1e3,-.5,"say ""hi""",""',       # quoted label; doubled quotes
    '0,+7.,1E-02,é,s3',                  # non-ASCII (valid UTF-8)
    '1,00012.5000,-0,x,"s,4"',
    '0,123456789012345678901234567890,1.000000000000000000001,y,s5',
    '1,3.4028234663852886e38,1e-45,z,s6',   # float32 max; a subnormal
    '0,0.1,0.3,"",s7',
    '1,3.5e38,1,big,s8',                 # dense beyond float32: bad
    '2,1,1,bad label,s9',                # label: bad
    '1,1,1,"unclosed,s10',               # quote: bad
    '1,1,1,mis"placed,s11',              # quote: bad
    '1,1,1,"a"b,s12',                    # quote: bad (text after quote)
    '1,1,1,too,many,s13',                # column_count: bad
    '1,1,1,few',                         # column_count: bad
    '1,abc,1,x,s14',                     # dense_field: bad
    '1,1e123,1,x,s15',                   # dense_field: 3-digit exponent
    '1,.,1,x,s16',                       # dense_field
    '0,-1.5e-3,9,"w""z,s17',             # quote: bad (never closed)
    '0,5,6,été,s18',                    # valid UTF-8 again
    None,                                # an empty line: column_count
]


def _lines(delimiter: str):
  lines = [delimiter.join(HEADER)]
  for number, row in enumerate(ROWS):
    if row is None:
      lines.append("")
      continue
    text = f"{number},{row}"
    if delimiter != ",":
      # Same rows with the other delimiter: swap it with commas, so quoted
      # fields keep their commas as plain characters.
      text = text.replace(",", "\0").replace(delimiter, ",").replace(
          "\0", delimiter)
    lines.append(text)
  return lines


def _write(path, lines, *, crlf=False, use_gzip=False, repeat=1):
  end = "\r\n" if crlf else "\n"
  body = end.join(lines[1:]) + end
  data = (lines[0] + end + body * repeat).encode()
  if use_gzip:
    data = gzip.compress(data)
  with open(path, "wb") as f:
    f.write(data)
  return str(path)


def _spec(file_format="csv", **kwargs):
  return tabular.TabularSpec.from_strings(
      label_column="label", dense_columns="price,delta",
      categorical_columns="city,site", ignore_columns="id",
      file_format=file_format, num_buckets=997, **kwargs)


def _read(path, schema, native_decoder, **kwargs):
  counter = pipeline.BadRowCounter(max_examples=100)
  batches = []
  for features_batch, label in tabular.make_dataset(
      [path], schema, 5, training=False, shuffle=False, on_bad_row="skip",
      bad_rows=counter, native_decoder=native_decoder, **kwargs):
    batches.append((
        features_batch["dense_features"].numpy().view(np.int32),
        {k: v.numpy() for k, v in features_batch["sparse_features"].items()},
        label.numpy().view(np.int32)))
  return batches, counter


@pytest.fixture(scope="module")
def ops():
  require_native_compiler()
  return native.load(required=True)


@pytest.fixture
def small_blocks(monkeypatch):
  """Blocks of 64 bytes, so that lines cross block boundaries."""
  monkeypatch.setattr(readers, "BLOCK_BYTES", 64)


@pytest.mark.parametrize("case", [
    "csv", "tsv", "csv_crlf", "csv_gzip", "csv_standardize",
    "csv_standardize_vocab", "csv_line_shard", "csv_small_blocks"])
def test_native_and_stock_paths_give_identical_batches_and_bad_rows(
    ops, tmp_path, monkeypatch, case):
  del ops
  delimiter = "\t" if case == "tsv" else ","
  if case == "csv_small_blocks":
    monkeypatch.setattr(readers, "BLOCK_BYTES", 64)
  name = ("rows.tsv" if case == "tsv" else "rows.csv") + (
      ".gz" if case == "csv_gzip" else "")
  path = _write(tmp_path / name,
                _lines(delimiter), crlf=case == "csv_crlf",
                use_gzip=case == "csv_gzip", repeat=3)
  kwargs = {}
  if case == "csv_standardize_vocab":  # hashes from the op, stock lookups
    spec = _spec(dense_transform="standardize", vocabulary_columns="site")
  elif case == "csv_standardize":  # packed rows from the op
    spec = _spec(dense_transform="standardize")
  else:
    spec = _spec("tsv" if case == "tsv" else "csv")
  if case == "csv_line_shard":
    kwargs = dict(num_shards=2, shard_index=1)
  schema = tabular.build_schema([path], spec, on_bad_row="skip")
  got, got_bad = _read(path, schema, True, **kwargs)
  want, want_bad = _read(path, schema, False, **kwargs)
  assert len(got) == len(want) and want
  for (g_dense, g_sparse, g_label), (w_dense, w_sparse, w_label) in zip(
      got, want):
    np.testing.assert_array_equal(g_dense, w_dense)
    np.testing.assert_array_equal(g_label, w_label)
    assert g_sparse.keys() == w_sparse.keys()
    for name in w_sparse:
      np.testing.assert_array_equal(g_sparse[name], w_sparse[name])
  assert got_bad.by_reason() == want_bad.by_reason()
  assert sorted(got_bad.examples) == sorted(want_bad.examples)
  if case != "csv_line_shard":
    counts = want_bad.distinct_by_reason()
    assert counts["quote"] == 3 * 4 and counts["column_count"] == 3 * 3
    assert counts["label"] == 3 * 1 and counts["dense_field"] == 3 * 4
    assert sum(len(b[2]) for b in want) == 3 * len(VALID_LABELS)


VALID_DENSE = [[2.5, -3], [0, 0.125], [1000, -0.5], [7, 0.01], [12.5, -0.0],
               [1.2345678901234568e29, 1], [3.4028234663852886e38, 0],
               [0.1, 0.3], [5, 6]]
# dense_transform none: missing -> 0; the subnormal 1e-45 reads as such but
# TensorFlow's kernels flush it to 0 in the transform, on both paths.
VALID_LABELS = [1, 0, 1, 0, 1, 0, 1, 0, 0]
VALID_CITY = ["paris", "lyon, fr", 'say "hi"', "é", "x", "y", "z", "", "été"]
VALID_SITE = ["s1", "s2", "", "s3", "s,4", "s5", "s6", "s7", "s18"]


def _check_values(batches, counter):
  dense = np.concatenate([b[0] for b in batches]).view(np.float32)
  labels = np.concatenate([b[2] for b in batches]).view(np.float32)
  np.testing.assert_array_equal(dense, np.array(VALID_DENSE, np.float32))
  np.testing.assert_array_equal(labels, VALID_LABELS)
  for name, values in (("city", VALID_CITY), ("site", VALID_SITE)):
    ids = np.concatenate([b[1][name] for b in batches])
    np.testing.assert_array_equal(
        ids, tf.strings.to_hash_bucket_fast(values, 997).numpy(), name)
  assert counter.distinct_by_reason() == {
      "column_count": 3, "integer_field": 0, "label": 1, "dense_field": 4,
      "quote": 4}


def test_native_decoder_values_are_the_documented_ones(ops, tmp_path,
                                                       small_blocks):
  del ops, small_blocks
  path = _write(tmp_path / "rows.csv", _lines(","))
  schema = tabular.build_schema([path], _spec(dense_transform="none"),
                                on_bad_row="skip")
  _check_values(*_read(path, schema, True))


def test_stock_path_alone_with_native_ops_switched_off(tmp_path, monkeypatch):
  monkeypatch.setenv(native.ENV_SWITCH, "0")
  assert native.load() is None
  path = _write(tmp_path / "rows.csv", _lines(","))
  schema = tabular.build_schema([path], _spec(dense_transform="none"),
                                on_bad_row="skip")
  _check_values(*_read(path, schema, None))
