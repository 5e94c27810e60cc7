-- The delivery core's tables: its current state and its transactional outbox,
-- relayed to Kafka by Debezium's outbox event router
-- (services/connect/outbox-connector.json). Generated from producer/outbox.py
-- (outbox_ddl); tests/unit/test_outbox.py keeps this file equal to it.
-- payload may also be text: `projector simulate --to-outbox URL --outbox-payload text`.

CREATE TABLE IF NOT EXISTS deliveries_core (
    delivery_id   varchar(128) PRIMARY KEY,
    state         varchar(32)  NOT NULL,
    rider_id      varchar(128),
    last_event_id varchar(128) NOT NULL,
    updated_at    timestamptz  NOT NULL
);

CREATE TABLE IF NOT EXISTS outbox (
    id            uuid         PRIMARY KEY,
    aggregatetype varchar(255) NOT NULL,
    aggregateid   varchar(255) NOT NULL,
    type          varchar(255) NOT NULL,
    payload       jsonb,
    created_at    timestamptz  NOT NULL DEFAULT now()
);
