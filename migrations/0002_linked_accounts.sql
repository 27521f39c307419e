-- Fetch-after-notify for Oura and WHOOP: linked vendor accounts (OAuth tokens, encrypted)
-- and notifications parked until they can be fetched.

CREATE TABLE linked_accounts (
    vendor         text        NOT NULL,
    vendor_user_id text        NOT NULL,
    user_id        text        NOT NULL,
    -- XChaCha20-Poly1305 under TOKEN_ENCRYPTION_KEY: 24-byte nonce || ciphertext || tag,
    -- bound (associated data) to vendor, vendor_user_id and the column, so a value copied
    -- to another row or column does not decrypt.
    access_token   bytea       NOT NULL,
    refresh_token  bytea       NOT NULL,
    expires_at     timestamptz NULL,
    scopes         text        NULL,
    status         text        NOT NULL DEFAULT 'active',
    -- Bumped by every token change; a refresher that finds a newer version under its row
    -- lock uses the stored pair instead of refreshing again (refresh tokens rotate).
    token_version  bigint      NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT linked_accounts_pkey PRIMARY KEY (vendor, vendor_user_id),
    CONSTRAINT linked_accounts_vendor_known CHECK (vendor IN ('oura', 'whoop')),
    CONSTRAINT linked_accounts_status_known CHECK (status IN ('active', 'reauth_required'))
);

CREATE INDEX linked_accounts_user_idx ON linked_accounts (user_id);

COMMENT ON TABLE linked_accounts IS
    'Vendor accounts whose webhooks the processor fetches data for (processor link-account). '
    'Tokens are encrypted with TOKEN_ENCRYPTION_KEY; never store or log them in clear.';
COMMENT ON COLUMN linked_accounts.vendor_user_id IS
    'The vendor''s user id as its webhooks name it (Oura user_id, WHOOP user_id).';
COMMENT ON COLUMN linked_accounts.user_id IS
    'Our user id: every reading fetched for this account is stored under it.';
COMMENT ON COLUMN linked_accounts.expires_at IS
    'When the access token expires; NULL when unknown (then it is refreshed only on a 401).';
COMMENT ON COLUMN linked_accounts.status IS
    'active, or reauth_required after the vendor refused a refresh: notifications are parked '
    'until the account is linked again.';

CREATE TABLE parked_notifications (
    -- The raw envelope's id: a replayed envelope parks once.
    event_id        text        PRIMARY KEY,
    vendor          text        NOT NULL,
    vendor_user_id  text        NOT NULL,
    body            bytea       NOT NULL,
    headers         jsonb       NOT NULL,
    received_at     timestamptz NOT NULL,
    raw_partition   integer     NOT NULL,
    raw_offset      bigint      NOT NULL,
    reason          text        NOT NULL,
    detail          text        NULL,
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    parked_at       timestamptz NOT NULL DEFAULT now(),
    -- Set when the notification will never be retried (unscorable, not_found, rejected):
    -- the row stays as the record of why it produced no readings.
    closed_at       timestamptz NULL
);

CREATE INDEX parked_notifications_due_idx
    ON parked_notifications (next_attempt_at) WHERE closed_at IS NULL;
CREATE INDEX parked_notifications_account_idx
    ON parked_notifications (vendor, vendor_user_id) WHERE closed_at IS NULL;

COMMENT ON TABLE parked_notifications IS
    'Oura/WHOOP notifications that could not be fetched when consumed (unlinked user, account '
    'needing re-auth, rate limit, vendor outage, WHOOP score pending), retried by the processor; '
    'and closed rows recording notifications that yielded nothing (unscorable, not_found, rejected). '
    'Retried rows are deleted once their readings are committed.';
COMMENT ON COLUMN parked_notifications.reason IS
    'Why it is parked: unlinked, reauth_required, token_key, refresh_failed, rate_limited, '
    'vendor_unavailable, pending_score (retried); unscorable, no_score_state, not_found, rejected (closed).';
COMMENT ON COLUMN parked_notifications.next_attempt_at IS
    'When the retry task takes it next (backoff, Retry-After); link-account sets it to now().';
