"""Tabular CSV/TSV with a header: role strings, header checks, the streamed
reader (quotes, gzip, bad rows, sharding, shuffling), vocabularies,
standardize statistics, schema.json and the role guess."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recsys_smelu.data import features
from recsys_smelu.data import pipeline
from recsys_smelu.data import readers
from recsys_smelu.data import tabular
from recsys_smelu.data.pipeline import DataError

AVAZU_HEADER = ["id", "click", "hour", "C1", "banner_pos", "site_id",
                "site_domain", "device_ip"]
AVAZU_CATEGORICAL = AVAZU_HEADER[2:]


def _write(path, lines, use_gzip=False):
  text = "".join(line + "\n" for line in lines)
  if use_gzip:
    with gzip.open(path, "wt") as f:
      f.write(text)
  else:
    with open(path, "w") as f:
      f.write(text)
  return str(path)


def _avazu_rows(n, start=0):
  """(csv lines without header, rows as lists of strings)."""
  rows = []
  for i in range(start, start + n):
    rows.append([str(10**18 + i), str(int(i % 3 == 0)), f"141021{i % 24:02d}",
                 "1005", str(i % 2), f"{(i * 2654435761) % 2**32:08x}",
                 f"d{i % 5}", "" if i % 4 == 0 else f"ip{i % 7}"])
  return [",".join(r) for r in rows], rows


def _avazu_spec(**kwargs):
  return tabular.TabularSpec.from_strings(
      label_column="click", categorical_columns=",".join(AVAZU_CATEGORICAL),
      ignore_columns="id", num_buckets=1000, **kwargs)


def _collect(dataset):
  dense, sparse, labels = [], {}, []
  for features_batch, label in dataset:
    dense.append(features_batch["dense_features"].numpy())
    for name, ids in features_batch["sparse_features"].items():
      sparse.setdefault(name, []).append(ids.numpy())
    labels.append(label.numpy())
  return (np.concatenate(dense), {k: np.concatenate(v) for k, v in sparse.items()},
          np.concatenate(labels))


def _eval(files, schema, batch_size=7, **kwargs):
  return tabular.make_dataset(files, schema, batch_size, training=False,
                              shuffle=False, **kwargs)


def _hash(values, buckets):
  return tf.strings.to_hash_bucket_fast(values, buckets).numpy()


# --- role strings and the spec ----------------------------------------------


def test_role_strings_parse_as_the_issue_says():
  assert tabular.parse_column_list("", "k") == ()
  assert tabular.parse_column_list(" hour, C1 ,site_id", "k") == (
      "hour", "C1", "site_id")
  assert tabular.parse_column_values(
      "site_id=100000,device_ip=1000000", "k") == (
          ("site_id", 100000), ("device_ip", 1000000))
  for bad in ("site_id", "site_id=", "=5", "site_id=abc", "site_id=0",
              "site_id=-3", "site_id=1.5", "a=1,a=2"):
    with pytest.raises(DataError, match="data.num_buckets_per_column"):
      tabular.parse_column_values(bad, "data.num_buckets_per_column")
  with pytest.raises(DataError, match="empty column name"):
    tabular.parse_column_list("a,,b", "data.dense_columns")
  with pytest.raises(DataError, match="'a' is named twice"):
    tabular.parse_column_list("a,b,a", "data.dense_columns")


def test_spec_rejects_a_column_in_two_roles_and_stray_bucket_entries():
  with pytest.raises(DataError, match="'hour' is in two roles: "
                     "data.dense_columns and data.categorical_columns"):
    tabular.TabularSpec.from_strings(label_column="click",
                                     dense_columns="hour",
                                     categorical_columns="hour")
  with pytest.raises(DataError, match="'site_ip' is not in "
                     "data.categorical_columns.*did you mean 'site_id'"):
    _avazu_spec(num_buckets_per_column="site_ip=10")
  with pytest.raises(DataError, match="data.label_column"):
    tabular.TabularSpec.from_strings(label_column="")
  with pytest.raises(DataError, match="data.dense_transform"):
    _avazu_spec(dense_transform="log")
  spec = _avazu_spec(num_buckets_per_column="site_id=77")
  assert spec.delimiter == ","
  assert spec.buckets_of("site_id") == 77 and spec.buckets_of("C1") == 1000
  assert tabular.TabularSpec(label_column="y", file_format="tsv").delimiter == "\t"


def test_header_column_in_no_role_is_an_error_naming_file_and_column(tmp_path):
  lines, _ = _avazu_rows(3)
  path = _write(tmp_path / "a.csv", [",".join(AVAZU_HEADER)] + lines)
  spec = tabular.TabularSpec.from_strings(
      label_column="click", ignore_columns="id",
      categorical_columns="hour,C1,banner_pos,site_id,site_domian,device_ip")
  with pytest.raises(DataError) as error:
    tabular.check_headers([path], spec)
  # The role's typo is reported first, with the header column it misses.
  assert str(error.value).startswith(
      f"{path}: data.categorical_columns names column 'site_domian', which "
      "is not in the header (did you mean 'site_domain'?)")
  spec = tabular.TabularSpec.from_strings(
      label_column="click", ignore_columns="id",
      categorical_columns="hour,C1,banner_pos,site_id,device_ip")
  with pytest.raises(DataError, match=f"{path}: header column 'site_domain' "
                     "is in no role; name it in data.dense_columns"):
    tabular.check_headers([path], spec)


def test_headers_that_differ_between_files_are_an_error(tmp_path):
  lines, _ = _avazu_rows(3)
  a = _write(tmp_path / "a.csv", [",".join(AVAZU_HEADER)] + lines)
  other = AVAZU_HEADER[:]
  other[2], other[3] = other[3], other[2]
  b = _write(tmp_path / "b.csv", [",".join(other)] + lines)
  with pytest.raises(DataError, match=f"{b}: header differs from {a}"):
    tabular.check_headers([a, b], _avazu_spec())


# --- reading -----------------------------------------------------------------


def test_avazu_shaped_csv_gives_hashed_ids_labels_and_no_dense(tmp_path):
  lines, rows = _avazu_rows(50)
  path = _write(tmp_path / "train.csv", [",".join(AVAZU_HEADER)] + lines)
  spec = _avazu_spec(num_buckets_per_column="device_ip=50")
  schema = tabular.build_schema([path], spec)
  assert schema.columns == tuple(AVAZU_HEADER)
  assert schema.features.categorical_names == tuple(AVAZU_CATEGORICAL)
  assert schema.features.dense == () and schema.features.label == "click"
  dense, sparse, labels = _collect(_eval([path], schema))
  assert dense.shape == (50, 0) and dense.dtype == np.float32
  np.testing.assert_array_equal(labels, [float(r[1]) for r in rows])
  for name in AVAZU_CATEGORICAL:
    column = AVAZU_HEADER.index(name)
    buckets = 50 if name == "device_ip" else 1000
    assert sparse[name].dtype == np.int32
    np.testing.assert_array_equal(
        sparse[name], _hash([r[column] for r in rows], buckets))


def test_gzip_tsv_and_several_files_read_like_one_plain_csv(tmp_path):
  lines, _ = _avazu_rows(30)
  header = ",".join(AVAZU_HEADER)
  plain = _write(tmp_path / "all.csv", [header] + lines)
  parts = [_write(tmp_path / "p0.csv.gz", [header] + lines[:12], True),
           _write(tmp_path / "p1.csv", [header] + lines[12:])]
  tsv = _write(tmp_path / "all.tsv.gz",
               [l.replace(",", "\t") for l in [header] + lines], True)
  schema = tabular.build_schema([plain], _avazu_spec())
  want = _collect(_eval([plain], schema))
  for files, spec in ((parts, _avazu_spec()),
                      ([tsv], _avazu_spec(file_format="tsv"))):
    got = _collect(_eval(files, tabular.build_schema(files, spec)))
    np.testing.assert_array_equal(got[2], want[2])
    for name in AVAZU_CATEGORICAL:
      np.testing.assert_array_equal(got[1][name], want[1][name])


DENSE_HEADER = "label,price,delta,city"
DENSE_LINES = ["1,3.5,-2,paris", "0,,0.25,", "1,1e3,-.5,rome",
               "0,+7,,paris", "1,0,12.75,oslo"]
PRICE = np.array([3.5, np.nan, 1e3, 7.0, 0.0])
DELTA = np.array([-2.0, 0.25, -0.5, np.nan, 12.75])


def _dense_spec(**kwargs):
  return tabular.TabularSpec.from_strings(
      label_column="label", dense_columns="price,delta",
      categorical_columns="city", num_buckets=100, **kwargs)


def test_dense_values_empty_negative_fractional_under_each_transform(tmp_path):
  path = _write(tmp_path / "d.csv", [DENSE_HEADER] + DENSE_LINES)
  raw = np.stack([PRICE, DELTA], 1)
  expected = {
      "log1p_clip0": np.log1p(np.maximum(np.nan_to_num(raw), 0)),
      "none": np.nan_to_num(raw),
  }
  mean = np.nanmean(raw, 0)
  std = np.nanstd(raw, 0)
  expected["standardize"] = np.nan_to_num((raw - mean) / std)
  for transform, want in expected.items():
    schema = tabular.build_schema([path], _dense_spec(dense_transform=transform))
    dense, sparse, labels = _collect(_eval([path], schema))
    np.testing.assert_allclose(dense, want.astype(np.float32), rtol=1e-6,
                               atol=1e-7, err_msg=transform)
    np.testing.assert_array_equal(labels, [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(
        sparse["city"], _hash(["paris", "", "rome", "paris", "oslo"], 100))


def test_standardize_statistics_match_numpy_over_many_chunks(tmp_path,
                                                             monkeypatch):
  monkeypatch.setattr(readers, "CHUNK_ROWS", 7)  # gzip: 7 lines a chunk
  rng = np.random.default_rng(3)
  values = rng.normal(50.0, 20.0, size=(100, 2)).round(3)
  values[rng.random((100, 2)) < 0.2] = np.nan
  lines = [f"{i % 2},{'' if np.isnan(a) else a},{'' if np.isnan(b) else b},c"
           for i, (a, b) in enumerate(values)]
  path = _write(tmp_path / "s.csv.gz", [DENSE_HEADER] + lines, True)
  schema = tabular.build_schema([path], _dense_spec(dense_transform="standardize"))
  # Of the values as read (float32), in float64.
  as_read = values.astype(np.float32).astype(np.float64)
  np.testing.assert_allclose(schema.dense_mean, np.nanmean(as_read, 0),
                             rtol=1e-12)
  np.testing.assert_allclose(schema.dense_std, np.nanstd(as_read, 0),
                             rtol=1e-12)


def test_rfc4180_quotes_delimiter_and_doubled_quotes_read_correctly(tmp_path):
  lines = ['1,"2.5","paris, france"', '0,,"say ""hi"""', '1,-1,""',
           '0,4,"tab\there"']
  path = _write(tmp_path / "q.csv", ["label,price,city"] + lines)
  spec = tabular.TabularSpec.from_strings(
      label_column="label", dense_columns="price", categorical_columns="city",
      num_buckets=100, dense_transform="none")
  schema = tabular.build_schema([path], spec)
  dense, sparse, labels = _collect(_eval([path], schema))
  np.testing.assert_array_equal(dense[:, 0], [2.5, 0.0, -1.0, 4.0])
  np.testing.assert_array_equal(
      sparse["city"], _hash(["paris, france", 'say "hi"', "", "tab\there"],
                            100))
  raw = next(iter(tabular.raw_dataset([path], schema)))
  assert raw["city"].numpy().tolist() == [b"paris, france", b'say "hi"', b"",
                                          b"tab\there"]
  # A quoted header is read the same way.
  quoted = _write(tmp_path / "qh.csv", ['"label","price","city"'] + lines)
  assert tabular.read_header(quoted, spec) == ("label", "price", "city")


BAD_LINES = [
    ("1,2,ok", None),
    ('1,3,"unclosed', "quote"),
    ('0,3,mid"quote', "quote"),
    ('1,"3"x,a', "quote"),
    ("1,2", "column_count"),
    ("1,2,a,b", "column_count"),
    ("2,2,a", "label"),
    ("1,abc,a", "dense_field"),
    ("0,1e39,a", "dense_field"),
    ("0,nan,a", "dense_field"),
    ("", "column_count"),
    ("0,1.5,fine", None),
]


def _bad_file(tmp_path):
  return _write(tmp_path / "bad.csv",
                ["label,price,city"] + [line for line, _ in BAD_LINES])


def _price_spec():
  return tabular.TabularSpec.from_strings(
      label_column="label", dense_columns="price", categorical_columns="city",
      num_buckets=100, dense_transform="none")


def test_bad_rows_error_names_file_line_reason_and_content(tmp_path):
  path = _bad_file(tmp_path)
  schema = tabular.build_schema([path], _price_spec())
  for number, (line, reason) in enumerate(BAD_LINES, 2):
    if reason is None:
      continue
    single = _write(tmp_path / f"one{number}.csv", ["label,price,city", line])
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
      _collect(_eval([single], schema))
    message = str(pipeline.bad_row_error(error.value))
    assert message.startswith(f"{single}:2: bad row ({reason}: "), message
    assert f"line content: {line}" in message
    # The label and dense reasons name the column and its value.
    assert {"label": "label column label is [2], expected 0 or 1",
            "dense_field": "dense column price is ["}.get(reason, "") in (
                message)
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _collect(_eval([path], schema))
  assert str(pipeline.bad_row_error(error.value)).startswith(
      f"{path}:3: bad row (quote: misplaced or unclosed \"")


def test_bad_rows_skipped_and_counted_by_reason(tmp_path):
  path = _bad_file(tmp_path)
  counter = pipeline.BadRowCounter()
  schema = tabular.build_schema([path], _price_spec())
  dense, sparse, labels = _collect(_eval([path], schema, on_bad_row="skip",
                                         bad_rows=counter))
  np.testing.assert_array_equal(dense[:, 0], [2.0, 1.5])
  np.testing.assert_array_equal(labels, [1, 0])
  counts = counter.by_reason()
  for reason in ("quote", "column_count", "label", "dense_field"):
    assert counts[reason] == sum(r == reason for _, r in BAD_LINES), reason
  assert counter.examples[0].startswith(f"{path}:3: bad row (quote")
  assert "5 columns" not in counter.summary()
  assert any("4 columns, expected 3" in e for e in counter.examples)


def test_count_rows_leaves_out_the_headers(tmp_path):
  header = ",".join(AVAZU_HEADER)
  files = [_write(tmp_path / "a.csv", [header] + _avazu_rows(9)[0]),
           _write(tmp_path / "b.csv.gz", [header] + _avazu_rows(4)[0], True)]
  assert tabular.count_rows(files, _avazu_spec()) == 13
  headless = _write(tmp_path / "c.tsv", DENSE_LINES)
  assert tabular.count_rows([headless], _dense_spec(
      file_format="tsv", header=False,
      column_names="label,price,delta,city")) == 5


def test_line_shards_are_disjoint_and_cover_the_file(tmp_path):
  lines, rows = _avazu_rows(41)
  path = _write(tmp_path / "a.csv", [",".join(AVAZU_HEADER)] + lines)
  schema = tabular.build_schema([path], _avazu_spec())
  labels = []
  site_ids = []
  for index in range(3):
    _, sparse, label = _collect(_eval([path], schema, num_shards=3,
                                      shard_index=index))
    labels.append(label)
    site_ids.append(sparse["site_id"])
  # Line l (the header is line 1) goes to shard (l - 1) % 3.
  want = _hash([r[5] for r in rows], 1000)
  for index in range(3):
    np.testing.assert_array_equal(site_ids[index],
                                  want[(np.arange(41) + 1) % 3 == index])
  assert sum(len(l) for l in labels) == 41


def test_input_context_shards_files_and_batches_per_replica(tmp_path):
  header = ",".join(AVAZU_HEADER)
  files = []
  for i in range(2):
    lines, _ = _avazu_rows(20, 20 * i)
    files.append(_write(tmp_path / f"p{i}.csv", [header] + lines))
  schema = tabular.build_schema(files, _avazu_spec())
  context = tf.distribute.InputContext(num_input_pipelines=2,
                                       input_pipeline_id=1,
                                       num_replicas_in_sync=2)
  dataset = tabular.make_dataset(files, schema, 8, training=False,
                                 shuffle=False, input_context=context)
  batches = list(dataset)
  assert [int(b[1].shape[0]) for b in batches] == [4] * 5
  _, want_sparse, _ = _collect(_eval(files[1:], schema))
  np.testing.assert_array_equal(
      np.concatenate([b[0]["sparse_features"]["site_id"] for b in batches]),
      want_sparse["site_id"])


def test_training_shuffle_is_seeded_and_keeps_every_row(tmp_path):
  header = ",".join(AVAZU_HEADER)
  files = [_write(tmp_path / f"p{i}.csv", [header] + _avazu_rows(30, 30 * i)[0])
           for i in range(3)]
  schema = tabular.build_schema(files, _avazu_spec())

  def order(seed):
    dataset = tabular.make_dataset(files, schema, 10, shuffle=True,
                                   shuffle_buffer=50, seed=seed)
    return _collect(dataset)[1]["site_id"]

  first, again, other = order(1), order(1), order(2)
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)
  _, in_order, _ = _collect(_eval(files, schema))
  assert sorted(first.tolist()) == sorted(in_order["site_id"].tolist())
  assert not np.array_equal(first, in_order["site_id"])


# --- vocabularies and schema.json -------------------------------------------


def test_vocabulary_from_counts_keeps_values_seen_min_count_times(tmp_path):
  cities = ["paris"] * 4 + ["rome"] * 2 + ["oslo"] * 2 + ["lima"] + [""] * 3
  lines = [f"{i % 2},1,{c}" for i, c in enumerate(cities)]
  path = _write(tmp_path / "v.csv", ["label,price,city"] + lines)
  spec = tabular.TabularSpec.from_strings(
      label_column="label", dense_columns="price", categorical_columns="city",
      vocabulary_columns="city", vocab_min_count=2)
  schema = tabular.build_schema([path], spec)
  city = schema.features.categorical[0]
  # Most frequent first, ties by value; "lima" (1) and "" (missing) left out.
  assert city.vocabulary == ("paris", "oslo", "rome")
  assert city.num_buckets == 4
  _, sparse, _ = _collect(_eval([path], schema))
  position = {"paris": 1, "oslo": 2, "rome": 3}
  np.testing.assert_array_equal(sparse["city"],
                                [position.get(c, 0) for c in cities])


def test_vocabulary_file_and_schema_json_round_trip(tmp_path):
  vocabulary = _write(tmp_path / "city.txt", ["rome", "paris"])
  path = _write(tmp_path / "d.csv", [DENSE_HEADER] + DENSE_LINES)
  spec = _dense_spec(dense_transform="standardize",
                     vocabulary_files=f"city={vocabulary}")
  schema = tabular.build_schema([path], spec)
  assert schema.features.categorical[0].vocabulary == ("rome", "paris")
  written = tabular.save_schema(schema, str(tmp_path))
  assert written == str(tmp_path / "schema.json")
  with open(written) as f:
    description = json.load(f)
  assert description["label_column"] == "label"
  assert description["categorical"][0]["vocabulary"] == ["rome", "paris"]
  assert description["dense"][0]["mean"] == pytest.approx(np.nanmean(PRICE))
  assert tabular.load_schema(str(tmp_path)) == schema
  description["version"] = 99
  with open(written, "w") as f:
    json.dump(description, f)
  with pytest.raises(DataError, match=f"{written}: format"):
    tabular.load_schema(written)


# --- guessing roles (recsys-smelu-infer-schema) -----------------------------


def test_guess_roles_of_an_avazu_shaped_file(tmp_path):
  lines, _ = _avazu_rows(40)
  path = _write(tmp_path / "avazu.csv.gz", [",".join(AVAZU_HEADER)] + lines,
                True)
  roles = tabular.guess_roles(path)
  assert roles.label_column == "click" and roles.ignore_columns == ("id",)
  assert roles.dense_columns == ("hour", "C1", "banner_pos")
  assert roles.categorical_columns == ("site_id", "site_domain", "device_ip")
  assert roles.rows == 40 and roles.dense_transform == "log1p_clip0"
  snippet = tabular.config_snippet(path, roles)
  assert "--config.data.label_column=click \\" in snippet
  assert ("--config.data.categorical_columns=site_id,site_domain,device_ip \\"
          in snippet)
  assert snippet.endswith("--config.data.dense_transform=log1p_clip0")
  # The guessed roles account for every header column.
  tabular.check_headers([path], tabular.TabularSpec(
      label_column=roles.label_column, dense_columns=roles.dense_columns,
      categorical_columns=roles.categorical_columns,
      ignore_columns=roles.ignore_columns))


def test_guess_roles_negative_dense_and_no_label(tmp_path):
  path = _write(tmp_path / "x.tsv", ["score\ttemp\tcolor", "1\t-2.5\tred",
                                     "0\t3\tblue"])
  roles = tabular.guess_roles(path)
  assert roles.file_format == "tsv" and roles.delimiter == "\t"
  # "score" is 0/1 but not named like a label: dense, and the note says so.
  assert roles.label_column == "" and roles.dense_columns == ("score", "temp")
  assert roles.dense_transform == "standardize"
  snippet = tabular.config_snippet(path, roles)
  assert "--config.data.delimiter=$'\\t' \\" in snippet
  assert "no 0/1 column named like a label" in snippet


def test_infer_schema_command_prints_the_snippet(tmp_path):
  lines, _ = _avazu_rows(5)
  path = _write(tmp_path / "a.csv", [",".join(AVAZU_HEADER)] + lines)
  command = [sys.executable, "-m", "recsys_smelu.data.infer_schema"]
  result = subprocess.run(command + [path, "--sample_rows=3"],
                          capture_output=True, text=True, check=True)
  assert result.stdout.startswith(
      f"# Guessed from the header and 3 rows of {path}")
  assert "--config.data.format=csv \\" in result.stdout


def test_log1p_clip0_inputs_equal_the_shared_raw_to_model_inputs(tmp_path):
  path = _write(tmp_path / "d.csv", [DENSE_HEADER] + DENSE_LINES)
  schema = tabular.build_schema([path], _dense_spec())
  raw = next(iter(tabular.raw_dataset([path], schema)))
  ours = tabular.model_inputs(raw, schema)
  shared = features.raw_to_model_inputs(raw, schema.features)
  np.testing.assert_array_equal(ours["dense_features"].numpy(),
                                shared["dense_features"].numpy())
  np.testing.assert_array_equal(ours["sparse_features"]["city"].numpy(),
                                shared["sparse_features"]["city"].numpy())


def test_crlf_lines_and_a_tsv_without_header(tmp_path):
  crlf = tmp_path / "crlf.csv"
  crlf.write_bytes(("\r\n".join([DENSE_HEADER] + DENSE_LINES) + "\r\n"
                    ).encode())
  gz = tmp_path / "crlf.csv.gz"
  gz.write_bytes(gzip.compress(crlf.read_bytes()))
  plain = _write(tmp_path / "d.csv", [DENSE_HEADER] + DENSE_LINES)
  want = _collect(_eval([plain], tabular.build_schema([plain], _dense_spec())))
  for path in (str(crlf), str(gz)):
    got = _collect(_eval([path], tabular.build_schema([path], _dense_spec())))
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1]["city"], want[1]["city"])
  headless = _write(tmp_path / "d.tsv",
                    [l.replace(",", "\t") for l in DENSE_LINES])
  spec = _dense_spec(file_format="tsv", header=False,
                     column_names="label,price,delta,city")
  got = _collect(_eval([headless], tabular.build_schema([headless], spec)))
  np.testing.assert_array_equal(got[0], want[0])
  np.testing.assert_array_equal(got[2], want[2])


def test_a_quoted_field_spanning_lines_is_two_quote_rows(tmp_path):
  path = _write(tmp_path / "m.csv",
                ["label,price,city", '1,2,"two', 'lines"', "0,1,ok"])
  counter = pipeline.BadRowCounter()
  schema = tabular.build_schema([path], _price_spec())
  _, sparse, labels = _collect(_eval([path], schema, on_bad_row="skip",
                                     bad_rows=counter))
  np.testing.assert_array_equal(labels, [0])
  assert counter.by_reason()["quote"] == 2


def test_guess_roles_of_a_missing_file_names_it(tmp_path):
  with pytest.raises(DataError, match="nope.csv: no such file"):
    tabular.guess_roles(str(tmp_path / "nope.csv"))


def test_standardize_of_a_constant_or_empty_column_is_zero(tmp_path):
  path = _write(tmp_path / "c.csv", ["label,price,delta,city", "1,5,,a",
                                     "0,5,,b"])
  schema = tabular.build_schema([path], _dense_spec(
      dense_transform="standardize"))
  assert schema.dense_mean == (5.0, 0.0) and schema.dense_std == (1.0, 1.0)
  dense, _, _ = _collect(_eval([path], schema))
  np.testing.assert_array_equal(dense, np.zeros((2, 2), np.float32))


def test_bad_row_error_quotes_the_row_as_the_file_holds_it():
  # tf.debugging.Assert C-escapes its message; bad_row_error undoes it.
  message = ('assertion failed: [a.csv:4: bad row (quote: x); line content: '
             '1,\\"b\\\\c\\tdé\\\'d\\001'
             f'{pipeline.SKIP_HINT}]')
  error = pipeline.bad_row_error(tf.errors.InvalidArgumentError(
      None, None, message))
  assert str(error) == ('a.csv:4: bad row (quote: x); line content: '
                        '1,"b\\c\tdé\'d\x01' + pipeline.SKIP_HINT)


@pytest.mark.parametrize("use_gzip", [False, True])
def test_header_reads_despite_bad_utf8_in_the_rows_after_it(tmp_path,
                                                            use_gzip):
  """Only the header is decoded to read it; an invalid byte in an early
  row is the bad row's business (reason and line from the reader)."""
  data = b"\xef\xbb\xbfclick,site\n1,a\xff\n0,b\n"
  path = tmp_path / ("rows.csv.gz" if use_gzip else "rows.csv")
  path.write_bytes(gzip.compress(data) if use_gzip else data)
  spec = tabular.TabularSpec.from_strings(label_column="click",
                                          categorical_columns="site")
  assert tabular.read_header(str(path), spec) == ("click", "site")
  bad = tmp_path / "bad_header.csv"
  bad.write_bytes(b"click,s\xffte\n1,a\n")
  with pytest.raises(tabular.DataError, match="bad_header.csv: cannot read "
                     "the header"):
    tabular.read_header(str(bad), spec)
