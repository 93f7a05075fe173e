"""The warehouse: its schema (migrations), partitions and retention, sessions, rollups, backfills,
reconciliation, and the spec's four queries."""
