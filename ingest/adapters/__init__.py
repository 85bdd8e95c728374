"""ingest/adapters package."""
