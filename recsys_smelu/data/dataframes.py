"""pandas DataFrames as training data, for data that fits in memory.

``write_dataframes(config, directory, train_df=..., eval_df=...)`` checks
each DataFrame's columns against the config's roles (``data.label_column``,
``data.dense_columns``, ``data.categorical_columns``, ``data.ignore_columns``;
every column needs exactly one), writes it once to ``directory/<split>.csv``
(header, RFC 4180 quoting, missing values empty) and returns the config
reading those files with ``data.format='csv'``. Everything downstream (the
schema from the training rows, schema.json, strategies, export, twins) is
then the csv path, so a DataFrame trains exactly as the csv of its rows.

``directory/dataframes.json`` records each split's row count and content
hash (``pandas.util.hash_pandas_object`` of the rows, with the column names
and dtypes); given again (a resumed run), the DataFrames must match it, or a
DataError says which split differs and how.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Mapping, Optional

import ml_collections
import numpy as np
import pandas as pd
import tensorflow as tf

from recsys_smelu.data.pipeline import DataError

MANIFEST_FILE = "dataframes.json"
# Split -> the config key of its files.
SPLIT_KEYS = {"train": "data.train_files", "eval": "data.eval_files",
              "validation": "data.validation_files"}


def dataframe_fingerprint(frame: pd.DataFrame) -> dict:
  """Rows, columns with dtypes, and a SHA-256 of the row hashes."""
  digest = hashlib.sha256()
  digest.update(json.dumps([[str(c), str(t)] for c, t in
                            frame.dtypes.items()]).encode())
  digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy(
      np.uint64).tobytes())
  return {"rows": int(len(frame)), "columns": [str(c) for c in frame.columns],
          "sha256": digest.hexdigest()}


def _label_as_integers(frame: pd.DataFrame, label: str,
                       name: str) -> pd.DataFrame:
  """The label column written as 0/1 integers (a float or boolean 0/1
  column would be written ``1.0`` / ``True``, bad labels in csv)."""
  values = frame[label]
  if values.isna().any():
    raise DataError(f"{name}: label column {label!r} has missing values "
                    f"(first at row {int(np.argmax(values.isna().to_numpy()))})")
  if pd.api.types.is_bool_dtype(values) or pd.api.types.is_numeric_dtype(
      values):
    numbers = values.astype(np.float64).to_numpy()
    bad = ~np.isin(numbers, (0.0, 1.0))
    if bad.any():
      row = int(np.argmax(bad))
      raise DataError(f"{name}: label column {label!r} is {values.iloc[row]} "
                      f"at row {row}, expected 0 or 1")
    frame = frame.copy()
    frame[label] = numbers.astype(np.int64)
  return frame


def write_dataframes(config: ml_collections.ConfigDict, directory: str,
                     frames: Mapping[str, Optional[pd.DataFrame]]
                     ) -> ml_collections.ConfigDict:
  """Writes ``frames`` (split -> DataFrame or None: 'train', 'eval',
  'validation') as csv files in ``directory`` and returns ``config`` with
  ``data.format='csv'``, ``data.header=True`` and the split's files key set
  to them. The config's role keys must name the DataFrame columns. A split
  already in ``directory/dataframes.json`` must be the same DataFrame (row
  count and content hash), and is not written again."""
  from recsys_smelu import data as data_lib  # pylint: disable=g-import-not-at-top
  if frames.get("train") is None:
    raise DataError("train_df is required")
  unknown = set(frames) - set(SPLIT_KEYS)
  if unknown:
    raise ValueError(f"unknown splits {sorted(unknown)}; use "
                     f"{', '.join(SPLIT_KEYS)}")
  changes = {"data.format": "csv", "data.header": True, "data.delimiter": ","}
  spec = data_lib.tabular_spec(_with_data(config, changes))
  tf.io.gfile.makedirs(directory)
  manifest_path = os.path.join(directory, MANIFEST_FILE)
  manifest = {}
  if tf.io.gfile.exists(manifest_path):
    with tf.io.gfile.GFile(manifest_path) as f:
      manifest = json.load(f)
  for split, frame in frames.items():
    if frame is None:
      continue
    name = f"{split}_df"
    key = SPLIT_KEYS[split]
    if key.split(".", 1)[1] not in config.data:
      raise DataError(f"{name}: this config has no {key!r} key (no {split} "
                      "split)")
    if not isinstance(frame, pd.DataFrame):
      raise TypeError(f"{name} must be a pandas DataFrame, got "
                      f"{type(frame).__name__}")
    spec.check_header([str(c) for c in frame.columns], name)
    if len(frame) == 0:
      raise DataError(f"{name} has no rows")
    fingerprint = dataframe_fingerprint(frame)
    path = os.path.join(directory, f"{split}.csv")
    if split in manifest:
      recorded = manifest[split]
      if recorded != fingerprint:
        what = (f"{fingerprint['rows']} rows, the run was started with "
                f"{recorded['rows']}" if recorded["rows"] != fingerprint["rows"]
                else f"the same {fingerprint['rows']} rows but other content "
                     f"(sha256 {fingerprint['sha256'][:12]}... vs "
                     f"{recorded['sha256'][:12]}...)")
        raise DataError(f"{name} is not the DataFrame this run was started "
                        f"with ({manifest_path}): {what}; use the same "
                        "DataFrame, or a new model_dir")
    if split not in manifest or not tf.io.gfile.exists(path):
      frame = _label_as_integers(frame, spec.label_column, name)
      with tf.io.gfile.GFile(path, "w") as f:
        frame.to_csv(f, index=False, lineterminator="\n")
      manifest[split] = fingerprint
    changes[key] = path
  with tf.io.gfile.GFile(manifest_path, "w") as f:
    json.dump(manifest, f, indent=1)
  return _with_data(config, changes)


def _with_data(config: ml_collections.ConfigDict,
               changes: Mapping[str, object]) -> ml_collections.ConfigDict:
  """A copy of ``config`` with ``data.<key>`` values changed."""
  config = ml_collections.ConfigDict(config.to_dict())
  for key, value in changes.items():
    config.data[key.split(".", 1)[1]] = value
  return config


__all__ = ["dataframe_fingerprint", "write_dataframes", "MANIFEST_FILE"]
