"""django-planton: database-driven scheduling of recurring maintenance work."""
