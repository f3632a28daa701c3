"""Feature schema shared by the input pipeline, the model and the export.

A ``FeatureSchema`` names the dense features, the categorical features (each
with its bucket count, optional vocabulary and embedding dimension) and the
label. The model builds one embedding table per categorical feature from it;
the pipeline and the serving signature turn raw values into model inputs with
the same schema, so training and serving cannot disagree.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

DENSE_KEY = "dense_features"
SPARSE_KEY = "sparse_features"


@dataclasses.dataclass(frozen=True)
class CategoricalFeature:
  """One categorical feature.

  Raw strings map to ids in ``[0, num_buckets)``: by
  ``tf.strings.to_hash_bucket_fast`` when ``vocabulary`` is None, else by
  position in ``vocabulary`` (out-of-vocabulary -> bucket 0, so a vocabulary
  feature has ``num_buckets == len(vocabulary) + 1``).
  """
  name: str
  num_buckets: int
  embedding_dim: int
  vocabulary: Optional[tuple[str, ...]] = None

  def __post_init__(self):
    if self.num_buckets <= 0:
      raise ValueError(f"feature {self.name!r}: num_buckets must be > 0")
    if self.embedding_dim <= 0:
      raise ValueError(f"feature {self.name!r}: embedding_dim must be > 0")
    if self.vocabulary is not None and self.num_buckets != len(self.vocabulary) + 1:
      raise ValueError(f"feature {self.name!r}: num_buckets must be "
                       "len(vocabulary) + 1 (bucket 0 is out-of-vocabulary)")


@dataclasses.dataclass(frozen=True)
class FeatureSchema:
  dense: tuple[str, ...]
  categorical: tuple[CategoricalFeature, ...]
  label: str = "label"

  @property
  def num_dense(self) -> int:
    return len(self.dense)

  @property
  def categorical_names(self) -> tuple[str, ...]:
    return tuple(f.name for f in self.categorical)


def criteo_schema(num_buckets: int | Sequence[int] = 10_000,
                  embedding_dim: int = 8,
                  num_dense: int = 13,
                  num_categorical: int = 26) -> FeatureSchema:
  """Criteo Display Advertising: dense I1..I13, categorical C1..C26."""
  if isinstance(num_buckets, int):
    num_buckets = [num_buckets] * num_categorical
  if len(num_buckets) != num_categorical:
    raise ValueError(f"num_buckets has {len(num_buckets)} entries, expected "
                     f"{num_categorical}")
  return FeatureSchema(
      dense=tuple(f"I{i + 1}" for i in range(num_dense)),
      categorical=tuple(
          CategoricalFeature(f"C{i + 1}", int(n), embedding_dim)
          for i, n in enumerate(num_buckets)),
  )
