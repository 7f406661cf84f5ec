"""HTTP serving of the fit classifier and the explainer: `python -m lantern_jax.serve` (see app.py)."""
