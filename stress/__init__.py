"""The stress run of django-planton: ``python stress/run.py`` (see README.md here)."""
