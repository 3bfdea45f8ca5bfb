-- Lab 07: the orders table is the outbox. The order service's sweep (shop/resilience.py)
-- publishes an unfinished order again when nobody touched it for a while (its message was
-- lost with a restarted broker, or never published while the broker was down).
ALTER TABLE orders
    ADD COLUMN requeued     integer NOT NULL DEFAULT 0,   -- how often the sweep published it again
    ADD COLUMN requeued_at  timestamptz;                  -- when it last did
