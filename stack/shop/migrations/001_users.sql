CREATE TABLE users (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email       text NOT NULL,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
-- Emails are unique regardless of case: the 409 on a duplicate comes from here.
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
