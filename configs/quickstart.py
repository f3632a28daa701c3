"""Quickstart: small DLRM on the built-in synthetic data.

Data: ``scripts/quickstart.sh`` generates it into ``data/quickstart`` with
``python -m recsys_smelu.data.synthetic --num_train=300000 --num_eval=20000
--seed=0`` (known true CTR per eval example, so reports show the excess log
loss over the Bayes-optimal model). Sized for a CPU; the measured time is in
docs/benchmarks.md#quickstart-run-time.

  python -m recsys_smelu.train --config=configs/quickstart.py --model_dir=/tmp/q
  python -m recsys_smelu.train --config=configs/quickstart.py:smelu ...

The optional ``:activation`` argument sets ``model.activation``.

The setting follows the conditions under which [SL22] finds smooth
activations most reproducible: layer-normalized hidden layers, a moderate
shuffle buffer (4096 rows of 300k), and (in ``scripts/quickstart.sh``) twins
that share their initialization and differ in data order only. 3000 steps
of 256 (2.6 epochs) with a cosine-decayed learning rate, so the models end
near a converged point rather than at a noisy last step. The wide part
(``model.wide``) learns the per-value effects directly, as in Wide & Deep. With different
initializations as well (``--vary=init,data_order``) every activation's PD
is several times larger; docs/reproducibility.md has both measurements.
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
      "model.normalization": "layer",
      "model.activation": activation or "relu",
      # The wide part and a faster embedding rate, chosen on a validation
      # split (10% of the training rows by hash, pilots only; see
      # docs/reproducibility.md): relu's validation log loss 0.4680 ->
      # 0.4379, below logistic regression's best (0.4436).
      "model.wide": True,
      "train.embedding_learning_rate": 0.5,
      "train.batch_size": 256,
      "train.steps": 3000,
      "train.learning_rate": 1e-3,
      "train.decay": "cosine",
      "train.checkpoint_every": 1000,
      "train.log_every": 500,
  })
