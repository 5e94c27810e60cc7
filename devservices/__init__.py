"""Local backing services for tests and development: a real Kafka broker and a real
PostgreSQL server, without Docker. Run through ``scripts/services`` (see ``cli``)."""
