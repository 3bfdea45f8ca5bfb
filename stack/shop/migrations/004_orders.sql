-- Lab 05: orders accepted by the API and processed by Celery workers.
-- Status: pending → processing → done | failed | dead, with `retrying` between attempts
-- (see shop/orders.py for what each one means).
CREATE TABLE orders (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    items            jsonb NOT NULL,
    total_cents      bigint NOT NULL CHECK (total_cents > 0),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'processing', 'retrying', 'done', 'failed', 'dead')),
    -- A client's Idempotency-Key header: a retried POST finds its first order here.
    idempotency_key  text UNIQUE,
    request_hash     text NOT NULL,
    -- Lab switches: how the simulated payment call behaves for this order.
    fail_first       integer NOT NULL DEFAULT 0 CHECK (fail_first >= 0),
    work             text NOT NULL DEFAULT 'io' CHECK (work IN ('io', 'cpu')),
    attempts         integer NOT NULL DEFAULT 0,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    done_at          timestamptz
);
CREATE INDEX orders_status_idx ON orders (status);

-- Every delivery of an order's task to a worker, written by the worker before it runs
-- the task body: redeliveries, retries and their spacing are rows here.
CREATE TABLE order_attempts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    worker       text NOT NULL,
    task_id      text,
    retries      integer NOT NULL DEFAULT 0,          -- Celery's retry count for this delivery
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,                         -- NULL: the worker died mid-task
    outcome      text,                                -- done, skipped, retrying, failed, dead
    error        text
);
CREATE INDEX order_attempts_order_idx ON order_attempts (order_id);

-- The order's effect (the payment). The UNIQUE key is the idempotency guard's anchor:
-- a second delivery of the same order cannot charge twice, whatever the timing.
CREATE TABLE payments (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    idempotency_key  text NOT NULL UNIQUE,
    order_id         bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    amount_cents     bigint NOT NULL CHECK (amount_cents > 0),
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
