"""Input data: feature schema, Criteo TSV/TFRecord pipelines, synthetic data, MovieLens.

Every dataset this package yields has elements ``(features, label)``:

* ``features["dense_features"]``: float32 ``[batch, num_dense]`` (already
  transformed: missing -> 0, then ``log(1 + max(x, 0))``);
* ``features["sparse_features"]``: dict ``{name: int32 [batch]}`` of bucket ids
  in ``[0, num_buckets)``;
* ``label``: float32 ``[batch]`` in {0, 1}.

The trainer, the twin evaluator, export and the benchmarks read data only
through this package.
"""
