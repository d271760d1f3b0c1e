"""Quantization recipes (JSON data), installed as the package ``qmlp_nncf.recipes``."""
