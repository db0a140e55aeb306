-- The store's tables (see src/delivery/pg_store.rs). Rows hold the same
-- versioned JSON records as the redb store ({"v":1,...}), so moving a data
-- dir over copies bytes; numbers the queries need are columns beside them.
-- Names compare bytewise (COLLATE "C"), as redb orders its keys.

CREATE TABLE inbox (
    id bigserial PRIMARY KEY,
    due_at_ms bigint NOT NULL,
    row bytea NOT NULL
);
CREATE INDEX inbox_due ON inbox (due_at_ms, id);

-- 16 bytes of SHA-256 per key (event id, body), as redb's window keeps.
CREATE TABLE dedupe (
    key bytea PRIMARY KEY,
    seen_at_ms bigint NOT NULL
);
CREATE INDEX dedupe_seen ON dedupe (seen_at_ms);

-- One row per chat ever queued to: its next seq (never reused) and the last
-- seq its worker took (in flight: follow-ups never rewrite it).
CREATE TABLE chats (
    chat text COLLATE "C" PRIMARY KEY,
    next_seq bigint NOT NULL DEFAULT 1,
    taken_through bigint NOT NULL DEFAULT 0
);

CREATE TABLE queue (
    chat text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    row bytea NOT NULL,
    PRIMARY KEY (chat, seq)
);

CREATE TABLE dead (
    id bigserial PRIMARY KEY,
    chat text COLLATE "C" NOT NULL,
    failed_at_ms bigint NOT NULL,
    row bytea NOT NULL
);
CREATE INDEX dead_by_chat ON dead (chat, id);

CREATE TABLE message_refs (
    chat text COLLATE "C" NOT NULL,
    topic bigint NOT NULL,
    number bigint NOT NULL,
    stored_at_ms bigint NOT NULL,
    row bytea NOT NULL,
    PRIMARY KEY (chat, topic, number)
);
CREATE INDEX message_refs_by_time ON message_refs (stored_at_ms);

CREATE TABLE posts (
    forum text COLLATE "C" NOT NULL,
    topic bigint NOT NULL,
    number bigint NOT NULL,
    stored_at_ms bigint NOT NULL,
    row bytea NOT NULL,
    PRIMARY KEY (forum, topic, number)
);
CREATE INDEX posts_by_time ON posts (stored_at_ms);

CREATE TABLE hourly_counts (
    hour bigint NOT NULL,
    chat text COLLATE "C" NOT NULL,
    delivered bigint NOT NULL,
    failed bigint NOT NULL,
    retried bigint NOT NULL,
    PRIMARY KEY (hour, chat)
);

CREATE TABLE recent_deliveries (
    chat text COLLATE "C" NOT NULL,
    n bigint NOT NULL,
    row bytea NOT NULL,
    PRIMARY KEY (chat, n)
);

CREATE TABLE quarantine (
    id bigserial PRIMARY KEY,
    at_ms bigint NOT NULL,
    source text NOT NULL,
    key text NOT NULL,
    error text NOT NULL,
    raw bytea NOT NULL
);
