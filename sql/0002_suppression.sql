-- 0002 suppression: the global suppression list.
--
-- No message goes to an address that an active entry here matches (see
-- suppress_gate() in src/lib/suppress.c). The database keeps the list
-- honest on its own:
--   * at most one active entry per (kind, value);
--   * entries are never deleted: removal sets removed_at, removed_by and
--     removed_reason, once, and nothing else of an entry ever changes;
--   * added_at and removed_at come from the database clock.
--
-- Subscriptions are independent of this table: a suppressed subscriber
-- stays subscribed and is simply never sent to.

CREATE TABLE suppressions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('address', 'domain', 'hash')),
    -- address: the canonical key (lower case, domain as A-label);
    -- domain: the A-label domain; hash: HMAC-SHA256(pepper, key) in hex.
    value           text COLLATE "C" NOT NULL,
    -- gmail.com and googlemail.com addresses only: the mailbox without
    -- dots and +tag, "@gmail.com" (used when suppress.gmail_mailbox_key).
    mailbox_key     text COLLATE "C",
    reason          text NOT NULL CHECK (reason IN ('unsubscribe', 'hard-bounce',
                        'complaint', 'soft-bounce-limit', 'manual', 'erasure',
                        'imported')),
    source          text NOT NULL CHECK (source <> '' AND source !~ '[\x01-\x1f\x7f]'
                        AND octet_length(source) <= 1000),
    added_by        text NOT NULL CHECK (added_by <> '' AND added_by !~ '[\x01-\x1f\x7f]'
                        AND octet_length(added_by) <= 200),
    added_at        timestamptz NOT NULL DEFAULT now(),
    expires_at      timestamptz,
    removed_at      timestamptz,
    removed_by      text CHECK (removed_by <> '' AND removed_by !~ '[\x01-\x1f\x7f]'
                        AND octet_length(removed_by) <= 200),
    removed_reason  text CHECK (removed_reason <> '' AND removed_reason !~ '[\x01-\x1f\x7f]'
                        AND octet_length(removed_reason) <= 1000),
    CHECK (CASE kind
        WHEN 'address' THEN value ~ '^[!-?A-~]+@[a-z0-9.-]+$' AND value = lower(value)
                            AND octet_length(value) <= 254
        WHEN 'domain'  THEN value ~ '^[a-z0-9-]+(\.[a-z0-9-]+)+$'
                            AND octet_length(value) <= 255
        WHEN 'hash'    THEN value ~ '^[0-9a-f]{64}$'
    END),
    -- an address entry's mailbox key in plain; a hash entry's (an
    -- erased gmail address) as its keyed hash
    CHECK (mailbox_key IS NULL
        OR (kind = 'address' AND mailbox_key ~ '^[!-~]+@gmail\.com$')
        OR (kind = 'hash' AND mailbox_key ~ '^[0-9a-f]{64}$')),
    CHECK ((removed_at IS NULL) = (removed_by IS NULL)
       AND (removed_at IS NULL) = (removed_reason IS NULL))
);

-- One active entry per (kind, value).
CREATE UNIQUE INDEX suppressions_active ON suppressions (kind, value)
    WHERE removed_at IS NULL;
-- The gate's lookups: equality only, one probe per recipient and kind.
-- Hash indexes, because with 1.1 million entries a B-tree descent cost
-- several times as much (bench/suppression: 13 us a recipient with
-- B-trees, 6 to 7 with these); one index per kind, so that the small
-- domain and hash indexes stay in cache while the address index is big.
CREATE INDEX suppressions_gate_address ON suppressions USING hash (value)
    WHERE removed_at IS NULL AND kind = 'address';
CREATE INDEX suppressions_gate_domain ON suppressions USING hash (value)
    WHERE removed_at IS NULL AND kind = 'domain';
CREATE INDEX suppressions_gate_hash ON suppressions USING hash (value)
    WHERE removed_at IS NULL AND kind = 'hash';
CREATE INDEX suppressions_gate_mailbox ON suppressions USING hash (mailbox_key)
    WHERE removed_at IS NULL AND mailbox_key IS NOT NULL;

-- New entries: the database clock says when, and nothing starts removed.
CREATE FUNCTION suppressions_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.removed_at IS NOT NULL OR NEW.removed_by IS NOT NULL
       OR NEW.removed_reason IS NOT NULL THEN
        RAISE EXCEPTION 'a suppression entry cannot be added already removed'
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.added_at := now();
    IF NEW.expires_at IS NOT NULL AND NEW.expires_at <= NEW.added_at THEN
        RAISE EXCEPTION 'a suppression entry cannot expire in the past (%)', NEW.expires_at
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;

-- Only the removal columns change, once, and the database clock
-- stamps the removal.
CREATE FUNCTION suppressions_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.removed_at IS NOT NULL THEN
        RAISE EXCEPTION 'suppression entry % was removed already: it cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (NEW.id, NEW.kind, NEW.value, NEW.mailbox_key, NEW.reason, NEW.source,
        NEW.added_by, NEW.added_at, NEW.expires_at)
       IS DISTINCT FROM
       (OLD.id, OLD.kind, OLD.value, OLD.mailbox_key, OLD.reason, OLD.source,
        OLD.added_by, OLD.added_at, OLD.expires_at) THEN
        RAISE EXCEPTION 'suppression entries never change; remove and add instead'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.removed_by IS NULL OR NEW.removed_reason IS NULL THEN
        RAISE EXCEPTION 'removing suppression entry % needs who and why', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.removed_at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION suppressions_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'suppression entries are never deleted: % refused; remove them instead',
        TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER suppressions_insert
    BEFORE INSERT ON suppressions
    FOR EACH ROW EXECUTE FUNCTION suppressions_on_insert();
CREATE TRIGGER suppressions_update
    BEFORE UPDATE ON suppressions
    FOR EACH ROW EXECUTE FUNCTION suppressions_on_update();
CREATE TRIGGER suppressions_no_delete
    BEFORE DELETE ON suppressions
    FOR EACH ROW EXECUTE FUNCTION suppressions_refuse_delete();
CREATE TRIGGER suppressions_no_truncate
    BEFORE TRUNCATE ON suppressions
    FOR EACH STATEMENT EXECUTE FUNCTION suppressions_refuse_delete();
