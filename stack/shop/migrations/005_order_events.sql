-- Lab 08: the event log. Every change of an order's status is appended here, by a trigger,
-- IN THE SAME TRANSACTION as the change itself (a transactional outbox): the order row and
-- its event commit together or not at all. Whoever changes the status — the API, a worker,
-- learner code, a psql session — cannot forget the event, and there is no second write to
-- another system that could fail after the first succeeded (no dual write).
-- A relay (shop/events.py, run by the projector service) publishes unpublished rows to a
-- Redis Stream and then sets published_at: at-least-once (a crash between the two
-- publishes the row again; consumers skip what they have applied).
CREATE TABLE order_events (
    seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,   -- the global order of the log
    order_id      bigint NOT NULL,            -- no foreign key: the log outlives the rows it describes
    type          text NOT NULL CHECK (type IN ('created', 'status')),
    data          jsonb NOT NULL,             -- {user_id, status, total_cents}: the order after the change
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    published_at  timestamptz                 -- set by the relay once the event is in the stream
);
CREATE INDEX order_events_order_idx ON order_events (order_id, seq);
CREATE INDEX order_events_unpublished_idx ON order_events (seq) WHERE published_at IS NULL;

CREATE FUNCTION order_events_append() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NULL;                          -- not a state change (e.g. attempts + 1)
    END IF;
    INSERT INTO order_events (order_id, type, data)
    VALUES (NEW.id, CASE TG_OP WHEN 'INSERT' THEN 'created' ELSE 'status' END,
            jsonb_build_object('user_id', NEW.user_id, 'status', NEW.status, 'total_cents', NEW.total_cents));
    RETURN NULL;
END $$;

CREATE TRIGGER orders_append_event AFTER INSERT OR UPDATE OF status ON orders
    FOR EACH ROW EXECUTE FUNCTION order_events_append();

-- Append-only: an event is never changed or deleted; only the relay's published_at is set.
CREATE FUNCTION order_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.seq <> OLD.seq OR NEW.order_id <> OLD.order_id OR NEW.type <> OLD.type
       OR NEW.data <> OLD.data OR NEW.created_at <> OLD.created_at THEN
        RAISE EXCEPTION 'order_events is append-only (% of event %)', TG_OP, OLD.seq;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER order_events_immutable BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_append_only();
