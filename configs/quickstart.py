"""Quickstart: small DLRM on the built-in synthetic data (a minute on a CPU).

Data: ``scripts/quickstart.sh`` generates it into ``data/quickstart`` with
``python -m recsys_smelu.data.synthetic`` (known true CTR per eval example,
so reports show the excess log loss over the Bayes-optimal model).

  python -m recsys_smelu.train --config=configs/quickstart.py --model_dir=/tmp/q
  python -m recsys_smelu.train --config=configs/quickstart.py:smelu ...

The optional ``:activation`` argument sets ``model.activation``.
"""

import os

from recsys_smelu import config as config_lib

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir,
                        "data", "quickstart")


def get_config(activation: str = "relu"):
  return config_lib.override(config_lib.default_config(), {
      "data.format": "tsv",
      "data.train_files": os.path.join(DATA_DIR, "train-*.tsv"),
      "data.eval_files": os.path.join(DATA_DIR, "eval-*.tsv"),
      "data.eval_truth": os.path.join(DATA_DIR, "eval_truth.txt"),
      "data.num_buckets": 1000,
      "data.shuffle_buffer": 4096,
      "model.interaction": "dot",
      "model.embedding_dim": 8,
      "model.bottom_mlp": [64, 8],
      "model.top_mlp": [128, 64, 1],
      "model.activation": activation or "relu",
      "train.batch_size": 256,
      "train.steps": 600,
      "train.learning_rate": 1e-3,
      "train.checkpoint_every": 200,
      "train.log_every": 100,
  })
