"""The algorithms, each over a backend where it has two: the post-pass (``postpass``: ``nncf.quantize`` and the rule
post-pass, with ``torch_backend`` / ``openvino_backend``), weight error correction (``error_correction``),
reparameterization (``reparam``), range tuning (``range_tuning``), grid alignment (``zero_grid``) and the ``auto:``
search (``auto``, on the torch ``probe``).

Built on ``rules`` and ``recipes``; no algorithm imports model or data sources, training or the zoo."""
