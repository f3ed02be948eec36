-- hisp schema v1 (PostgreSQL). Times are unix milliseconds unless the column says _secs.
-- Keep in step with ../sqlite/0001_init.sql: same tables, columns and constraints.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE domains (
    id         BIGSERIAL PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE addresses (
    id            BIGSERIAL PRIMARY KEY,
    domain_id     BIGINT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    address       TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at    BIGINT NOT NULL
);
CREATE INDEX addresses_domain ON addresses(domain_id);

-- Private keys and certificates of local addresses and domains.
CREATE TABLE local_certs (
    id              BIGSERIAL PRIMARY KEY,
    domain_id       BIGINT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    address_id      BIGINT REFERENCES addresses(id) ON DELETE CASCADE,
    subject         TEXT NOT NULL,
    binding         TEXT NOT NULL CHECK (binding IN ('address', 'domain')),
    sha256          TEXT NOT NULL UNIQUE,
    subject_dn      TEXT NOT NULL,
    issuer_dn       TEXT NOT NULL,
    serial          TEXT NOT NULL,
    not_before_secs BIGINT NOT NULL,
    not_after_secs  BIGINT NOT NULL,
    can_sign        BIGINT NOT NULL,
    can_encrypt     BIGINT NOT NULL,
    cert_der        BYTEA NOT NULL,
    chain_pem       TEXT NOT NULL DEFAULT '',
    key_sealed      BYTEA NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX local_certs_subject ON local_certs(subject);
CREATE INDEX local_certs_domain ON local_certs(domain_id);

-- Trust anchors added by hand, per local domain.
CREATE TABLE anchors (
    id             BIGSERIAL PRIMARY KEY,
    domain_id      BIGINT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    sha256         TEXT NOT NULL,
    subject_dn     TEXT NOT NULL,
    not_after_secs BIGINT NOT NULL,
    cert_der       BYTEA NOT NULL,
    incoming       BIGINT NOT NULL,
    outgoing       BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    UNIQUE (domain_id, sha256)
);

-- Trust bundles (DirectTrust .p7b), their current certificates, and the domains using them.
CREATE TABLE bundles (
    id              BIGSERIAL PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    url             TEXT,
    file            TEXT,
    signer_der      BYTEA,
    refresh_secs    BIGINT NOT NULL,
    content_sha256  TEXT,
    last_attempt_at BIGINT,
    last_success_at BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL
);

CREATE TABLE bundle_domains (
    bundle_id BIGINT NOT NULL REFERENCES bundles(id) ON DELETE CASCADE,
    domain_id BIGINT NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    incoming  BIGINT NOT NULL,
    outgoing  BIGINT NOT NULL,
    PRIMARY KEY (bundle_id, domain_id)
);

CREATE TABLE bundle_certs (
    bundle_id      BIGINT NOT NULL REFERENCES bundles(id) ON DELETE CASCADE,
    sha256         TEXT NOT NULL,
    subject_dn     TEXT NOT NULL,
    not_after_secs BIGINT NOT NULL,
    cert_der       BYTEA NOT NULL,
    PRIMARY KEY (bundle_id, sha256)
);

CREATE TABLE api_tokens (
    id           BIGSERIAL PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    address_id   BIGINT REFERENCES addresses(id) ON DELETE CASCADE,
    is_admin     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at   BIGINT
);

-- Append-only, hash-chained: hash = SHA-256(prev_hash | the row's fields).
CREATE TABLE audit_log (
    id        BIGSERIAL PRIMARY KEY,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    event     TEXT NOT NULL,
    subject   TEXT NOT NULL,
    outcome   TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);

-- Delivery queue: one row per message to send, one per recipient of it.
CREATE TABLE queue_messages (
    id            BIGSERIAL PRIMARY KEY,
    message_id    TEXT NOT NULL,
    origin        TEXT NOT NULL CHECK (origin IN ('submission', 'mdn', 'dsn', 'relay')),
    envelope_from TEXT NOT NULL,
    envid         TEXT,
    ret           TEXT,
    body          BYTEA NOT NULL,
    size          BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL
);

CREATE TABLE queue_recipients (
    id               BIGSERIAL PRIMARY KEY,
    queue_message_id BIGINT NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    recipient        TEXT NOT NULL,
    domain           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts         BIGINT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    notify           TEXT,
    orcpt            TEXT,
    last_code        TEXT,
    last_error       TEXT,
    updated_at       BIGINT NOT NULL,
    UNIQUE (queue_message_id, recipient)
);
CREATE INDEX queue_recipients_due ON queue_recipients(state, next_attempt_at);

-- Decrypted inbound messages, per local address. The unique key makes replays idempotent.
CREATE TABLE mailbox (
    id            BIGSERIAL PRIMARY KEY,
    address_id    BIGINT NOT NULL REFERENCES addresses(id) ON DELETE CASCADE,
    message_id    TEXT NOT NULL,
    sender        TEXT NOT NULL,
    subject       TEXT NOT NULL DEFAULT '',
    kind          TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'mdn', 'dsn')),
    signer_sha256 TEXT,
    size          BIGINT NOT NULL,
    raw           BYTEA NOT NULL,
    seen          BIGINT NOT NULL DEFAULT 0,
    received_at   BIGINT NOT NULL,
    UNIQUE (address_id, message_id, sender)
);
CREATE INDEX mailbox_address ON mailbox(address_id, id);

-- Timely-and-reliable tracking of our outbound messages, per recipient.
CREATE TABLE tracking (
    id             BIGSERIAL PRIMARY KEY,
    message_id     TEXT NOT NULL,
    sender         TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'processed', 'dispatched', 'failed', 'timed-out')),
    reason         TEXT,
    final_delivery BIGINT NOT NULL,
    dsn_sent       BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    deadline_at    BIGINT NOT NULL,
    UNIQUE (message_id, recipient)
);
CREATE INDEX tracking_deadline ON tracking(state, deadline_at);

-- CRLs fetched from distribution points, shared by every node until nextUpdate.
CREATE TABLE crl_cache (
    url              TEXT PRIMARY KEY,
    der              BYTEA NOT NULL,
    next_update_secs BIGINT NOT NULL,
    fetched_at       BIGINT NOT NULL
);
