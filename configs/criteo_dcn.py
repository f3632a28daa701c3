"""DCN-v2 on Criteo: low-rank stacked cross network, then a deep tower.

Follows the DCN-v2 paper's Criteo setting (embedding dim 16 per feature is
the common Kaggle choice; here 64 for the 1TB set), three cross layers with
projection dim 512 (low rank), top MLP [1024, 1024, 512, 1].

  python -m recsys_smelu.train --config=configs/criteo_dcn.py \
      --config.data.train_files='/data/criteo/train/*' \
      --config.data.eval_files='/data/criteo/eval/*' --model_dir=/tmp/dcn
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
      "model.interaction": "cross",
      "model.embedding_dim": 64,
      "model.bottom_mlp": [512, 256, 64],
      "model.cross_num_layers": 3,
      "model.cross_mode": "stacked",
      "model.cross_projection_dim": 512,
      "model.top_mlp": [1024, 1024, 512, 1],
      "model.activation": activation or "relu",
      "train.batch_size": 65_536,
      "train.eval_batch_size": 65_536,
      "train.steps": 75_000,
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
