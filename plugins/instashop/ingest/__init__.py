"""Ingest: Kafka change events -> business events, written exactly once into the warehouse.

decode (the fast typed path or the general Debezium one) -> events (one business event per change)
-> consumer (the poll loop) -> warehouse_writer (one transaction per batch; dead letters beside it).
"""
