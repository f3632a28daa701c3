"""DCN-v2 on Criteo: low-rank stacked cross network, then a deep tower.

Follows the DCN-v2 paper's Criteo setting (embedding dim 16 per feature is
the common Kaggle choice; here 64 for the 1TB set), three cross layers with
projection dim 512 (low rank), top MLP [1024, 1024, 512, 1].

  python -m recsys_smelu.train --config=configs/criteo_dcn.py \
      --config.data.train_files='/data/criteo/train/*' \
      --config.data.eval_files='/data/criteo/eval/*' --model_dir=/tmp/dcn
"""

import os

from recsys_smelu import config as config_lib

criteo_dlrm = config_lib.load_config_module(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "criteo_dlrm.py"))


def get_config(activation: str = "relu"):
  """criteo_dlrm.py's data and training settings with a DCN-v2 model."""
  return config_lib.override(criteo_dlrm.get_config(activation), {
      "model.interaction": "cross",
      "model.embedding_dim": 64,
      "model.bottom_mlp": [512, 256, 64],
      "model.cross_num_layers": 3,
      "model.cross_mode": "stacked",
      "model.cross_projection_dim": 512,
      "model.top_mlp": [1024, 1024, 512, 1],
  })
