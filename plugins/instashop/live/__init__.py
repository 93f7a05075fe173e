"""Live metrics: the Redis key schema (metrics) shared by the Spark app (spark/) and Superset's adapter."""
