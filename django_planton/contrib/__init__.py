"""Bridges to the worker systems a Django project already runs (optional extras)."""
