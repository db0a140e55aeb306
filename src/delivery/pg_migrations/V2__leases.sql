-- Per-chat leases: which relay delivers the chat, until when (the
-- database's clock), and the epoch that fences its writes (it grows with
-- every new owner).
ALTER TABLE chats
    ADD COLUMN owner text,
    ADD COLUMN epoch bigint NOT NULL DEFAULT 0,
    ADD COLUMN lease_until timestamptz;
