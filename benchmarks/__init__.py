"""Benchmarks of django-planton against the limit: ``python -m benchmarks [--quick]``.

See ``benchmarks/README.md`` for what is measured and how to read the table.
"""
