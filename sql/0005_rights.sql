-- 0005 rights: what the data subject's rights need from the schema
-- (src/lib/rights.c does the work).
--
--   * audit: every operator action on personal data (export, rectify,
--     erase, suppression removal): who, from which host, when, what.
--     Append-only, like the ledger. The subject is never an address
--     (a subscriber id, an entry id): an audit row outlives an erasure.
--   * subscribers: a subscriber may become an erased shell, a row with
--     no address, no name and no attributes, kept because the ledger
--     refers to it. A shell never changes again.
--   * suppressions: suppress_erase_plain() is the one way an entry that
--     holds an erased address in plain may change: it becomes an entry
--     of kind hash holding the keyed hash instead, with its reason.

-- --- the audit table ---------------------------------------------------------

CREATE TABLE audit (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT now(),
    operator  text NOT NULL CHECK (operator <> '' AND operator !~ '[\x01-\x1f\x7f]'
                  AND length(operator) <= 200),
    host      text NOT NULL CHECK (host <> '' AND host !~ '[\x01-\x1f\x7f]'
                  AND length(host) <= 255),
    action    text NOT NULL CHECK (action IN ('export', 'rectify', 'erase',
                  'suppress-remove')),
    -- "subscriber 42", "suppression 17": never an address
    subject   text NOT NULL CHECK (subject ~ '^[a-z-]+ [0-9]+$'),
    detail    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(detail) = 'object')
);
CREATE INDEX audit_subject ON audit (subject, id);

-- The database clock says when, whatever the client passed.
CREATE FUNCTION audit_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.at := now();
    RETURN NEW;
END
$$;

CREATE FUNCTION audit_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit table is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER audit_insert
    BEFORE INSERT ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_on_insert();
CREATE TRIGGER audit_append_only
    BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
CREATE TRIGGER audit_no_truncate
    BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_change();

-- --- erased subscribers --------------------------------------------------------

-- 0001's CHECK constraints on email, email_key and name need no change:
-- a CHECK whose expression is NULL passes, so only NOT NULL goes. What a
-- shell may hold is stated once, here.
ALTER TABLE subscribers
    ADD COLUMN erased_at timestamptz,
    ALTER COLUMN email DROP NOT NULL,
    ALTER COLUMN email_key DROP NOT NULL,
    ADD CONSTRAINT subscribers_live_or_shell CHECK (CASE
        WHEN erased_at IS NULL THEN email IS NOT NULL AND email_key IS NOT NULL
        ELSE email IS NULL AND email_key IS NULL AND name = ''
             AND attrs = '{}'::jsonb END);

-- An erasure is stamped by the database clock and is final.
CREATE FUNCTION subscribers_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.erased_at IS NOT NULL THEN
        RAISE EXCEPTION 'subscriber % was erased: it cannot change', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.erased_at IS NOT NULL THEN
        NEW.erased_at := now();
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER subscribers_update
    BEFORE UPDATE ON subscribers
    FOR EACH ROW EXECUTE FUNCTION subscribers_on_update();

CREATE FUNCTION subscribers_refuse_insert_erased() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.erased_at IS NOT NULL THEN
        RAISE EXCEPTION 'a subscriber cannot be added erased'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER subscribers_insert
    BEFORE INSERT ON subscribers
    FOR EACH ROW EXECUTE FUNCTION subscribers_refuse_insert_erased();

-- --- plain suppression entries of an erased address ---------------------------

-- 0002's update rule, with one exception for erasure. While
-- suppress_erase_plain() runs it sets the flag "HASH|KEY" for this
-- transaction, and then, and only for that key and that hash:
--   * an address entry for KEY may become the hash entry of HASH
--     (mailbox key dropped; removed at the same moment if it was active,
--     since the erasure entry, which must be active, holds the address
--     from then on);
--   * its source and removal reason, and those of other entries of
--     HASH, may become "(erased)", whatever they said about the person.
-- Reason, who added it, when and the expiry never change. A deferred
-- check (below) refuses the commit unless the subscriber with KEY has
-- been erased in the same transaction, so the exception cannot be used
-- to lift someone's suppression.
CREATE OR REPLACE FUNCTION suppressions_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    flag text := coalesce(current_setting('assent.suppress_erase', true), '');
    converting boolean;
    redacting boolean;
BEGIN
    converting := flag <> '' AND OLD.kind = 'address' AND NEW.kind = 'hash'
        AND flag = NEW.value || '|' || OLD.value;
    redacting := flag <> '' AND OLD.kind = 'hash' AND NEW.kind = 'hash'
        AND OLD.value = NEW.value AND split_part(flag, '|', 1) = OLD.value;
    IF converting OR redacting THEN
        IF NOT EXISTS (SELECT 1 FROM suppressions WHERE kind = 'hash'
                        AND value = NEW.value AND reason = 'erasure'
                        AND removed_at IS NULL)
           OR (NEW.id, NEW.reason, NEW.added_by, NEW.added_at, NEW.expires_at)
           IS DISTINCT FROM
           (OLD.id, OLD.reason, OLD.added_by, OLD.added_at, OLD.expires_at)
           OR (converting AND NEW.mailbox_key IS NOT NULL)
           OR (redacting AND NEW.mailbox_key IS DISTINCT FROM OLD.mailbox_key)
           OR (NEW.source IS DISTINCT FROM OLD.source AND NEW.source <> '(erased)')
           OR (NEW.removed_reason IS DISTINCT FROM OLD.removed_reason
               AND NEW.removed_reason <> '(erased)'
               AND NOT (converting AND OLD.removed_at IS NULL))
           OR (OLD.removed_at IS NOT NULL AND (NEW.removed_at IS DISTINCT FROM OLD.removed_at
               OR NEW.removed_by IS DISTINCT FROM OLD.removed_by))
           OR (redacting AND OLD.removed_at IS NULL AND (NEW.removed_by IS NOT NULL
               OR NEW.removed_reason IS NOT NULL))
           OR (converting AND (NEW.removed_by IS NULL OR NEW.removed_reason IS NULL)) THEN
            RAISE EXCEPTION 'erasure may only turn suppression entry % into its hash', OLD.id
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        IF converting AND OLD.removed_at IS NULL THEN
            NEW.removed_at := now();
        END IF;
        RETURN NEW;
    END IF;
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

-- At commit: an address entry turned into a hash belonged to a person
-- erased in that transaction (no live subscriber has the key any more).
CREATE FUNCTION suppressions_erased_person_gone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM subscribers WHERE email_key = OLD.value) THEN
        RAISE EXCEPTION 'suppression entry % was hashed, but the person was not erased', OLD.id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER suppressions_erasure_complete
    AFTER UPDATE ON suppressions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.kind = 'address' AND NEW.kind = 'hash')
    EXECUTE FUNCTION suppressions_erased_person_gone();

-- At commit: personal fields of the ledger were blanked only for a
-- subscriber erased in that transaction.
CREATE FUNCTION ledger_erased_person_gone() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM subscribers WHERE id = NEW.subscriber_id
                    AND erased_at IS NOT NULL) THEN
        RAISE EXCEPTION 'ledger events of subscriber % were blanked, but the subscriber was not erased',
            NEW.subscriber_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER ledger_erasure_complete
    AFTER UPDATE ON ledger
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.erased_at IS NULL AND NEW.erased_at IS NOT NULL)
    EXECUTE FUNCTION ledger_erased_person_gone();

-- Erasure: every address entry (active or removed) for p_key becomes a
-- hash entry for p_hash, the keyed hash of p_key, which only the caller
-- can compute (the pepper is not in the database). Active ones are
-- removed by p_by, "superseded by the erasure entry": call this after
-- adding the erasure entry for p_hash, which keeps the address
-- suppressed, and before blanking the subscriber, who must be erased in
-- the same transaction. Their sources and removal reasons, and those of
-- other entries of p_hash, become "(erased)": free text about a person
-- is not kept after their erasure. Returns how many entries were hashed.
CREATE FUNCTION suppress_erase_plain(p_key text, p_hash text, p_by text)
RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer;
BEGIN
    IF p_key IS NULL OR p_key !~ '^[!-~]+@[a-z0-9.-]+$' OR p_key <> lower(p_key)
       OR p_hash IS NULL OR p_hash !~ '^[0-9a-f]{64}$' OR p_by IS NULL OR p_by = '' THEN
        RAISE EXCEPTION 'suppress_erase_plain: a canonical key, its hash and who'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM suppressions WHERE kind = 'hash' AND value = p_hash
                    AND reason = 'erasure' AND removed_at IS NULL) THEN
        RAISE EXCEPTION 'suppress_erase_plain: add the erasure entry first'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- only for a person being erased: locked now, gone by commit
    PERFORM 1 FROM subscribers WHERE email_key = p_key FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'suppress_erase_plain: no live subscriber has this address'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    PERFORM set_config('assent.suppress_erase', p_hash || '|' || p_key, true);
    UPDATE suppressions
       SET kind = 'hash', value = p_hash, mailbox_key = NULL, source = '(erased)',
           removed_by = coalesce(removed_by, p_by),
           removed_reason = CASE WHEN removed_reason IS NULL
               THEN 'superseded by the erasure entry' ELSE '(erased)' END
     WHERE kind = 'address' AND value = p_key;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- what other entries of the hash said about the person goes too
    UPDATE suppressions
       SET source = '(erased)',
           removed_reason = CASE WHEN removed_reason IS NULL THEN NULL ELSE '(erased)' END
     WHERE kind = 'hash' AND value = p_hash AND reason <> 'erasure'
       AND (source <> '(erased)' OR removed_reason <> '(erased)');
    PERFORM set_config('assent.suppress_erase', '', true);
    RETURN n;
END
$$;
