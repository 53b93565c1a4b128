-- Staff: more than one role per user, and per-user API tokens for the JSON API (/api/v1).
--
-- staff_users.role stays the user's main role; extra_roles adds others, so an engineer can be
-- given the billing role without losing their own ("engineers cannot export bills unless given
-- the role").
ALTER TABLE staff_users
    ADD COLUMN extra_roles text[] NOT NULL DEFAULT '{}'
    CHECK (extra_roles <@ ARRAY['billing', 'engineer', 'admin']::text[]);

-- Only a SHA-256 of each token is stored (tokens are 256-bit random strings, so a fast hash is
-- enough); the token itself is shown once, when it is made. `prefix` lets people tell them apart.
CREATE TABLE api_tokens (
    id            integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id       integer NOT NULL REFERENCES staff_users (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '' CHECK (length(name) <= 100),
    token_sha256  bytea NOT NULL UNIQUE,
    prefix        text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_tokens_user_idx ON api_tokens (user_id);
