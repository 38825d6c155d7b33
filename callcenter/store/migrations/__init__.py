"""Alembic migrations of the store (run by :func:`callcenter.store.db.create_schema`)."""
