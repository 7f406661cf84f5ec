"""lantern_jax: LANTERN (LinkedIn, 2025) distillation in JAX / Flax NNX.

Imports stay light: nothing heavy or networked runs at import time.
"""
__version__ = "0.1.0"
