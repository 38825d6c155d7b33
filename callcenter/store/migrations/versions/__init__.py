"""Alembic revisions, oldest first: ``r0001`` baseline (call trail), ``r0002`` dossiers."""
