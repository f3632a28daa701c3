"""DLRM on real Criteo rows: the Kaggle sample's 10,000 chronological rows.

Data: ``../shared/data/criteo-kaggle-sample/train.txt`` beside the repository
checkout, the first 10,000 lines of the Criteo Display Advertising Challenge
(Kaggle 2014) ``train.txt`` in time order (never committed). The splits
follow time, as a deployed model meets its data:

* train: rows 0:8000 (``data.train_rows``) less the validation rows;
* validation: the last 10% of those, rows 7200:8000 (``tail``), for choosing
  the training length and variants;
* eval: rows 8000:10000 (``data.eval_rows``, from the same file).

Point it at another copy on the command line:

  python -m recsys_smelu.train --config=configs/criteo_sample.py \
      --config.data.train_files=/data/criteo-sample/train.txt \
      --model_dir=/tmp/criteo_sample

The model is configs/criteo_dlrm.py's DLRM scaled to 7,200 training rows:
26 hashed categorical features (10,000 buckets each), 13 dense, embedding
width 8. The optional ``:activation`` argument sets ``model.activation``.
"""

import os

from recsys_smelu import config as config_lib

CRITEO_SAMPLE_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
    "shared", "data", "criteo-kaggle-sample"))


def get_config(activation: str = "relu"):
  return config_lib.override(config_lib.default_config(), {
      "data.format": "tsv",
      "data.train_files": os.path.join(CRITEO_SAMPLE_DIR, "train.txt"),
      "data.eval_files": "",  # eval_rows come from the training file
      "data.train_rows": "0:8000",
      "data.eval_rows": "8000:10000",
      "data.validation_fraction": 0.1,  # rows 7200:8000
      "data.validation_split": "tail",
      "data.num_dense": 13,
      "data.num_categorical": 26,
      "data.num_buckets": 10_000,
      "data.shuffle_buffer": 8_000,  # all training rows
      "model.interaction": "dot",
      "model.embedding_dim": 8,
      "model.bottom_mlp": [32, 8],  # last width == embedding_dim for 'dot'
      "model.top_mlp": [64, 32, 1],
      "model.activation": activation or "relu",
      "train.batch_size": 128,
      "train.eval_batch_size": 1000,
      # ~2.7 epochs of the 7,200 training rows. Chosen on the validation
      # rows (7200:8000), one model each: log loss 0.4846 at 60 steps, 0.4729
      # at 150, 0.4919 at 300 (over-fitting).
      "train.steps": 150,
      "train.learning_rate": 1e-3,
      "train.embedding_learning_rate": 0.05,
      "train.checkpoint_every": 50,
      "train.log_every": 25,
  })
