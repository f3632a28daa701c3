"""MovieLens 100K (original layout: u.data, u.user, u.item, u.genre) as a CTR task.

Label: ``rating >= 4`` (1.0) else 0.0.

Categorical features (vocabularies from the files; bucket 0 = unseen value):
``user_id``, ``item_id``, ``age_bucket`` (<18, 18-24, 25-34, 35-44, 45-49,
50-55, 56+, the MovieLens-1M buckets), ``gender``, ``occupation``,
``zip_prefix`` (first 3 characters of the zip code), ``genre`` (the *first*
genre flagged in u.item, in u.genre order; "unknown" when none).

Dense features: the full genre multi-hot, one 0/1 feature per genre of
u.genre (``genre_action``, ``genre_childrens``, ...; 19 for 100K), through the
usual dense transform (so 0 or log 2). Together with the first-genre
categorical this keeps every genre of a movie while each categorical feature
stays one id per example, the batch format of every model.

Split (by time, per user): each user's last ``EVAL_PER_USER`` = 10 ratings
(ordered by timestamp, ties by item id) are the eval split, everything else
is train; every user has at least 20 ratings, so every user is in both.
Train rows keep u.data order; eval rows are ordered by (user id, timestamp,
item id), which is the order the eval dataset yields them in.

Validation (``data.validation_ratings_per_user`` = k > 0, ``split_train``):
each user's last k *training* ratings by the same (timestamp, item id) order
are the validation split, in (user id, timestamp, item id) order; the train
split keeps the rest, in u.data order. So validation is later than the rest
of a user's training ratings and earlier than their eval ratings, as eval is
to training. A user with k or fewer training ratings has them all in
validation.

The files are read with ``tf.io.gfile`` (local or gs://), once per directory
(``load`` is cached on it). The feature schema adds the model's embedding
width to the vocabularies (``MovieLensData.schema(embedding_dim)``); the
dataset takes that schema, so nothing here reads a config. A malformed line
is a ``MovieLensFormatError`` naming file and line.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from typing import Optional

import numpy as np
import tensorflow as tf

from recsys_smelu.data import features as features_lib
from recsys_smelu.data import pipeline

EVAL_PER_USER = 10
SPLITS = ("train", "validation", "eval")
AGE_BUCKETS = ("<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+")
_AGE_EDGES = (18, 25, 35, 45, 50, 56)
CATEGORICAL_NAMES = ("user_id", "item_id", "age_bucket", "gender",
                     "occupation", "zip_prefix", "genre")
_ENCODING = "latin-1"  # u.item titles are Latin-1


class MovieLensFormatError(ValueError):
  """A MovieLens file is missing or malformed; names the file and line."""


@dataclasses.dataclass(frozen=True)
class MovieLensData:
  """The rows of both splits and the vocabularies of one directory."""
  dense: tuple[str, ...]  # genre flag feature names, u.genre order
  vocabularies: dict[str, tuple[str, ...]]  # per CATEGORICAL_NAMES entry
  train: dict[str, np.ndarray]  # raw features + "label", one entry per row
  eval: dict[str, np.ndarray]
  train_timestamps: np.ndarray  # int64, one per train row (u.data timestamp)

  def schema(self, embedding_dim: int) -> features_lib.FeatureSchema:
    """The feature schema: the genre flags, and each categorical feature
    with its vocabulary (bucket 0 = unseen) and ``embedding_dim``."""
    return features_lib.FeatureSchema(
        dense=self.dense,
        categorical=tuple(
            features_lib.CategoricalFeature(
                name, len(self.vocabularies[name]) + 1, embedding_dim,
                self.vocabularies[name]) for name in CATEGORICAL_NAMES))


def _read_lines(directory: str, name: str) -> tuple[str, list[str]]:
  path = os.path.join(directory, name)
  if not tf.io.gfile.exists(path):
    raise MovieLensFormatError(
        f"{path} not found: data.movielens_dir must hold the MovieLens 100K "
        "files u.data, u.user, u.item and u.genre")
  with tf.io.gfile.GFile(path, "rb") as f:
    text = f.read().decode(_ENCODING)
  return path, text.splitlines()


def _fields(path: str, number: int, line: str, sep: str, expected: int):
  parts = line.split(sep)
  if len(parts) != expected:
    raise MovieLensFormatError(
        f"{path}:{number}: expected {expected} fields separated by {sep!r}, "
        f"got {len(parts)}: {line[:200]!r}")
  return parts


def _int(path: str, number: int, text: str, what: str) -> int:
  try:
    return int(text)
  except ValueError:
    raise MovieLensFormatError(f"{path}:{number}: {what} {text!r} is not an "
                               "integer") from None


def _feature_name(genre: str) -> str:
  return "genre_" + re.sub(r"[^0-9a-z]+", "_",
                           genre.lower().replace("'", "")).strip("_")


def age_bucket(age: int) -> str:
  return AGE_BUCKETS[int(np.searchsorted(_AGE_EDGES, age, side="right"))]


@functools.lru_cache(maxsize=4)
def load(directory: str) -> MovieLensData:
  """Reads and splits MovieLens 100K from ``directory`` (see module doc);
  cached on ``directory``."""
  genre_path, genre_lines = _read_lines(directory, "u.genre")
  genres = []
  for number, line in enumerate(genre_lines, 1):
    if not line.strip():
      continue
    name, index = _fields(genre_path, number, line, "|", 2)
    if _int(genre_path, number, index, "genre index") != len(genres):
      raise MovieLensFormatError(f"{genre_path}:{number}: genre indices must "
                                 "be 0, 1, 2, ... in order")
    genres.append(name)
  if not genres:
    raise MovieLensFormatError(f"{genre_path}: no genres")

  user_path, user_lines = _read_lines(directory, "u.user")
  users = {}
  for number, line in enumerate(user_lines, 1):
    if not line.strip():
      continue
    uid, age, gender, occupation, zip_code = _fields(user_path, number, line,
                                                     "|", 5)
    users[uid] = (age_bucket(_int(user_path, number, age, "age")), gender,
                  occupation, zip_code[:3])

  item_path, item_lines = _read_lines(directory, "u.item")
  items = {}
  for number, line in enumerate(item_lines, 1):
    if not line.strip():
      continue
    parts = _fields(item_path, number, line, "|", 5 + len(genres))
    flags = parts[5:]
    if any(flag not in ("0", "1") for flag in flags):
      raise MovieLensFormatError(f"{item_path}:{number}: genre flags must be "
                                 f"0 or 1: {line[:200]!r}")
    multi_hot = [float(flag) for flag in flags]
    first = genres[flags.index("1")] if "1" in flags else "unknown"
    items[parts[0]] = (first, multi_hot)

  data_path, data_lines = _read_lines(directory, "u.data")
  user_ids, item_ids, ratings, times = [], [], [], []
  for number, line in enumerate(data_lines, 1):
    if not line.strip():
      continue
    uid, iid, rating, timestamp = _fields(data_path, number, line, "\t", 4)
    if uid not in users:
      raise MovieLensFormatError(f"{data_path}:{number}: user {uid} is not in "
                                 "u.user")
    if iid not in items:
      raise MovieLensFormatError(f"{data_path}:{number}: item {iid} is not in "
                                 "u.item")
    user_ids.append(uid)
    item_ids.append(iid)
    ratings.append(_int(data_path, number, rating, "rating"))
    times.append(_int(data_path, number, timestamp, "timestamp"))

  user_num = np.array([int(u) for u in user_ids])
  item_num = np.array([int(i) for i in item_ids])
  times_np = np.array(times, np.int64)
  # Per user, the last EVAL_PER_USER ratings by (timestamp, item id) -> eval.
  eval_rows = _last_per_user(user_num, times_np, item_num, EVAL_PER_USER)
  in_eval = np.zeros(len(user_num), bool)
  in_eval[eval_rows] = True
  train_rows = np.flatnonzero(~in_eval)  # u.data order

  genre_names = tuple(_feature_name(g) for g in genres)

  def columns(rows: np.ndarray) -> dict[str, np.ndarray]:
    user_feats = [users[user_ids[r]] for r in rows]
    item_feats = [items[item_ids[r]] for r in rows]
    out = {
        "user_id": np.array([user_ids[r] for r in rows], dtype=object),
        "item_id": np.array([item_ids[r] for r in rows], dtype=object),
        "age_bucket": np.array([u[0] for u in user_feats], dtype=object),
        "gender": np.array([u[1] for u in user_feats], dtype=object),
        "occupation": np.array([u[2] for u in user_feats], dtype=object),
        "zip_prefix": np.array([u[3] for u in user_feats], dtype=object),
        "genre": np.array([i[0] for i in item_feats], dtype=object),
        "label": (np.array([ratings[r] for r in rows]) >= 4).astype(
            np.float32),
    }
    multi_hot = np.array([i[1] for i in item_feats], np.float32).reshape(
        len(rows), len(genres))
    for j, name in enumerate(genre_names):
      out[name] = multi_hot[:, j]
    return out

  occupation_vocab = sorted({u[2] for u in users.values()})
  vocabularies = {
      "user_id": sorted(users, key=int),
      "item_id": sorted(items, key=int),
      "age_bucket": list(AGE_BUCKETS),
      "gender": sorted({u[1] for u in users.values()}),
      "occupation": occupation_vocab,
      "zip_prefix": sorted({u[3] for u in users.values()}),
      "genre": list(dict.fromkeys(["unknown", *genres])),
  }
  return MovieLensData(genre_names,
                       {name: tuple(v) for name, v in vocabularies.items()},
                       columns(train_rows), columns(eval_rows),
                       times_np[train_rows])


def _last_per_user(users: np.ndarray, times: np.ndarray, items: np.ndarray,
                   k: int) -> np.ndarray:
  """Indices of each user's last ``k`` rows by (timestamp, item id), in
  (user, timestamp, item id) order."""
  order = np.lexsort((items, times, users))
  sorted_users = users[order]
  ends = np.searchsorted(sorted_users, sorted_users, side="right")
  rank_from_end = ends - np.arange(len(order))  # 1 = the user's latest row
  return order[rank_from_end <= k]


def _take(rows: dict[str, np.ndarray], index: np.ndarray
          ) -> dict[str, np.ndarray]:
  return {name: values[index] for name, values in rows.items()}


@functools.lru_cache(maxsize=8)
def split_train(directory: str, validation_per_user: int
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
  """(train, validation) rows: each user's last ``validation_per_user``
  training ratings by (timestamp, item id) are validation (in (user,
  timestamp, item id) order), the rest train (u.data order); see the module
  doc. ``validation_per_user`` 0: (all training rows, no rows)."""
  data = load(directory)
  users = np.array([int(u) for u in data.train["user_id"]], np.int64)
  items = np.array([int(i) for i in data.train["item_id"]], np.int64)
  validation = _last_per_user(users, data.train_timestamps, items,
                              validation_per_user)
  in_validation = np.zeros(len(users), bool)
  in_validation[validation] = True
  return (_take(data.train, np.flatnonzero(~in_validation)),
          _take(data.train, validation))


def split_rows(directory: str, split: str, validation_per_user: int = 0
               ) -> dict[str, np.ndarray]:
  """The raw rows of ``split`` ('train' | 'validation' | 'eval')."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if split == "eval":
    return load(directory).eval
  if split == "train" and not validation_per_user:
    return load(directory).train
  train, validation = split_train(directory, validation_per_user)
  return train if split == "train" else validation


def make_dataset(directory: str, split: str, batch_size: int, *,
                 schema: features_lib.FeatureSchema, shuffle: bool = True,
                 shuffle_buffer: int = 10_000, seed: Optional[int] = None,
                 repeat: bool = False, num_shards: int = 1,
                 shard_index: int = 0,
                 drop_remainder: Optional[bool] = None,
                 validation_per_user: int = 0) -> tf.data.Dataset:
  """Batches ``(features, label)`` of the MovieLens ``split`` ('train' |
  'validation' | 'eval'; ``split_rows``).

  Same batch format as the Criteo pipeline; ``schema`` is
  ``load(directory).schema(embedding_dim)``. Sharding is by rows (row i to
  shard ``i % num_shards``); eval and validation are never shuffled.
  """
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  training = split == "train"
  if shuffle and not training:
    raise ValueError("evaluation data is never shuffled (shuffle=True with "
                     f"split={split!r})")
  rows = split_rows(directory, split, validation_per_user)
  dataset = tf.data.Dataset.from_tensor_slices(
      {k: tf.constant(v.tolist() if v.dtype == object else v)
       for k, v in rows.items()})
  if num_shards > 1:
    dataset = dataset.shard(num_shards, shard_index)
  if shuffle and shuffle_buffer > 0:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed,
                              reshuffle_each_iteration=True)
  if repeat:
    dataset = dataset.repeat()
  if drop_remainder is None:
    drop_remainder = training
  dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

  def to_model(raw):
    return features_lib.raw_to_model_inputs(raw, schema), raw["label"]

  dataset = dataset.map(to_model, num_parallel_calls=tf.data.AUTOTUNE,
                        deterministic=True)
  return pipeline.finish_pipeline(dataset, sharded=num_shards > 1)
