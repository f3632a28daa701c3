"""CTR model family on TensorFlow Recommenders (DLRM, DCN-v2, deep MLP).

``build_model(config, schema, embedding_optimizer, embedding_learning_rate)``
is the one entry point the trainer and export use; it reads ``config.model``
and ``config.seed``. ``embedding_optimizer(name, learning_rate)`` builds the
tables' (TPUEmbedding) optimizer; the trainer passes ``config.train``'s in
(``recsys_smelu.train.build_model``).
"""

from recsys_smelu import tf_keras2

tf_keras2.ensure_keras2()  # before tensorflow: tf.keras is Keras 2

from recsys_smelu.models.blocks import MLP, derive_seed
from recsys_smelu.models.ctr import (
    AUC_THRESHOLDS,
    METRIC_NAMES,
    CTRModel,
    CTRTower,
    MeanPrediction,
    build_model,
    create_variables,
    check_model_config,
    embedding_optimizer,
    keras_embedding_optimizer,
)

__all__ = [
    "AUC_THRESHOLDS", "METRIC_NAMES", "CTRModel", "CTRTower", "MLP",
    "MeanPrediction", "build_model", "check_model_config", "create_variables", "derive_seed",
    "embedding_optimizer", "keras_embedding_optimizer",
]
