"""Paper-style study on MovieLens 100K: activations and SmeLU beta.

The model, data and training are ``configs/movielens.py``'s (small DLRM with
layer-normalized hidden layers, ratings >= 4 as clicks, per-user time split);
``get_variants()`` lists the variants, so the twin evaluator needs no
``--variants``. Every user has 10 eval items, so the top-k swap rate uses
k = 3:

  python -m recsys_smelu.twin --config=configs/study_movielens.py \
      --output_dir=/tmp/study_movielens --num_models=3 --vary=data_order \
      --parallel=2 --top_k=3

Add ``--config.data.movielens_dir=DIR`` when the files are not in
``../shared/data/movielens-100k`` beside the checkout. Results and
commentary: docs/reproducibility.md.
"""

import os

from recsys_smelu import config as config_lib

_CONFIGS = os.path.dirname(os.path.abspath(__file__))
movielens = config_lib.load_config_module(
    os.path.join(_CONFIGS, "movielens.py"))
study_synthetic = config_lib.load_config_module(
    os.path.join(_CONFIGS, "study_synthetic.py"))


def get_config():
  return movielens.get_config("relu")


def get_variants():
  """The same variants as the synthetic study (study_synthetic.py)."""
  return study_synthetic.get_variants()
