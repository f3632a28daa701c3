"""Avazu-style click log: a csv with a header, by named column roles.

Avazu's train file (not shipped) has ``id``, the ``click`` label, ``hour``
(YYMMDDHH) and 21 more categorical columns, no dense feature. Give your
files on the command line (a Parquet file works too:
``--config.data.format=parquet``)::

  python -m recsys_smelu.train --config=configs/avazu_example.py \\
      --model_dir=/tmp/avazu --config.data.train_files=/data/avazu/train.csv \\
      --config.data.eval_files=/data/avazu/eval.csv

``recsys-smelu-infer-schema FILE`` prints these role keys for another file.
The high-cardinality ids get their own bucket counts
(``data.num_buckets_per_column``); the others share ``data.num_buckets``.
"""

from recsys_smelu import config as config_lib

CATEGORICAL = (
    "hour", "C1", "banner_pos", "site_id", "site_domain", "site_category",
    "app_id", "app_domain", "app_category", "device_id", "device_ip",
    "device_model", "device_type", "device_conn_type", "C14", "C15", "C16",
    "C17", "C18", "C19", "C20", "C21")


def get_config(activation: str = "relu"):
  return config_lib.override(config_lib.default_config(), {
      "data.format": "csv",
      "data.header": True,
      "data.label_column": "click",
      "data.ignore_columns": "id",
      "data.categorical_columns": ",".join(CATEGORICAL),
      "data.num_buckets": 10_000,
      "data.num_buckets_per_column": ("site_id=100000,app_id=100000,"
                                      "device_id=1000000,device_ip=1000000,"
                                      "device_model=100000"),
      "data.on_bad_row": "skip",
      "model.interaction": "dot",
      "model.embedding_dim": 16,
      "model.bottom_mlp": [16],
      "model.top_mlp": [256, 128, 1],
      "model.activation": activation,
      "model.normalization": "layer",
      "train.batch_size": 1024,
      "train.steps": 20_000,
      "train.checkpoint_every": 2000,
  })
