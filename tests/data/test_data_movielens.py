"""MovieLens 100K loader: schema, per-user time split, batches, format errors."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from recsys_smelu import config as config_lib
from recsys_smelu import data as data_lib
from recsys_smelu.data import movielens
import tensorflow as tf

REAL_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared",
                        "data", "movielens-100k")
needs_real_data = pytest.mark.skipif(
    not os.path.isfile(os.path.join(REAL_DIR, "u.data")),
    reason="MovieLens 100K not found at ../shared/data/movielens-100k (its "
           "files are never committed; point REAL_DIR at a download to run)")

GENRES = ["unknown", "Action", "Children's", "Sci-Fi"]


def _fake_dir(tmp_path, data_lines=None):
  """3 users, 3 items, 12 ratings each for user 1, written in the original
  layout (enough for a 10-per-user eval split on user 1)."""
  d = tmp_path / "ml"
  d.mkdir()
  (d / "u.genre").write_text("".join(f"{g}|{i}\n" for i, g in
                                     enumerate(GENRES)) + "\n")
  (d / "u.user").write_text("1|17|M|student|55105\n2|30|F|writer|T8H1N\n"
                            "3|60|M|retired|02139\n")
  flags = {"1": "0|1|0|1", "2": "0|0|1|0", "3": "0|0|0|0"}
  (d / "u.item").write_bytes("".join(
      f"{i}|Caf\xe9 {i} (1995)|01-Jan-1995||http://x|{flags[i]}\n"
      for i in ("1", "2", "3")).encode("latin-1"))
  if data_lines is None:
    data_lines = [f"1\t{1 + k % 3}\t{1 + k % 5}\t{1000 + k}" for k in range(12)]
    data_lines += ["2\t1\t5\t50", "3\t2\t4\t60"]
  (d / "u.data").write_text("\n".join(data_lines) + "\n")
  return str(d)


def test_fake_layout_schema_split_and_features(tmp_path):
  directory = _fake_dir(tmp_path)
  loaded = movielens.load(directory)
  schema = loaded.schema(4)
  assert {f.embedding_dim for f in schema.categorical} == {4}
  assert schema.categorical_names == movielens.CATEGORICAL_NAMES
  assert schema.dense == ("genre_unknown", "genre_action", "genre_childrens",
                          "genre_sci_fi")
  vocab = {f.name: f.vocabulary for f in schema.categorical}
  assert vocab["age_bucket"] == movielens.AGE_BUCKETS
  assert vocab["zip_prefix"] == ("021", "551", "T8H")
  assert vocab["genre"] == ("unknown", "Action", "Children's", "Sci-Fi")
  # User 1 has 12 ratings: the last 10 by time are eval; users 2 and 3 have one
  # rating each, which is their last, so it is eval too.
  assert len(loaded.train["label"]) == 2
  assert loaded.train["user_id"].tolist() == ["1", "1"]
  assert loaded.eval["user_id"].tolist() == ["1"] * 10 + ["2", "3"]
  # Eval rows of user 1 are timestamps 1002..1011 in time order.
  assert loaded.eval["item_id"][:10].tolist() == [str(1 + k % 3)
                                                  for k in range(2, 12)]
  assert loaded.eval["label"][:10].tolist() == [
      float(1 + k % 5 >= 4) for k in range(2, 12)]
  assert loaded.eval["age_bucket"][-3:].tolist() == ["<18", "25-34", "56+"]
  assert loaded.eval["genre"][-2:].tolist() == ["Action", "Children's"]
  config = config_lib.override(config_lib.default_config(), {
      "data.format": "movielens", "data.movielens_dir": directory,
      "model.embedding_dim": 4})
  assert data_lib.build_schema(config) == schema
  features, label = next(iter(data_lib.build_dataset(config, "eval", 12)))
  sparse = features[data_lib.SPARSE_KEY]
  # Ids are 1 + position in the vocabulary.
  assert sparse["user_id"].numpy().tolist() == [1] * 10 + [2, 3]
  assert sparse["gender"].numpy().tolist()[-3:] == [2, 1, 2]
  assert sparse["genre"].numpy().tolist()[-2:] == [2, 3]
  np.testing.assert_allclose(features[data_lib.DENSE_KEY].numpy()[-2],
                             [0, np.log(2), 0, np.log(2)], rtol=1e-6)
  np.testing.assert_array_equal(label.numpy(), loaded.eval["label"])


@pytest.mark.parametrize("line,message", [
    ("1\t1\t5", r"u\.data:2: expected 4 fields"),
    ("1\t1\tfive\t7", r"u\.data:2: rating 'five' is not an integer"),
    ("9\t1\t5\t7", r"u\.data:2: user 9 is not in u\.user"),
])
def test_malformed_files_name_file_and_line(tmp_path, line, message):
  directory = _fake_dir(tmp_path, ["1\t1\t5\t1", line])
  with pytest.raises(movielens.MovieLensFormatError, match=message):
    movielens.load(directory)


def test_missing_directory_is_a_clear_error(tmp_path):
  with pytest.raises(movielens.MovieLensFormatError, match="u.genre not found"):
    movielens.load(str(tmp_path))


@needs_real_data
def test_real_movielens_split_and_batches():
  directory = os.path.normpath(REAL_DIR)
  loaded = movielens.load(directory)
  schema = loaded.schema(8)
  sizes = {f.name: f.num_buckets for f in schema.categorical}
  assert sizes == {"user_id": 944, "item_id": 1683, "age_bucket": 8,
                   "gender": 3, "occupation": 22, "zip_prefix": sizes[
                       "zip_prefix"], "genre": 20}
  assert schema.num_dense == 19
  assert len(loaded.eval["label"]) == 943 * 10
  assert len(loaded.train["label"]) == 100_000 - 9430
  positives = loaded.train["label"].sum() + loaded.eval["label"].sum()
  assert positives == 55_375  # rating >= 4, as the folder's README says
  # Independent check of the split with pandas: each user's 10 latest.
  ratings = pd.read_csv(os.path.join(directory, "u.data"), sep="\t",
                        names=["user", "item", "rating", "time"])
  ratings = ratings.sort_values(["user", "time", "item"], kind="stable")
  latest = ratings.groupby("user").tail(10)
  assert loaded.eval["item_id"].astype(int).tolist() == latest["item"].tolist()
  config = config_lib.override(config_lib.default_config(), {
      "data.format": "movielens", "data.movielens_dir": directory})
  dataset = data_lib.build_dataset(config, "train", 1024, seed=3)
  features, label = next(iter(dataset))
  assert features[data_lib.DENSE_KEY].shape == (1024, 19)
  for name, ids in features[data_lib.SPARSE_KEY].items():
    assert ids.dtype == tf.int32
    assert 1 <= int(tf.reduce_min(ids)) and int(tf.reduce_max(ids)) < sizes[
        name]
  eval_labels = np.concatenate([b[1].numpy() for b in
                                data_lib.build_dataset(config, "eval", 4096)])
  np.testing.assert_array_equal(eval_labels, loaded.eval["label"])
