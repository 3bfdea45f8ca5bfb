-- Lab 02: users may set a password (POST /users) to log in at POST /auth/token.
-- Only a salted scrypt hash is stored (shop/auth.py); NULL = no password, no login.
ALTER TABLE users ADD COLUMN password_hash text;
