-- Customer care (issue 15, contract §13): verified contact details and notice choices, one-time
-- codes that confirm a new phone or email, requests for staff review (name, address, new
-- owner), and the durable outbox of notices.

-- A customer's contact details and notice choices; a phone or email is here only once confirmed
-- by a one-time code sent to it (care/verification.py). No row: no contact known, no notice sent.
CREATE TABLE customer_contacts (
    customer_id        bigint PRIMARY KEY REFERENCES customers (id),
    phone              text CHECK (phone ~ '^\+84[0-9]{9}$'),
    email              text CHECK (length(email) <= 254 AND email !~ '[[:cntrl:][:space:]]'),
    preferred_channel  text NOT NULL DEFAULT 'sms' CHECK (preferred_channel IN ('sms', 'email', 'both')),
    language           text NOT NULL DEFAULT 'vi' CHECK (language IN ('vi', 'en')),
    notify_bill        boolean NOT NULL DEFAULT true,
    notify_threshold   boolean NOT NULL DEFAULT false,
    notify_outage      boolean NOT NULL DEFAULT true,
    -- Usage alert: this many kWh in a billing month, or this % above the last issued bill.
    threshold_kwh      integer CHECK (threshold_kwh BETWEEN 1 AND 1000000),
    threshold_pct      integer CHECK (threshold_pct BETWEEN 1 AND 1000),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- One-time codes. Only an HMAC of the code is kept (keyed with the site's secret, so a copy of
-- the table does not give the codes away by trying all 10^6); a code expires, allows a few
-- tries, and is consumed by its first correct entry.
CREATE TABLE contact_verifications (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL REFERENCES customers (id),
    channel      text NOT NULL CHECK (channel IN ('phone', 'email')),
    value        text NOT NULL,
    code_hash    bytea NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    attempts     integer NOT NULL DEFAULT 0,
    consumed_at  timestamptz,
    client_addr  text NOT NULL DEFAULT ''
);
CREATE INDEX contact_verifications_customer_idx ON contact_verifications (customer_id, created_at DESC);

-- Changes a customer asks for but may not make: staff approve or reject them at /staff/reviews.
CREATE TABLE account_requests (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers (id),
    kind            text NOT NULL CHECK (kind IN ('name', 'address', 'new_owner')),
    current_value   text NOT NULL,
    requested_value text NOT NULL CHECK (length(requested_value) BETWEEN 1 AND 300),
    note            text NOT NULL DEFAULT '' CHECK (length(note) <= 1000),
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'approved', 'rejected')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    decided_at      timestamptz,
    decided_by      text,
    decision_reason text
);
CREATE INDEX account_requests_pending_idx ON account_requests (created_at) WHERE state = 'pending';
-- At most one open request of each kind per customer.
CREATE UNIQUE INDEX account_requests_one_open_idx ON account_requests (customer_id, kind)
    WHERE state = 'pending';

-- The outbox: one row per notice and channel, rendered in the customer's language when queued.
-- (dedupe_key, channel) is unique, so queueing the same notice twice is a no-op.
-- States: pending → sending (claimed by a worker until lease_until) → sent; a failed try goes
-- back to pending with next_attempt_at pushed out; after max tries, or a permanent refusal,
-- dead (last_error says why); a notice past expires_at is expired instead of sent.
CREATE TABLE notices (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('bill_issued', 'threshold', 'outage')),
    customer_id      bigint NOT NULL REFERENCES customers (id),
    channel          text NOT NULL CHECK (channel IN ('email', 'sms')),
    recipient        text NOT NULL,
    language         text NOT NULL CHECK (language IN ('vi', 'en')),
    subject          text NOT NULL DEFAULT '',
    body             text NOT NULL,
    dedupe_key       text NOT NULL,
    state            text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'sending', 'sent', 'dead', 'expired')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    expires_at       timestamptz,
    claimed_by       text,
    lease_until      timestamptz,
    last_error       text,
    created_at       timestamptz NOT NULL,
    sent_at          timestamptz,
    UNIQUE (dedupe_key, channel)
);
-- The workers' claim query: due rows of one channel, oldest first.
CREATE INDEX notices_due_idx ON notices (channel, next_attempt_at) WHERE state = 'pending';
CREATE INDEX notices_leased_idx ON notices (lease_until) WHERE state = 'sending';
CREATE INDEX notices_expiry_idx ON notices (expires_at) WHERE state = 'pending' AND expires_at IS NOT NULL;
CREATE INDEX notices_customer_idx ON notices (customer_id, created_at DESC);
