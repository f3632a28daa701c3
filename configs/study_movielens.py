"""Study on MovieLens 100K: accuracy beside PD, logistic regression too.

The model and data are ``configs/movielens.py``'s (DLRM with layer-normalized
hidden layers, ratings >= 4 as clicks, each user's last 10 ratings by time
as the eval split), plus a validation split of each user's last 5 training
ratings (``data.validation_ratings_per_user``), embedding rows initialized
small (``model.embedding_init_stddev=0.01``) and early stopping on
validation log loss (every 250 steps, patience 3; model 0 of each variant
chooses the length, its twins train exactly that long). Every choice was
made on validation (pilots in docs/reproducibility.md), never on eval.

The variants are ``configs/study_criteo_sample.py``'s; every user has 10
eval items, so the top-k swap rate uses k = 3. ``scripts/run_studies.sh``
runs it:

  python -m recsys_smelu.twin --config=configs/study_movielens.py \\
      --output_dir=/tmp/study_movielens --num_models=5 --vary=data_order \\
      --parallel=2 --top_k=3 --variants=relu,logreg,relu_wide,...

Add ``--config.data.movielens_dir=DIR`` when the files are not in
``../shared/data/movielens-100k`` beside the checkout.
"""

import os

from recsys_smelu import config as config_lib

_CONFIGS = os.path.dirname(os.path.abspath(__file__))
movielens = config_lib.load_config_module(
    os.path.join(_CONFIGS, "movielens.py"))
study_criteo_sample = config_lib.load_config_module(
    os.path.join(_CONFIGS, "study_criteo_sample.py"))

STUDY_VARIANTS = study_criteo_sample.STUDY_VARIANTS


def get_config():
  return config_lib.override(movielens.get_config("relu"), {
      "data.validation_ratings_per_user": 5,
      "model.embedding_init_stddev": 0.01,
      "train.steps": 2000,  # upper bound; early stopping picks the length
      "train.checkpoint_every": 250,
      "train.eval_every": 250,
      "train.early_stopping_patience": 3,
  })


def get_variants():
  """The same variants as the Criteo sample study."""
  return study_criteo_sample.get_variants()
