"""DLRM on Criteo (Kaggle Display Advertising Challenge or Criteo 1TB).

Sizes follow TF Model Garden's ``dlrm_criteo`` experiment and MLPerf DLRM:
dense features through a bottom MLP [512, 256, 128] to the embedding width
128, dot interaction, top MLP [1024, 1024, 512, 256, 1]; categorical features
hashed into per-feature buckets. A global batch of 65,536 is what a v3-32/v4-32
TPU slice runs well; on a single GPU use 8,192 with a 4x smaller learning rate.

  python -m recsys_smelu.train --config=configs/criteo_dlrm.py \
      --config.data.train_files='/data/criteo/train/*' \
      --config.data.eval_files='/data/criteo/eval/*' \
      --config.model.activation=smelu:beta=1 --model_dir=/tmp/dlrm
"""

from recsys_smelu import config as config_lib


def get_config(activation: str = "relu"):
  return config_lib.override(config_lib.default_config(), {
      "data.format": "tsv",
      "data.train_files": "/data/criteo/train/*",
      "data.eval_files": "/data/criteo/eval/*",
      "data.num_buckets": 1_000_000,
      "data.shuffle_buffer": 100_000,
      "data.cycle_length": 16,
      "model.interaction": "dot",
      "model.embedding_dim": 128,
      "model.bottom_mlp": [512, 256, 128],
      "model.top_mlp": [1024, 1024, 512, 256, 1],
      "model.activation": activation or "relu",
      "train.batch_size": 65_536,
      "train.eval_batch_size": 65_536,
      "train.steps": 75_000,  # ~1 epoch of Criteo 1TB-day subsets / ~110 of Kaggle
      "train.optimizer": "adam",
      "train.learning_rate": 2e-3,
      "train.embedding_optimizer": "adagrad",
      "train.embedding_learning_rate": 0.05,
      "train.warmup_steps": 8_000,
      "train.decay": "cosine",
      "train.steps_per_execution": 100,
      "train.checkpoint_every": 5_000,
      "train.log_every": 1_000,
      "train.jit_compile": True,
  })
