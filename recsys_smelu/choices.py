"""The allowed values of the config's choice keys, in one TensorFlow-free place.

``recsys_smelu.config`` checks every config against these lists before any
TensorFlow work; the modules that act on a choice (models, schedules, the
trainer) import the same list, so a value is added in one place only.
"""

# data
DATA_FORMATS = ("tsv", "tfrecord", "packed", "movielens", "csv", "parquet")
# Formats read by named column roles (data.label_column, ...); 'tsv' too when
# data.header is true.
TABULAR_FORMATS = ("csv", "parquet")
ON_BAD_ROW = ("error", "skip")
DENSE_TRANSFORMS = ("log1p_clip0", "none", "standardize")
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
    "data.dense_transform": DENSE_TRANSFORMS,
    "data.validation_split": VALIDATION_SPLITS,
    "model.interaction": INTERACTIONS,
    "model.cross_mode": CROSS_MODES,
    "model.normalization": NORMALIZATIONS,
    "model.mixed_precision": MIXED_PRECISIONS,
    "train.optimizer": OPTIMIZERS,
    "train.embedding_optimizer": EMBEDDING_OPTIMIZERS,
    "train.decay": DECAYS,
}


def is_tabular(file_format: str, header: bool) -> bool:
  """Whether data of ``file_format`` is read by named column roles
  (``data.label_column``, ...): 'csv', 'parquet', and 'tsv' with a header
  (without one, tsv holds Criteo-shaped rows)."""
  return file_format in TABULAR_FORMATS or (file_format == "tsv" and header)
