-- 0003 ledger chain: every consent event carries digests that chain it to
-- the subscriber's previous event, so that a change made behind the
-- database's back (a superuser who disabled the triggers) shows.
--
-- Each subscriber has a chain of its own, numbered by seq = 1, 2, 3...
-- The columns:
--   salt             16 random bytes, chosen at insert
--   personal_sha256  SHA-256(salt || P)
--   content_sha256   SHA-256(C)
--   chain_sha256     SHA-256(previous chain_sha256 of the subscriber, or
--                    32 zero bytes for seq 1 || content_sha256)
-- where P and C are canonical texts, as bytes:
--   a field is written as "-" when NULL, else as the lower-case hex of
--   the UTF-8 bytes of its text (so "" is the empty string and no field
--   can contain the separator); fields are joined with "|".
--   P = ip | user_agent | page | source | import_file
--   C = subscriber_id | seq | list_id | action | channel | status_before
--       | status_after | at | operator | consent_text_version
--       | consent_text_sha256 | basis | basis_expires_at | import_sha256
--       | import_line | personal_sha256
--   Texts: integers in decimal; ip as PostgreSQL's text(inet), which
--   always carries the prefix length ("192.0.2.1/32", "2001:db8::7/128");
--   at and basis_expires_at as integer microseconds since 1970-01-01 UTC
--   in decimal; personal_sha256 as its 64 lower-case hex digits;
--   consent_text_sha256 (the SHA-256 of the wording the event names, hex,
--   copied from consent_texts by the trigger: see 0004) as it is stored.
-- src/lib/ledger.c recomputes all of this in C (ledger_verify()), without
-- trusting any function stored here.
--
-- Personal data enters the chain only through personal_sha256: erasure
-- (ledger_erase_personal) blanks the five personal fields and the salt
-- and the chain stays valid; without the salt nobody can test a guess
-- against the digest that remains.
--
-- Appends are chained by a BEFORE INSERT trigger, whoever inserts. It
-- locks the subscriber's row, which serialises appends per subscriber;
-- under READ COMMITTED the trigger's next query then sees the event the
-- previous holder of the lock committed. The trigger refuses any other
-- isolation level, where the snapshot could predate that event and two
-- events would get the same seq.
--
-- The statement that locks the subscriber's row also counts the event in
-- subscribers.ledger_seq, and the event takes that number as its seq: a
-- deleted last event (even one that set no status) then shows as a
-- subscriber whose chain ends short of its count.

ALTER TABLE ledger
    ADD COLUMN seq              integer,
    ADD COLUMN basis            text CHECK (basis IN ('express', 'implied')),
    ADD COLUMN basis_expires_at timestamptz CHECK (isfinite(basis_expires_at)),
    ADD COLUMN import_file      text CHECK (import_file !~ '[\x01-\x1f\x7f]'
                                    AND length(import_file) <= 1000),
    ADD COLUMN import_sha256    text CHECK (import_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN import_line      integer CHECK (import_line > 0),
    ADD COLUMN salt             bytea CHECK (octet_length(salt) = 16),
    ADD COLUMN personal_sha256  bytea CHECK (octet_length(personal_sha256) = 32),
    ADD COLUMN content_sha256   bytea CHECK (octet_length(content_sha256) = 32),
    ADD COLUMN chain_sha256     bytea CHECK (octet_length(chain_sha256) = 32),
    ADD COLUMN erased_at        timestamptz,
    ADD COLUMN consent_text_sha256 text CHECK (consent_text_sha256 ~ '^[0-9a-f]{64}$');

-- How many events the subscriber's chain has had (its last seq).
ALTER TABLE subscribers
    ADD COLUMN ledger_seq integer NOT NULL DEFAULT 0 CHECK (ledger_seq >= 0);

-- source may be blank only once erased (the content checks of 0001 still
-- apply to a non-NULL source).
ALTER TABLE ledger ALTER COLUMN source DROP NOT NULL;
ALTER TABLE ledger ADD CONSTRAINT ledger_source_unless_erased
    CHECK (source IS NOT NULL OR erased_at IS NOT NULL);

-- One field of a canonical text (see above).
CREATE FUNCTION ledger_canon(v text) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT encode(convert_to(v, 'UTF8'), 'hex')
$$;

CREATE FUNCTION ledger_canon_us(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT ((extract(epoch FROM t) * 1000000)::bigint)::text
$$;

CREATE FUNCTION ledger_personal_digest(e ledger) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(e.salt || convert_to(concat_ws('|',
        coalesce(ledger_canon(text(e.ip)), '-'),
        coalesce(ledger_canon(e.user_agent), '-'),
        coalesce(ledger_canon(e.page), '-'),
        coalesce(ledger_canon(e.source), '-'),
        coalesce(ledger_canon(e.import_file), '-')), 'UTF8'))
$$;

CREATE FUNCTION ledger_content_digest(e ledger) RETURNS bytea
LANGUAGE sql STABLE AS $$
    SELECT sha256(convert_to(concat_ws('|',
        coalesce(ledger_canon(e.subscriber_id::text), '-'),
        coalesce(ledger_canon(e.seq::text), '-'),
        coalesce(ledger_canon(e.list_id::text), '-'),
        coalesce(ledger_canon(e.action), '-'),
        coalesce(ledger_canon(e.channel), '-'),
        coalesce(ledger_canon(e.status_before), '-'),
        coalesce(ledger_canon(e.status_after), '-'),
        coalesce(ledger_canon(ledger_canon_us(e.at)), '-'),
        coalesce(ledger_canon(e.operator), '-'),
        coalesce(ledger_canon(e.consent_text_version), '-'),
        coalesce(ledger_canon(e.consent_text_sha256), '-'),
        coalesce(ledger_canon(e.basis), '-'),
        coalesce(ledger_canon(ledger_canon_us(e.basis_expires_at)), '-'),
        coalesce(ledger_canon(e.import_sha256), '-'),
        coalesce(ledger_canon(e.import_line::text), '-'),
        coalesce(ledger_canon(encode(e.personal_sha256, 'hex')), '-')), 'UTF8'))
$$;

CREATE FUNCTION ledger_new_salt() RETURNS bytea
LANGUAGE sql VOLATILE AS $$
    -- pgcrypto is not installed; two version 4 UUIDs hold 244 random bits
    SELECT substring(sha256(uuid_send(gen_random_uuid())
        || uuid_send(gen_random_uuid())) FROM 1 FOR 16)
$$;

-- Fill in seq, salt and the digests of e, the next event after prev
-- (NULL prev_chain: the subscriber's first event).
CREATE FUNCTION ledger_seal(e ledger, prev_seq integer, prev_chain bytea)
RETURNS ledger
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    e.seq := coalesce(prev_seq, 0) + 1;
    e.salt := ledger_new_salt();
    e.personal_sha256 := ledger_personal_digest(e);
    e.content_sha256 := ledger_content_digest(e);
    e.chain_sha256 := sha256(coalesce(prev_chain, decode(repeat('00', 32), 'hex'))
        || e.content_sha256);
    RETURN e;
END
$$;

-- The events already there (from 0001): chained in (subscriber_id, id)
-- order with their recorded times. The append-only trigger is off for
-- this moment only, inside this migration's transaction.
ALTER TABLE ledger DISABLE TRIGGER ledger_append_only;
DO $$
DECLARE
    e ledger;
    prev_sub bigint := NULL;
    prev_seq integer;
    prev_chain bytea;
BEGIN
    FOR e IN SELECT * FROM ledger ORDER BY subscriber_id, id LOOP
        IF prev_sub IS DISTINCT FROM e.subscriber_id THEN
            prev_seq := NULL;
            prev_chain := NULL;
            prev_sub := e.subscriber_id;
        END IF;
        e := ledger_seal(e, prev_seq, prev_chain);
        UPDATE ledger SET seq = e.seq, salt = e.salt,
               personal_sha256 = e.personal_sha256,
               content_sha256 = e.content_sha256, chain_sha256 = e.chain_sha256
         WHERE id = e.id;
        prev_seq := e.seq;
        prev_chain := e.chain_sha256;
    END LOOP;
END
$$;
ALTER TABLE ledger ENABLE TRIGGER ledger_append_only;
UPDATE subscribers s SET ledger_seq = l.n
  FROM (SELECT subscriber_id, max(seq) AS n FROM ledger GROUP BY subscriber_id) l
 WHERE s.id = l.subscriber_id;

ALTER TABLE ledger
    ALTER COLUMN seq SET NOT NULL,
    ALTER COLUMN personal_sha256 SET NOT NULL,
    ALTER COLUMN content_sha256 SET NOT NULL,
    ALTER COLUMN chain_sha256 SET NOT NULL,
    ADD CONSTRAINT ledger_seq_positive CHECK (seq > 0),
    ADD CONSTRAINT ledger_salt_unless_erased
        CHECK (salt IS NOT NULL OR erased_at IS NOT NULL),
    ADD CONSTRAINT ledger_subscriber_seq UNIQUE (subscriber_id, seq);

-- The SHA-256 (hex) of the consent wording named v. There are no
-- wordings yet: 0004 replaces this once consent_texts exists.
CREATE FUNCTION ledger_consent_text_sha256(v text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT NULL::text
$$;

-- Every insert is chained here, whatever the inserting code passed for
-- the computed columns. txid is forced too: 0001's check at commit looks
-- for an event of the committing transaction, and a row carrying a
-- predicted future txid would vouch for another transaction's change.
CREATE FUNCTION ledger_chain_append() RETURNS trigger
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    next_seq integer;
    prev_chain bytea;
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'consent ledger events must be appended under READ COMMITTED, not %',
            upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'Each append waits for the subscriber''s row lock and must then '
                        'see the event committed by the previous holder; an older snapshot '
                        'would chain two events to the same predecessor.';
    END IF;
    -- locks the row (waiting for an append in progress) and counts
    UPDATE subscribers SET ledger_seq = ledger_seq + 1
     WHERE id = NEW.subscriber_id RETURNING ledger_seq INTO next_seq;
    IF NOT FOUND THEN
        next_seq := 1;          -- no such subscriber: the foreign key refuses
    END IF;
    SELECT chain_sha256 INTO prev_chain
      FROM ledger WHERE subscriber_id = NEW.subscriber_id
     ORDER BY seq DESC LIMIT 1;
    NEW.txid := txid_current();
    NEW.at := now();
    NEW.erased_at := NULL;
    NEW.consent_text_sha256 := CASE WHEN NEW.consent_text_version IS NOT NULL
        THEN ledger_consent_text_sha256(NEW.consent_text_version) END;
    NEW := ledger_seal(NEW, next_seq - 1, prev_chain);
    RETURN NEW;
END
$$;

CREATE TRIGGER ledger_chain
    BEFORE INSERT ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_chain_append();

-- UPDATE is refused except for erasure: under the flag set by
-- ledger_erase_personal() for this subscriber, a row may only lose its
-- personal fields and salt and gain erased_at; nothing else may change.
-- Setting the flag by hand grants no more than calling the function; the
-- time of erasure is the database clock's, whatever the UPDATE said.
CREATE FUNCTION ledger_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    erasable constant text[] := ARRAY['ip', 'user_agent', 'page', 'source',
        'import_file', 'salt', 'erased_at'];
BEGIN
    IF coalesce(current_setting('assent.ledger_erase', true), '') <> OLD.subscriber_id::text THEN
        RAISE EXCEPTION 'the consent ledger is append-only: UPDATE refused'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF (to_jsonb(OLD) - erasable) IS DISTINCT FROM (to_jsonb(NEW) - erasable)
       OR NEW.ip IS NOT NULL OR NEW.user_agent IS NOT NULL OR NEW.page IS NOT NULL
       OR NEW.source IS NOT NULL OR NEW.import_file IS NOT NULL
       OR NEW.salt IS NOT NULL OR NEW.erased_at IS NULL
       OR (OLD.erased_at IS NOT NULL AND NEW.erased_at IS DISTINCT FROM OLD.erased_at) THEN
        RAISE EXCEPTION 'the consent ledger is append-only: erasure may only blank '
            'ip, user_agent, page, source, import_file and salt (event %)', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.erased_at IS NULL THEN
        NEW.erased_at := now();
    END IF;
    RETURN NEW;
END
$$;

DROP TRIGGER ledger_append_only ON ledger;
CREATE TRIGGER ledger_no_delete
    BEFORE DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_erase_only
    BEFORE UPDATE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_update();

-- Erasure (GDPR Art. 17): blank the personal fields of every event of the
-- subscriber not erased before; returns how many events that was.
CREATE FUNCTION ledger_erase_personal(p_subscriber bigint) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    n integer;
BEGIN
    PERFORM set_config('assent.ledger_erase', p_subscriber::text, true);
    UPDATE ledger SET ip = NULL, user_agent = NULL, page = NULL, source = NULL,
           import_file = NULL, salt = NULL, erased_at = now()
     WHERE subscriber_id = p_subscriber AND erased_at IS NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('assent.ledger_erase', '', true);
    RETURN n;
END
$$;
