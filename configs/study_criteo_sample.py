"""Study on the real Criteo rows: accuracy beside PD, logistic regression too.

The data and splits are ``configs/criteo_sample.py``'s (rows 0:7200 train,
7200:8000 validation, 8000:10000 eval, in time order). The model is the
deep MLP over the concatenated embeddings and dense features
(``model.interaction='concat'``), with the embedding rows initialized small
(``model.embedding_init_stddev=0.01``) so the many ids seen once or never in
7,200 rows stay near zero. Training stops early on validation log loss
(every 25 steps, patience 4; model 0 of each variant chooses the length,
its twins train exactly that long). Every choice here was made on the
validation rows (pilots in docs/reproducibility.md), never on eval.

``get_variants()`` lists the study's variants; ``STUDY_VARIANTS`` adds the
twin evaluator's built-in ``logreg``. ``scripts/run_studies.sh`` runs them:

  python -m recsys_smelu.twin --config=configs/study_criteo_sample.py \\
      --output_dir=/tmp/study_criteo --num_models=5 --vary=data_order \\
      --parallel=2 --variants=relu,logreg,relu_wide,...
"""

import os

from recsys_smelu import config as config_lib

criteo_sample = config_lib.load_config_module(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "criteo_sample.py"))

# The variants of both real-data studies, in table order (logreg is built in).
STUDY_VARIANTS = ("relu", "logreg", "relu_wide", "smelu_beta1",
                  "smelu_beta1_wide", "smelu_beta2", "smelu_beta2_wide",
                  "gelu", "ensemble2_relu")


def get_config():
  return config_lib.override(criteo_sample.get_config("relu"), {
      "model.interaction": "concat",
      "model.embedding_init_stddev": 0.01,
      "train.steps": 600,  # upper bound; early stopping picks the length
      "train.checkpoint_every": 25,
      "train.eval_every": 25,
      "train.early_stopping_patience": 4,
  })


def get_variants():
  """{name: dotted-key changes} of every STUDY_VARIANTS entry but logreg."""
  variants = {}
  for name, activation in (("relu", "relu"), ("smelu_beta1", "smelu:beta=1"),
                           ("smelu_beta2", "smelu:beta=2")):
    variants[name] = {"model.activation": activation, "model.wide": False}
    variants[f"{name}_wide"] = {"model.activation": activation,
                                "model.wide": True}
  variants["gelu"] = {"model.activation": "gelu", "model.wide": False}
  variants["ensemble2_relu"] = {"model.activation": "relu",
                                "model.ensemble_size": 2, "model.wide": False}
  return variants
