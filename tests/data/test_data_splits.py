"""Validation split, row ranges and row counts of the data config.

Rows come from ``small_criteo_rows``: row k has I1 = k, so the dense feature
``log(1 + k)`` names the row each example came from, and every expected
split below is written out by hand.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu import native
from recsys_smelu.data import convert
from recsys_smelu.data import features
from recsys_smelu.data import movielens
from recsys_smelu.data import pipeline
from recsys_smelu.data import splits
import tensorflow as tf

from conftest import require_native_compiler, small_criteo_rows, write_lines


@pytest.fixture(params=["native", "stock"])
def tsv_decoder(request, monkeypatch):
  if request.param == "native":
    require_native_compiler()
  monkeypatch.setenv(native.ENV_SWITCH,
                     "1" if request.param == "native" else "0")
  return request.param


def _row_ids(dataset) -> list[int]:
  """The I1 value (= row number k of ``small_criteo_rows``) of each example."""
  ids = [np.expm1(f[features.DENSE_KEY].numpy()[:, 0]) for f, _ in dataset]
  return np.rint(np.concatenate(ids)).astype(int).tolist() if ids else []


def _config(**changes):
  base = {"data.num_dense": 2, "data.num_categorical": 3,
          "data.num_buckets": 50, "data.shuffle_buffer": 0}
  base.update(changes)
  return config_lib.validate(config_lib.override(config_lib.default_config(),
                                                 base))


def _ids(config, split, batch_size=1, **kwargs):
  return _row_ids(data_lib.build_dataset(config, split, batch_size, **kwargs))


def _two_files(tmp_path, suffix=".tsv"):
  """x-1 holds rows 0..6, x-2 rows 100..104; the pattern lists x-2 first, so
  the training rows in pattern order are 100..104, 0..6 (12 rows)."""
  one = write_lines(str(tmp_path / f"x-1{suffix}"), small_criteo_rows(7))
  two = write_lines(str(tmp_path / f"x-2{suffix}"), small_criteo_rows(5, 100))
  return f"{two},{one}"


ORDER = [100, 101, 102, 103, 104, 0, 1, 2, 3, 4, 5, 6]


# --- validation_files ------------------------------------------------------


def test_validation_files_are_read_in_order_never_shuffled(tmp_path):
  train = write_lines(str(tmp_path / "train.tsv"), small_criteo_rows(8))
  write_lines(str(tmp_path / "val-a.tsv"), small_criteo_rows(3, 100))
  write_lines(str(tmp_path / "val-b.tsv"), small_criteo_rows(2, 200))
  config = _config(**{"data.train_files": train, "data.eval_files": train,
                      "data.validation_files": str(tmp_path / "val-*.tsv")})
  assert data_lib.has_validation(config)
  assert data_lib.count_rows(config, "validation") == 5
  assert _ids(config, "validation", 2) == [100, 101, 102, 200, 201]
  assert _ids(config, "train", shuffle=False) == list(range(8))
  with pytest.raises(ValueError, match="validation split is never shuffled"):
    data_lib.build_dataset(config, "validation", 2, shuffle=True)


def test_no_validation_split_by_default(tmp_path):
  train = write_lines(str(tmp_path / "train.tsv"), small_criteo_rows(4))
  config = _config(**{"data.train_files": train, "data.eval_files": train})
  assert not data_lib.has_validation(config)
  with pytest.raises(data_lib.DataError, match="no validation split"):
    data_lib.build_dataset(config, "validation", 2)
  with pytest.raises(data_lib.DataError, match="no validation split"):
    data_lib.count_rows(config, "validation")
  assert data_lib.check_splits(config) == {"train": 4, "eval": 4}


def test_default_config_selects_no_lines(tmp_path):
  """Defaults read every row of the files exactly as before: no selector,
  nothing counted up front."""
  pattern = _two_files(tmp_path)
  config = _config(**{"data.train_files": pattern, "data.eval_files": pattern,
                      "data.validation_files": pattern})
  for split in splits.SPLITS:
    rows = splits.split_rows(config, split, splits.file_format_counter("tsv"))
    assert rows.selector is None
    assert list(rows.files) == data_lib.expand_patterns(pattern)
  assert _ids(config, "eval") == ORDER


# --- validation_fraction, tail ---------------------------------------------


def _tail_config(pattern, **changes):
  return _config(**{"data.train_files": pattern, "data.eval_files": pattern,
                    "data.validation_fraction": 0.3, **changes})


def test_tail_takes_the_last_rows_across_files_in_pattern_order(
    tmp_path, tsv_decoder):
  del tsv_decoder  # both decoders
  config = _tail_config(_two_files(tmp_path))
  # ceil(0.3 * 12) = 4: the last 4 rows in pattern order, all in x-1.
  assert _ids(config, "validation") == [3, 4, 5, 6]
  assert _ids(config, "train", shuffle=False) == [100, 101, 102, 103, 104,
                                                  0, 1, 2]
  shuffled = _ids(config, "train", seed=3, shuffle=True)
  assert sorted(shuffled) == [0, 1, 2, 100, 101, 102, 103, 104]
  assert data_lib.check_splits(config) == {"train": 8, "validation": 4,
                                           "eval": 12}
  # Across the file boundary: ceil(0.6 * 12) = 8 -> 104 and all of x-1.
  config = _tail_config(_two_files(tmp_path), **{
      "data.validation_fraction": 0.6})
  assert _ids(config, "validation") == [104, 0, 1, 2, 3, 4, 5, 6]
  assert _ids(config, "train", shuffle=False) == [100, 101, 102, 103]


def test_tail_count_is_exact_decimal_ceiling():
  assert splits.validation_tail_rows(0.7, 10) == 7  # 0.7 * 10 > 7 in binary
  assert splits.validation_tail_rows(0.1, 8000) == 800
  assert splits.validation_tail_rows(0.1, 8001) == 801
  assert splits.validation_tail_rows(0.3, 1) == 1


@pytest.mark.parametrize("file_format", ["tsv.gz", "tfrecord", "packed"])
def test_tail_in_every_file_format(tmp_path, file_format):
  pattern = _two_files(tmp_path, ".tsv.gz" if file_format == "tsv.gz"
                       else ".tsv")
  changes = {}
  if file_format != "tsv.gz":
    schema = features.criteo_schema(num_buckets=50, embedding_dim=8,
                                    num_dense=2, num_categorical=3)
    files = []
    for name in ("x-2", "x-1"):  # keep the pattern order: x-2 first
      out = str(tmp_path / file_format / name)
      write = (convert.convert_packed if file_format == "packed"
               else convert.convert)
      write(str(tmp_path / f"{name}.tsv"), out, schema=schema)
      files.append(os.path.join(out, "part-*"))
    pattern = ",".join(files)
    changes["data.format"] = file_format
  config = _tail_config(pattern, **changes)
  assert data_lib.count_rows(config, "validation") == 4
  assert data_lib.count_rows(config, "train") == 8
  assert _ids(config, "validation", 3) == [3, 4, 5, 6]
  assert _ids(config, "train", shuffle=False) == ORDER[:8]


def test_tail_comes_from_within_train_rows(tmp_path):
  config = _tail_config(_two_files(tmp_path), **{
      "data.train_rows": "2:10", "data.validation_fraction": 0.25,
      "data.eval_rows": "10:", "data.eval_files": ""})
  # train_rows 2:10 = 102..104, 0..4; ceil(0.25 * 8) = 2 -> 3, 4.
  assert _ids(config, "validation") == [3, 4]
  assert _ids(config, "train", shuffle=False) == [102, 103, 104, 0, 1, 2]
  assert _ids(config, "eval") == [5, 6]
  assert data_lib.check_splits(config) == {"train": 6, "validation": 2,
                                           "eval": 2}


def test_tail_split_shards_are_disjoint_and_complete(tmp_path):
  """Line shards (one file) and file shards (two files) both keep exactly
  the train rows."""
  one = write_lines(str(tmp_path / "one.tsv"), small_criteo_rows(10))
  # ceil(0.2 * 10) = 2 and ceil(0.2 * 12) = 3 validation rows.
  for pattern, train, validation in (
      (one, list(range(8)), [8, 9]),
      (_two_files(tmp_path), ORDER[:9], [4, 5, 6])):
    config = _tail_config(pattern, **{"data.validation_fraction": 0.2})
    assert _ids(config, "validation") == validation
    shards = [_ids(config, "train", shuffle=False,
                   input_context=tf.distribute.InputContext(2, i, 1))
              for i in range(2)]
    assert not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == sorted(train)


def test_bad_rows_belong_to_the_split_that_reads_them(tmp_path):
  lines = small_criteo_rows(10)
  lines[9] = "2\t1\t2\tx\ty\tz"  # label 2: a bad row, in the validation tail
  path = write_lines(str(tmp_path / "bad.tsv"), lines)
  config = _tail_config(path, **{"data.validation_fraction": 0.2})
  assert _ids(config, "train", shuffle=False) == list(range(8))
  with pytest.raises(tf.errors.InvalidArgumentError) as error:
    _ids(config, "validation")
  assert f"{path}:10: bad row (label" in str(data_lib.bad_row_error(
      error.value))


# --- validation_fraction, hash ---------------------------------------------


def _fingerprint_below(name: str, lines, fraction: float) -> list[bool]:
  """The spec, independently: Fingerprint64("name:line") mod 2^32 < f 2^32."""
  keys = tf.constant([f"{name}:{line}" for line in lines])
  values = tf.strings.to_hash_bucket_fast(keys, 2**32).numpy()
  return (values < int(fraction * 2**32)).tolist()


def test_hash_split_is_the_fingerprint_rule_disjoint_and_about_f(tmp_path):
  a = write_lines(str(tmp_path / "h-a.tsv"), small_criteo_rows(1500))
  b = write_lines(str(tmp_path / "h-b.tsv"), small_criteo_rows(1000, 5000))
  config = _config(**{"data.train_files": str(tmp_path / "h-*.tsv"),
                      "data.eval_files": a,
                      "data.validation_fraction": 0.2,
                      "data.validation_split": "hash"})
  expected = (
      [k for k, v in zip(range(1500), _fingerprint_below(
          "h-a.tsv", range(1, 1501), 0.2)) if v]
      + [5000 + k for k, v in zip(range(1000), _fingerprint_below(
          "h-b.tsv", range(1, 1001), 0.2)) if v])
  validation = _ids(config, "validation", 64)
  assert validation == expected
  assert abs(len(validation) - 500) < 90  # 4.5 sd of Binomial(2500, 0.2)
  full_train = _ids(config, "train", 1, shuffle=False)
  assert sorted(full_train + validation) == sorted(
      list(range(1500)) + list(range(5000, 6000)))
  assert data_lib.count_rows(config, "validation") == len(validation)
  assert data_lib.count_rows(config, "train") == len(full_train)
  # Deterministic, and the same rows on every line shard and wherever the
  # files are copied to (the key is the file's base name and line).
  assert _ids(config, "validation", 64) == validation
  moved = tmp_path / "elsewhere"
  moved.mkdir()
  shutil.copy(a, moved / "h-a.tsv")
  shutil.copy(b, moved / "h-b.tsv")
  moved_config = config_lib.override(config, {
      "data.train_files": str(moved / "h-*.tsv")})
  assert _ids(moved_config, "validation", 64) == validation
  one_file = config_lib.override(config, {"data.train_files": a})
  shards = [_ids(one_file, "validation", 8,
                 input_context=tf.distribute.InputContext(3, i, 1))
            for i in range(3)]
  assert sorted(sum(shards, [])) == [k for k in validation if k < 1500]


def test_hash_split_within_train_rows(tmp_path):
  path = write_lines(str(tmp_path / "r.tsv"), small_criteo_rows(400))
  config = _config(**{"data.train_files": path, "data.eval_rows": "300:",
                      "data.train_rows": ":300",
                      "data.validation_fraction": 0.5,
                      "data.validation_split": "hash"})
  below = _fingerprint_below("r.tsv", range(1, 301), 0.5)
  assert _ids(config, "validation", 16) == [k for k in range(300) if below[k]]
  assert _ids(config, "train", shuffle=False) == [
      k for k in range(300) if not below[k]]
  assert _ids(config, "eval", 16) == list(range(300, 400))


# --- row ranges --------------------------------------------------------------


@pytest.mark.parametrize("train_rows,eval_rows,train,evaluation", [
    ("0:8", "8:12", ORDER[:8], ORDER[8:]),
    (":8", "-4:", ORDER[:8], ORDER[8:]),
    ("3:6", "9:11", ORDER[3:6], ORDER[9:11]),
    ("-2:", ":5", ORDER[-2:], ORDER[:5]),
])
def test_row_ranges_over_the_training_files(tmp_path, train_rows, eval_rows,
                                            train, evaluation):
  pattern = _two_files(tmp_path)
  # eval_files empty or the training files: the same rows.
  for eval_files in ("", pattern) if train_rows == "0:8" else ("",):
    config = _config(**{"data.train_files": pattern,
                        "data.eval_files": eval_files,
                        "data.train_rows": train_rows,
                        "data.eval_rows": eval_rows})
    assert _ids(config, "train", shuffle=False) == train
    assert _ids(config, "eval", 3) == evaluation
    assert data_lib.check_splits(config) == {"train": len(train),
                                             "eval": len(evaluation)}


def test_eval_rows_of_separate_eval_files(tmp_path):
  train = write_lines(str(tmp_path / "train.tsv"), small_criteo_rows(4))
  evaluation = write_lines(str(tmp_path / "eval.tsv"),
                           small_criteo_rows(6, 50))
  config = _config(**{"data.train_files": train, "data.eval_files": evaluation,
                      "data.eval_rows": "1:4"})
  assert _ids(config, "eval") == [51, 52, 53]
  assert _ids(config, "train", shuffle=False) == [0, 1, 2, 3]


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("changes,match", [
    ({"data.train_rows": "0:13"},
     r"'data.train_rows' is '0:13', outside .*hold 12 rows \(0:12\)"),
    ({"data.train_rows": "-13:"}, r"'data.train_rows' is '-13:'.*12 rows"),
    ({"data.train_rows": "5:5"}, r"'data.train_rows' is '5:5'.*no rows"),
    ({"data.eval_rows": "8:20", "data.train_rows": ":8"},
     r"'data.eval_rows' is '8:20', outside the rows of the training files.*"
     r"12 rows"),
    ({"data.eval_rows": "6:12", "data.train_rows": ":8"},
     r"'data.eval_rows' is '6:12' \(rows 6:12 of the training files\), which "
     r"overlaps the training rows 0:8"),
    ({"data.eval_rows": "6:"}, r"'data.eval_rows'.*overlaps the training rows "
     r"0:11 \(data.train_rows ':11'\)"),
])
def test_row_range_errors_name_key_range_and_row_count(tmp_path, changes,
                                                       match):
  pattern = _two_files(tmp_path)
  config = _config(**{"data.train_files": pattern, "data.eval_files": "",
                      "data.eval_rows": "-1:", "data.train_rows": ":11",
                      **changes})
  with pytest.raises(config_lib.ConfigError, match=match):
    data_lib.check_splits(config)
  split = "eval" if "eval_rows" in match else "train"
  with pytest.raises(config_lib.ConfigError, match=match):
    data_lib.build_dataset(config, split, 2)


def test_empty_validation_and_train_splits_name_the_key(tmp_path):
  path = write_lines(str(tmp_path / "a.tsv"), small_criteo_rows(3))
  empty = write_lines(str(tmp_path / "empty.tsv"), [], newline_at_end=False)
  base = {"data.train_files": path, "data.eval_files": path}
  tiny_hash = _config(**base, **{"data.validation_fraction": 1e-9,
                                 "data.validation_split": "hash"})
  with pytest.raises(config_lib.ConfigError,
                     match=r"'data.validation_fraction': the validation split "
                     r"is empty \(1e-09 with data.validation_split='hash' "
                     r"selects no rows of the 3 training rows\)"):
    data_lib.check_splits(tiny_hash)
  no_rows = _config(**base, **{"data.validation_files": empty})
  with pytest.raises(config_lib.ConfigError,
                     match=r"'data.validation_files': the validation split is "
                     r"empty .*holds no rows"):
    data_lib.check_splits(no_rows)
  one_row = _config(**{"data.train_files": path, "data.train_rows": "0:1",
                       "data.validation_fraction": 0.5, "data.eval_rows": "1:"})
  with pytest.raises(config_lib.ConfigError,
                     match=r"'data.validation_fraction': the train split is "
                     r"empty \(1 rows went to validation\)"):
    data_lib.check_splits(one_row)
  no_train = _config(**{"data.train_files": empty, "data.eval_files": path})
  with pytest.raises(config_lib.ConfigError,
                     match="'data.train_files': the train split is empty"):
    data_lib.check_splits(no_train)


# --- MovieLens -----------------------------------------------------------------


def _movielens_dir(tmp_path, ratings):
  """20 items, 3 users; ``ratings`` = [(user, item, rating, timestamp)]."""
  d = tmp_path / "ml"
  d.mkdir()
  (d / "u.genre").write_text("unknown|0\nAction|1\n\n")
  (d / "u.user").write_text("1|17|M|student|55105\n2|30|F|writer|T8H1N\n"
                            "3|60|M|retired|02139\n")
  (d / "u.item").write_text("".join(
      f"{i}|Film {i} (1995)|01-Jan-1995||http://x|0|1\n" for i in range(1, 21)))
  (d / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n"
                                    for u, i, r, t in ratings))
  return str(d)


def test_movielens_validation_is_each_users_last_k_training_ratings(tmp_path):
  # User 1 rates items 1..13 at times 13 - i (item 13 first, item 1 last);
  # user 2 rates items 1..12 at time 100 + i, with items 1 and 2 tied.
  ratings = [(1, i, 5, 100 - i) for i in range(1, 14)]
  ratings += [(2, i, 1, 200 + max(i, 2)) for i in range(1, 13)]
  ratings.sort(key=lambda r: (r[1] * 7 + r[0]) % 11)  # file order unsorted
  directory = _movielens_dir(tmp_path, ratings)
  config = config_lib.validate(config_lib.override(
      config_lib.default_config(), {
          "data.format": "movielens", "data.movielens_dir": directory,
          "data.validation_ratings_per_user": 2, "data.shuffle_buffer": 0}))
  # Eval: each user's last 10. User 1's training ratings are items 13..11
  # (earliest), user 2's items 1, 2 (tied, item id breaks it).
  # Validation = the last 2 of those: user 1 items 12, 11 (times 88, 89);
  # user 2 items 1, 2 (both time 202; order by item id).
  train, validation = movielens.split_train(directory, 2)
  assert list(zip(validation["user_id"], validation["item_id"])) == [
      ("1", "12"), ("1", "11"), ("2", "1"), ("2", "2")]
  assert list(zip(train["user_id"], train["item_id"])) == [("1", "13")]
  assert data_lib.count_rows(config, "validation") == 4
  assert data_lib.count_rows(config, "train") == 1
  assert data_lib.count_rows(config, "eval") == 20
  assert data_lib.check_splits(config) == {"train": 1, "validation": 4,
                                           "eval": 20}
  labels = np.concatenate([y.numpy() for _, y in data_lib.build_dataset(
      config, "validation", 3)])
  assert labels.tolist() == [1, 1, 0, 0]
  with pytest.raises(ValueError, match="never shuffled"):
    data_lib.build_dataset(config, "validation", 3, shuffle=True)
  # Without validation the train split is every non-eval rating.
  plain = config_lib.override(config, {"data.validation_ratings_per_user": 0})
  assert not data_lib.has_validation(plain)
  assert data_lib.count_rows(plain, "train") == 5
  assert data_lib.check_splits(plain) == {"train": 5, "eval": 20}


def test_a_header_reader_gives_its_own_row_counter(tmp_path):
  """Files whose row 0 is on line 2 (below a header): ranges shift by one
  line, counts come from the reader's counter."""
  pattern = _two_files(tmp_path)
  counter = splits.RowCounter({str(tmp_path / "x-1.tsv"): 7,
                               str(tmp_path / "x-2.tsv"): 5}.__getitem__,
                              first_line=2)
  config = _tail_config(pattern, **{"data.train_rows": "3:"})
  validation = splits.split_rows(config, "validation", counter).selector
  train = splits.split_rows(config, "train", counter).selector
  # Rows 3:12 -> ceil(0.3 * 9) = 3 validation rows: x-1 rows 4..6, lines 6..8.
  assert (validation.files, validation.first, validation.end) == (
      (str(tmp_path / "x-2.tsv"), str(tmp_path / "x-1.tsv")), (7, 6), (7, 9))
  assert (train.first, train.end) == ((5, 2), (7, 6))
  assert splits.count_rows(config, "validation", counter) == 3
  assert splits.count_rows(config, "train", counter) == 6
  lines = tf.constant([1, 2, 5, 6, 8, 9], tf.int64)
  assert pipeline.line_mask(tf.constant(str(tmp_path / "x-1.tsv")), lines,
                            validation).numpy().tolist() == [
                                False, False, False, True, True, False]
