"""Capture: the shop database's changes into Kafka (the Debezium connector, the topics it and we write)."""
