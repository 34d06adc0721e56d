"""Model pieces built on :func:`attnkit.attention`.

* :mod:`attnkit.models.numpy_attention` - :class:`NumpyAttention` (NumPy only).
* :mod:`attnkit.models.layers` - the torch modules: scaled dot-product, self- and
  multi-head attention (multi-query and grouped-query, with a KV cache).
* :mod:`attnkit.models.positions` - sinusoidal positions, RoPE, ALiBi, relative buckets.
* :mod:`attnkit.models.transformer` - a Transformer block and a tiny language model.
* :mod:`attnkit.models.induction` - the induction task that model learns, and its probes.
* :mod:`attnkit.models.logit_control` - that model trained with QK-norm and soft-capping,
  the largest attention score and the attention entropy tracked.

Importing this package imports nothing: the torch modules are imported on first use.
"""
