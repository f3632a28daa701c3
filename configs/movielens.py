"""MovieLens 100K as a CTR task (rating >= 4 is a click): a small DLRM.

Data: the original MovieLens 100K files (u.data, u.user, u.item, u.genre),
split by time per user (each user's last 10 ratings are the eval split, see
``recsys_smelu.data.movielens``): 7 categorical features (user, item, age
bucket, gender, occupation, zip prefix, first genre; vocabularies from the
files) and 19 dense genre flags. ``data.movielens_dir`` defaults to
``../shared/data/movielens-100k`` beside the repository checkout; point it
elsewhere on the command line:

  python -m recsys_smelu.train --config=configs/movielens.py \
      --config.data.movielens_dir=/data/ml-100k --model_dir=/tmp/ml

``data.group_feature = 'user_id'`` groups the eval examples by user, so twin
reports include the top-k swap rate (use ``--top_k`` below 10: every user
has exactly 10 eval items, so their top 10 is all of them).

The optional ``:activation`` argument sets ``model.activation``.
"""

import os

from recsys_smelu import config as config_lib

MOVIELENS_DIR = os.path.normpath(os.path.join(
    os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
    "shared", "data", "movielens-100k"))


def get_config(activation: str = "relu"):
  return config_lib.override(config_lib.default_config(), {
      "data.format": "movielens",
      "data.movielens_dir": MOVIELENS_DIR,
      "data.group_feature": "user_id",
      "data.shuffle_buffer": 10_000,
      "model.interaction": "dot",
      "model.embedding_dim": 16,
      "model.bottom_mlp": [32, 16],  # last width == embedding_dim for 'dot'
      "model.top_mlp": [64, 32, 1],
      "model.normalization": "layer",
      "model.activation": activation or "relu",
      "train.batch_size": 256,
      "train.steps": 2000,  # ~5.7 epochs of the ~89.6k training ratings
      "train.learning_rate": 3e-3,
      "train.decay": "cosine",
      # Adagrad on user/item tables needs a large step: eval AUC after 2000
      # steps was 0.737 at 0.5, 0.755 at 1.0, 0.760 at 2.0 (one model each).
      "train.embedding_learning_rate": 1.0,
      "train.checkpoint_every": 1000,
      "train.log_every": 500,
  })
