-- hisp schema v1 (SQLite). Times are unix milliseconds unless the column says _secs.
-- Keep in step with ../postgres/0001_init.sql: same tables, columns and constraints.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE domains (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE addresses (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id     INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    address       TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX addresses_domain ON addresses(domain_id);

-- Private keys and certificates of local addresses and domains.
CREATE TABLE local_certs (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id       INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    address_id      INTEGER REFERENCES addresses(id) ON DELETE CASCADE,
    subject         TEXT NOT NULL,
    binding         TEXT NOT NULL CHECK (binding IN ('address', 'domain')),
    sha256          TEXT NOT NULL UNIQUE,
    subject_dn      TEXT NOT NULL,
    issuer_dn       TEXT NOT NULL,
    serial          TEXT NOT NULL,
    not_before_secs INTEGER NOT NULL,
    not_after_secs  INTEGER NOT NULL,
    can_sign        INTEGER NOT NULL,
    can_encrypt     INTEGER NOT NULL,
    cert_der        BLOB NOT NULL,
    chain_pem       TEXT NOT NULL DEFAULT '',
    key_sealed      BLOB NOT NULL,
    created_at      INTEGER NOT NULL
);
CREATE INDEX local_certs_subject ON local_certs(subject);
CREATE INDEX local_certs_domain ON local_certs(domain_id);

-- Trust anchors added by hand, per local domain.
CREATE TABLE anchors (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    domain_id      INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    sha256         TEXT NOT NULL,
    subject_dn     TEXT NOT NULL,
    not_after_secs INTEGER NOT NULL,
    cert_der       BLOB NOT NULL,
    incoming       INTEGER NOT NULL,
    outgoing       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    UNIQUE (domain_id, sha256)
);

-- Trust bundles (DirectTrust .p7b), their current certificates, and the domains using them.
CREATE TABLE bundles (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    name            TEXT NOT NULL UNIQUE,
    url             TEXT,
    file            TEXT,
    signer_der      BLOB,
    refresh_secs    INTEGER NOT NULL,
    content_sha256  TEXT,
    last_attempt_at INTEGER,
    last_success_at INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL
);

CREATE TABLE bundle_domains (
    bundle_id INTEGER NOT NULL REFERENCES bundles(id) ON DELETE CASCADE,
    domain_id INTEGER NOT NULL REFERENCES domains(id) ON DELETE CASCADE,
    incoming  INTEGER NOT NULL,
    outgoing  INTEGER NOT NULL,
    PRIMARY KEY (bundle_id, domain_id)
);

CREATE TABLE bundle_certs (
    bundle_id      INTEGER NOT NULL REFERENCES bundles(id) ON DELETE CASCADE,
    sha256         TEXT NOT NULL,
    subject_dn     TEXT NOT NULL,
    not_after_secs INTEGER NOT NULL,
    cert_der       BLOB NOT NULL,
    PRIMARY KEY (bundle_id, sha256)
);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash   TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    address_id   INTEGER REFERENCES addresses(id) ON DELETE CASCADE,
    is_admin     INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
);

-- Append-only, hash-chained: hash = SHA-256(prev_hash | the row's fields).
CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
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
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL,
    origin        TEXT NOT NULL CHECK (origin IN ('submission', 'mdn', 'dsn', 'relay')),
    envelope_from TEXT NOT NULL,
    envid         TEXT,
    ret           TEXT,
    body          BLOB NOT NULL,
    size          INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);

CREATE TABLE queue_recipients (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    queue_message_id INTEGER NOT NULL REFERENCES queue_messages(id) ON DELETE CASCADE,
    recipient        TEXT NOT NULL,
    domain           TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_until      INTEGER,
    notify           TEXT,
    orcpt            TEXT,
    last_code        TEXT,
    last_error       TEXT,
    updated_at       INTEGER NOT NULL,
    UNIQUE (queue_message_id, recipient)
);
CREATE INDEX queue_recipients_due ON queue_recipients(state, next_attempt_at);

-- Decrypted inbound messages, per local address. The unique key makes replays idempotent.
CREATE TABLE mailbox (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    address_id    INTEGER NOT NULL REFERENCES addresses(id) ON DELETE CASCADE,
    message_id    TEXT NOT NULL,
    sender        TEXT NOT NULL,
    subject       TEXT NOT NULL DEFAULT '',
    kind          TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'mdn', 'dsn')),
    signer_sha256 TEXT,
    size          INTEGER NOT NULL,
    raw           BLOB NOT NULL,
    seen          INTEGER NOT NULL DEFAULT 0,
    received_at   INTEGER NOT NULL,
    UNIQUE (address_id, message_id, sender)
);
CREATE INDEX mailbox_address ON mailbox(address_id, id);

-- Timely-and-reliable tracking of our outbound messages, per recipient.
CREATE TABLE tracking (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id     TEXT NOT NULL,
    sender         TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'processed', 'dispatched', 'failed', 'timed-out')),
    reason         TEXT,
    final_delivery INTEGER NOT NULL,
    dsn_sent       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    deadline_at    INTEGER NOT NULL,
    UNIQUE (message_id, recipient)
);
CREATE INDEX tracking_deadline ON tracking(state, deadline_at);

-- CRLs fetched from distribution points, shared by every node until nextUpdate.
CREATE TABLE crl_cache (
    url              TEXT PRIMARY KEY,
    der              BLOB NOT NULL,
    next_update_secs INTEGER NOT NULL,
    fetched_at       INTEGER NOT NULL
);
