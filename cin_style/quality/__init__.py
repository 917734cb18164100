"""Measuring models: the per-style tables of ``cin-style evaluate`` (losses, the ratio to the
optimization method, style identification, border, identity). Imports inference and below."""
