-- Staff sessions kept on the server as well as in the signed cookie, so that signing out,
-- changing the password or deactivating the user ends them at once: a copied or kept cookie is
-- then worth nothing. The cookie holds a random 256-bit token; only its SHA-256 is stored.
CREATE TABLE staff_sessions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       integer NOT NULL REFERENCES staff_users (id) ON DELETE CASCADE,
    token_sha256  bytea NOT NULL UNIQUE,
    created_at    timestamptz NOT NULL DEFAULT now(),
    address       text NOT NULL DEFAULT '' CHECK (length(address) <= 64),
    ended_at      timestamptz,
    end_reason    text CHECK (end_reason IN ('sign-out', 'password')),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);
-- The live sessions of a user (a password change ends them all).
CREATE INDEX staff_sessions_live_idx ON staff_sessions (user_id) WHERE ended_at IS NULL;
-- Old rows are deleted after a while (schema/users.py).
CREATE INDEX staff_sessions_created_idx ON staff_sessions (created_at);
