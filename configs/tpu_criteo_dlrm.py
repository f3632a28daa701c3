"""DLRM on Criteo on a Cloud TPU slice: gs:// data, bf16, TPU embedding tables.

Launch from a TPU VM (see README "Running on Cloud TPU")::

  recsys-smelu-train --config=configs/tpu_criteo_dlrm.py --strategy=tpu \
      --tpu=local --model_dir=gs://$BUCKET/dlrm/run1 \
      --config.data.train_files="gs://$BUCKET/criteo/train/*" \
      --config.data.eval_files="gs://$BUCKET/criteo/eval/*"

What differs from ``criteo_dlrm.py``: mixed_bfloat16 compute; the global batch
is split across the TPU cores (65,536 = 2,048 per core on a v4-32's 32 cores);
``steps_per_execution`` large so the host loop does not starve the TPU; the
embedding optimizer runs on the TPU's embedding engine (the model builds a
tf.tpu.experimental.embedding.Adagrad from ``train.embedding_optimizer`` and
hands it to TFRS TPUEmbedding; only on CPU/GPU is it translated into a Keras
optimizer).
"""

import os

from recsys_smelu import config as config_lib

criteo_dlrm = config_lib.load_config_module(
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "criteo_dlrm.py"))


def get_config(activation: str = "relu"):
  return config_lib.override(criteo_dlrm.get_config(activation), {
      "data.train_files": "gs://YOUR_BUCKET/criteo/train/*",
      "data.eval_files": "gs://YOUR_BUCKET/criteo/eval/*",
      "model.mixed_precision": "mixed_bfloat16",
      "train.steps_per_execution": 500,
      "train.jit_compile": False,  # TPU compiles every step function anyway
  })
