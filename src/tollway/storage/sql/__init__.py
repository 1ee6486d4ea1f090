"""SQL repositories, the schema, migrations and the unit of work (SQLAlchemy Core on SQLite and PostgreSQL)."""
