"""Paper-style study on the quickstart's synthetic data: activations and beta.

The model, data and training are ``configs/quickstart.py``'s (DLRM with
layer-normalized hidden layers, 300k synthetic rows with a known true CTR,
3000 cosine-decayed steps); ``get_variants()`` lists the variants, so the
twin evaluator needs no ``--variants``:

  scripts/quickstart.sh   # once, for the environment and the data
  python -m recsys_smelu.twin --config=configs/study_synthetic.py \
      --output_dir=/tmp/study_synthetic --num_models=3 --vary=data_order \
      --parallel=2

Results (PD only, the earlier quickstart setting):
docs/pd_only_studies_2026-11.md.
"""

import os

from recsys_smelu import config as config_lib

quickstart = config_lib.load_config_module(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "quickstart.py"))

SMELU_BETAS = (0.1, 0.5, 1, 2, 4)


def get_config():
  return quickstart.get_config("relu")


def get_variants():
  """{name: dotted-key changes}: SmeLU betas, baselines, 2-model ensemble."""
  variants = {"relu": {"model.activation": "relu"}}
  for beta in SMELU_BETAS:
    variants[f"smelu_beta{beta}"] = {"model.activation": f"smelu:beta={beta}"}
  for name in ("gelu", "swish", "softplus"):
    variants[name] = {"model.activation": name}
  variants["ensemble2_relu"] = {"model.activation": "relu",
                                "model.ensemble_size": 2}
  return variants
