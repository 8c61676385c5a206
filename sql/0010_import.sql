-- 0010 import: what a CSV import of a million rows needs from the ledger,
-- with every defence of 0001-0007 kept.
--
-- 1. consent_collected_at: when the consent behind an event was given,
--    when that was before the event (an import of consent collected
--    elsewhere: `assent import --collected-at`). It is part of the
--    content digest, as a 17th field of C appended only when it is not
--    NULL, so every event written before this migration keeps its
--    digest (concat_ws() leaves out a NULL argument). ledger_verify() in
--    src/lib/ledger.c does the same.
--
-- 2. Three CHECKs of 0001/0003 written without a bounded regular
--    expression: `x ~ '^[0-9a-f]{64}$'` cost about 9 us a row in
--    PostgreSQL's regex engine, `length(x) = 64 AND x !~ '[^0-9a-f]'`
--    (the same set of strings) about half a microsecond.
--
-- 3. A first event sealed by its writer. The chain trigger (0003) locks
--    and counts the subscriber, reads the previous event and seals the
--    new one, one row at a time in PL/pgSQL. An import writes a million
--    first events of subscribers it created a moment before, in the
--    same transaction, which nobody else can yet see or lock; it seals
--    them itself (ledger_seal_first() in src/lib/ledger.c, the canonical
--    texts of 0003 that ledger_verify() checks), sets their subscribers'
--    ledger_seq to 1, and writes them with COPY. The trigger now skips
--    exactly the rows that are such a first event: seq 1, written now by this
--    transaction (at = now(), txid = txid_current()), not erased, with
--    a salt, both digests, the digest of the wording it names as
--    consent_texts has it, and the chain digest that seq 1 must have.
--    Anything else is sealed by the trigger as before, whatever the
--    writer supplied. A skipped row forges nothing the trigger path
--    could not write: the unique (subscriber_id, seq) refuses a second
--    seq 1, and digests that do not match the row or a count in
--    subscribers.ledger_seq that is not 1 show in ledger_verify() like
--    any other tampering.

ALTER TABLE ledger
    ADD COLUMN consent_collected_at timestamptz
        CHECK (isfinite(consent_collected_at) AND consent_collected_at <= at);

CREATE OR REPLACE FUNCTION ledger_content_digest(e ledger) RETURNS bytea
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN sha256(convert_to(concat_ws('|',
        coalesce(encode(convert_to(e.subscriber_id::text, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.seq::text, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.list_id::text, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.action, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.channel, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.status_before, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.status_after, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(((extract(epoch FROM e.at) * 1000000)::bigint)::text,
            'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.operator, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.consent_text_version, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.consent_text_sha256, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.basis, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(((extract(epoch FROM e.basis_expires_at)
            * 1000000)::bigint)::text, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.import_sha256, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.import_line::text, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(encode(e.personal_sha256, 'hex'), 'UTF8'), 'hex'),
            '-'),
        -- NULL (left out) unless given
        encode(convert_to(((extract(epoch FROM e.consent_collected_at)
            * 1000000)::bigint)::text, 'UTF8'), 'hex')), 'UTF8'));
END
$$;

ALTER TABLE ledger
    DROP CONSTRAINT ledger_import_sha256_check,
    ADD CONSTRAINT ledger_import_sha256_check
        CHECK (length(import_sha256) = 64 AND import_sha256 !~ '[^0-9a-f]'),
    DROP CONSTRAINT ledger_consent_text_sha256_check,
    ADD CONSTRAINT ledger_consent_text_sha256_check
        CHECK (length(consent_text_sha256) = 64 AND consent_text_sha256 !~ '[^0-9a-f]'),
    DROP CONSTRAINT ledger_consent_text_version_check,
    ADD CONSTRAINT ledger_consent_text_version_check
        CHECK (length(consent_text_version) BETWEEN 1 AND 64
               AND consent_text_version !~ '[^!-~]');

DROP TRIGGER ledger_chain ON ledger;
CREATE TRIGGER ledger_chain
    BEFORE INSERT ON ledger
    FOR EACH ROW
    WHEN (NEW.seq IS DISTINCT FROM 1
          OR NEW.txid IS DISTINCT FROM txid_current()
          OR NEW.at IS DISTINCT FROM now()
          OR NEW.erased_at IS NOT NULL
          OR NEW.salt IS NULL
          OR NEW.personal_sha256 IS NULL
          OR NEW.content_sha256 IS NULL
          OR NEW.consent_text_sha256 IS DISTINCT FROM
             CASE WHEN NEW.consent_text_version IS NOT NULL
                  THEN ledger_consent_text_sha256(NEW.consent_text_version) END
          OR NEW.chain_sha256 IS DISTINCT FROM
             sha256('\x0000000000000000000000000000000000000000000000000000000000000000'::bytea
                    || NEW.content_sha256))
    EXECUTE FUNCTION ledger_chain_append();

-- 4. 0005's refusal of a subscriber inserted erased ran PL/pgSQL for
--    every new subscriber; the same refusal, only for the rows it
--    refuses.
DROP TRIGGER subscribers_insert ON subscribers;
CREATE TRIGGER subscribers_insert
    BEFORE INSERT ON subscribers
    FOR EACH ROW WHEN (NEW.erased_at IS NOT NULL)
    EXECUTE FUNCTION subscribers_refuse_insert_erased();
