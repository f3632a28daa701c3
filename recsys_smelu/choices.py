"""The allowed values of the config's choice keys, in one TensorFlow-free place.

``recsys_smelu.config`` checks every config against these lists before any
TensorFlow work; the modules that act on a choice (models, schedules, the
trainer) import the same list, so a value is added in one place only.
"""

# data
DATA_FORMATS = ("tsv", "tfrecord", "packed", "movielens")
ON_BAD_ROW = ("error", "skip")
VALIDATION_SPLITS = ("tail", "hash")

# model
INTERACTIONS = ("dot", "cross", "concat")
CROSS_MODES = ("stacked", "parallel")
NORMALIZATIONS = ("none", "layer", "batch")
MIXED_PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")

# train
OPTIMIZERS = ("adam", "adagrad", "sgd")
EMBEDDING_OPTIMIZERS = ("adam", "adagrad", "sgd")
DECAYS = ("none", "cosine", "linear")

# Config key -> its allowed values.
BY_KEY = {
    "data.format": DATA_FORMATS,
    "data.on_bad_row": ON_BAD_ROW,
    "data.validation_split": VALIDATION_SPLITS,
    "model.interaction": INTERACTIONS,
    "model.cross_mode": CROSS_MODES,
    "model.normalization": NORMALIZATIONS,
    "model.mixed_precision": MIXED_PRECISIONS,
    "train.optimizer": OPTIMIZERS,
    "train.embedding_optimizer": EMBEDDING_OPTIMIZERS,
    "train.decay": DECAYS,
}
