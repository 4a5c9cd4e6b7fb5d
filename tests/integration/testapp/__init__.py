"""A test app whose ``ready()`` registers tasks, for ``run_planton`` in a subprocess."""
