"""The money engine: holds and settlements group-committed by one writer per instance (SQLite and PostgreSQL)."""
