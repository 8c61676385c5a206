-- 0009 bounces: what came back (DSNs, plain-text bounces, ARF complaint
-- reports) and what the relay refused during the SMTP session, one row
-- per failed recipient, with what was done about it (src/lib/intake.c).
--
-- The database keeps the record honest:
--   * rows are never deleted, and the one change allowed is an
--     erasure's: the recipient address and the diagnostic (which often
--     quotes the address) may become NULL, nothing else changes;
--   * received_at is the database clock's;
--   * a row is attributed (to a delivery or a notice, and so to a
--     subscriber) only with how it was attributed, and an unattributed
--     row names nobody.
--
-- class:  hard, soft, policy, complaint, or none (not a failure, e.g. a
--         "delivered" DSN or an ARF report other than abuse);
-- action: what intake did:
--   none          nothing beyond storing it (unattributed, policy, none,
--                 a report about a message sent too long ago, or a
--                 failed recipient that is not the message's own)
--   hard-bounce   the person's hard-bounce suppression entry was added
--   soft-counted  counted toward the soft-bounce limit, not reached
--   soft-limit    the limit was reached: a soft-bounce-limit entry added
--                 (counting starts again after this row)
--   complaint     subscriptions ended and/or complaint entry added
--   already       the effect was in place already (a duplicate report,
--                 or a person suppressed already)
--   erased        attributed to a person who was erased: nothing done,
--                 nothing personal kept

CREATE TABLE bounces (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at    timestamptz NOT NULL DEFAULT now(),
    source         text NOT NULL CHECK (source IN ('dsn', 'text', 'arf', 'smtp')),
    class          text NOT NULL
                   CHECK (class IN ('hard', 'soft', 'policy', 'complaint', 'none')),
    delivery_id    bigint REFERENCES deliveries (id),
    notice_id      bigint REFERENCES notices (id),
    campaign_id    bigint REFERENCES campaigns (id),
    subscriber_id  bigint REFERENCES subscribers (id),
    attributed_by  text CHECK (attributed_by IN ('verp', 'message-id', 'smtp')),
    -- as the report gave it; NULL when it gave none, or once erased
    recipient      text CHECK (recipient !~ '[\x01-\x1f\x7f]'
                       AND octet_length(recipient) <= 320),
    status         text CHECK (status ~ '^[245]\.[0-9]{1,3}\.[0-9]{1,3}$'),
    smtp_code      integer CHECK (smtp_code BETWEEN 200 AND 599),
    -- source smtp: the step the relay refused (only 'rcpt' is about the
    -- recipient; a refusal after the data is about the message)
    smtp_stage     text CHECK (smtp_stage IN ('rcpt', 'data')),
    diagnostic     text CHECK (diagnostic !~ '[\x01-\x1f\x7f]'
                       AND octet_length(diagnostic) <= 1000),
    remote_mta     text CHECK (remote_mta !~ '[\x01-\x1f\x7f]'
                       AND octet_length(remote_mta) <= 255),
    raw_size       bigint NOT NULL DEFAULT 0 CHECK (raw_size >= 0),
    action         text NOT NULL CHECK (action IN ('none', 'hard-bounce',
                       'soft-counted', 'soft-limit', 'complaint', 'already',
                       'erased')),
    CHECK (delivery_id IS NULL OR notice_id IS NULL),
    CHECK ((attributed_by IS NULL) = (delivery_id IS NULL AND notice_id IS NULL)),
    CHECK ((attributed_by IS NULL) = (subscriber_id IS NULL)),
    CHECK (campaign_id IS NULL OR delivery_id IS NOT NULL),
    CHECK ((source = 'smtp') = (smtp_stage IS NOT NULL)),
    CHECK ((source = 'smtp') = (attributed_by IS NOT DISTINCT FROM 'smtp')),
    CHECK (attributed_by <> 'message-id' OR source = 'arf'),
    CHECK (class <> 'complaint' OR source = 'arf'),
    -- nothing is done on an unattributed report's word
    CHECK (attributed_by IS NOT NULL OR action = 'none'),
    -- the sender is at fault: never the recipient's suppression
    CHECK (class <> 'policy' OR action = 'none'),
    CHECK (action NOT IN ('soft-counted', 'soft-limit') OR class = 'soft'),
    CHECK (action <> 'hard-bounce' OR class = 'hard'),
    CHECK (action <> 'complaint' OR class = 'complaint')
);

-- A person's bounces: soft counting, the subject export, erasure.
CREATE INDEX bounces_subscriber ON bounces (subscriber_id, id)
    WHERE subscriber_id IS NOT NULL;
-- The campaign report: counts by class.
CREATE INDEX bounces_campaign ON bounces (campaign_id, class)
    WHERE campaign_id IS NOT NULL;
-- Duplicates of one message's bounce.
CREATE INDEX bounces_delivery ON bounces (delivery_id) WHERE delivery_id IS NOT NULL;
CREATE INDEX bounces_notice ON bounces (notice_id) WHERE notice_id IS NOT NULL;
-- Erasure finds the reports that name the address, whoever they were
-- attributed to.
CREATE INDEX bounces_recipient ON bounces (lower(recipient))
    WHERE recipient IS NOT NULL;

CREATE FUNCTION bounces_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.received_at := now();
    RETURN NEW;
END
$$;

-- Append-mostly: an UPDATE may only blank the personal fields.
CREATE FUNCTION bounces_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.received_at, NEW.source, NEW.class, NEW.delivery_id,
        NEW.notice_id, NEW.campaign_id, NEW.subscriber_id, NEW.attributed_by,
        NEW.status, NEW.smtp_code, NEW.smtp_stage, NEW.remote_mta,
        NEW.raw_size, NEW.action)
       IS DISTINCT FROM
       (OLD.id, OLD.received_at, OLD.source, OLD.class, OLD.delivery_id,
        OLD.notice_id, OLD.campaign_id, OLD.subscriber_id, OLD.attributed_by,
        OLD.status, OLD.smtp_code, OLD.smtp_stage, OLD.remote_mta,
        OLD.raw_size, OLD.action)
       OR (NEW.recipient IS NOT NULL AND NEW.recipient IS DISTINCT FROM OLD.recipient)
       OR (NEW.diagnostic IS NOT NULL AND NEW.diagnostic IS DISTINCT FROM OLD.diagnostic)
    THEN
        RAISE EXCEPTION 'bounce % is a record: only its recipient and diagnostic '
            'may be blanked (erasure)', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;

CREATE FUNCTION bounces_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'bounces are never deleted: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER bounces_insert
    BEFORE INSERT ON bounces
    FOR EACH ROW EXECUTE FUNCTION bounces_on_insert();
CREATE TRIGGER bounces_update
    BEFORE UPDATE ON bounces
    FOR EACH ROW EXECUTE FUNCTION bounces_on_update();
CREATE TRIGGER bounces_no_delete
    BEFORE DELETE ON bounces
    FOR EACH ROW EXECUTE FUNCTION bounces_refuse_delete();
CREATE TRIGGER bounces_no_truncate
    BEFORE TRUNCATE ON bounces
    FOR EACH STATEMENT EXECUTE FUNCTION bounces_refuse_delete();
