"""The delivery core's half of the pipeline: what writes the events the read side folds.

``outbox`` writes each event as the core does (its row and the event in one PostgreSQL
transaction, relayed to Kafka by Debezium), ``simulate`` makes a realistic seeded
stream, ``produce`` sends a stream to Kafka. This package imports ``schema`` (the
contract) and never the read side (``projector``, ``query_api``).
"""
