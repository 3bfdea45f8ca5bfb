-- Lab 04: accounts with a balance, for the double-spend race (POST /accounts/{id}/debit).
-- `version` counts the committed changes of a row: optimistic locking writes a row only
-- if its version is still the one it read. There is deliberately no CHECK (balance >= 0):
-- the debit code itself must keep the balance from going negative (and a CHECK would not
-- catch a lost update anyway: that one never writes a negative number).
CREATE TABLE accounts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    balance     bigint NOT NULL,
    version     bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX accounts_owner_id_idx ON accounts (owner_id);
