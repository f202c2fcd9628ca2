"""Persistence: SQLAlchemy 2 models, the database engine, the batched writer, migrations."""
