-- 0006 campaigns: campaigns, their lists, and one delivery per recipient.
--
-- The database defends what the sender promises:
--   * a campaign's content (subject, sender, bodies, lists) can change
--     only while it is a draft: what was scheduled is what is sent;
--   * one delivery per campaign and subscriber (UNIQUE), so an audience
--     built twice, or by two daemons at once, never sends twice;
--   * a delivery's state moves only forward (deliveries_on_update()):
--     a message that was sent, suppressed or failed is never queued
--     again; one that was being sent when its sender died becomes
--     'unknown' and is queued again only by an operator's choice
--     (assent campaign resend-unknown);
--   * deliveries are never deleted.
--
-- States of a delivery:
--   queued      waiting (next_attempt_at says when it may be claimed)
--   sending     claimed by the worker whose advisory lock is
--               (ASSENT_SESSION_NS, sender_session); marked before the
--               SMTP transaction starts
--   sent        the relay accepted it (2xx after DATA)
--   suppressed  the gate stopped it at claim time (suppression_id and
--               suppress_reason say why), or the person was no longer
--               subscribed to any of the campaign's lists, or erased
--   failed      refused for good (5xx), or 4xx until max attempts
--   unknown     its sender died while it was 'sending': it may or may
--               not have been delivered

-- A list's name begins its messages' List-Id (RFC 2919), a dot-atom:
-- no dot at its end or after another. NOT VALID: a list made before
-- keeps its name (its campaigns are refused with the reason).
ALTER TABLE lists ADD CONSTRAINT lists_name_dot_atom
    CHECK (name !~ '[.][.]' AND name !~ '[.]$') NOT VALID;

CREATE TABLE campaigns (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL
                  CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    state         text NOT NULL DEFAULT 'draft'
                  CHECK (state IN ('draft', 'scheduled', 'sending', 'paused',
                                   'done', 'cancelled')),
    subject       text NOT NULL
                  CHECK (subject !~ '[\x01-\x1f\x7f]' AND octet_length(subject) <= 998),
    from_name     text NOT NULL DEFAULT ''
                  CHECK (from_name !~ '[\x01-\x1f\x7f]' AND octet_length(from_name) <= 256),
    from_address  text NOT NULL
                  CHECK (from_address ~ '^[!-~]+@[a-z0-9.-]+$' AND octet_length(from_address) <= 254),
    reply_to      text
                  CHECK (reply_to ~ '^[!-~]+@[a-z0-9.-]+$' AND octet_length(reply_to) <= 254),
    body_text     text NOT NULL,
    body_html     text,
    scheduled_at  timestamptz,
    -- set by "schedule --force": start even when scheduled_at is older
    -- than sending.max_schedule_age
    force_start   boolean NOT NULL DEFAULT false,
    started_at    timestamptz,
    finished_at   timestamptz,
    created_by    text NOT NULL CHECK (created_by <> '' AND created_by !~ '[\x01-\x1f\x7f]'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (state = 'draft' OR state = 'cancelled' OR scheduled_at IS NOT NULL)
);
CREATE UNIQUE INDEX campaigns_name ON campaigns (lower(name));
CREATE INDEX campaigns_due ON campaigns (scheduled_at) WHERE state = 'scheduled';

CREATE TABLE campaign_lists (
    campaign_id   bigint NOT NULL REFERENCES campaigns (id),
    list_id       bigint NOT NULL REFERENCES lists (id),
    PRIMARY KEY (campaign_id, list_id)
);

CREATE TABLE deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id      bigint NOT NULL REFERENCES campaigns (id),
    subscriber_id    bigint NOT NULL REFERENCES subscribers (id),
    -- the list this recipient's unsubscribe link leaves (the lowest id
    -- of the campaign's lists the person was on when the audience was built)
    list_id          bigint NOT NULL REFERENCES lists (id),
    -- the recipient's domain, for throttling (A-label, lower case)
    domain           text COLLATE "C" NOT NULL,
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'sending', 'sent', 'suppressed',
                                      'failed', 'unknown')),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    sender_session   integer,
    suppression_id   bigint REFERENCES suppressions (id),
    suppress_reason  text,
    smtp_reply       text CHECK (octet_length(smtp_reply) <= 1000),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz,
    -- what came back later (bounces, complaints, unsubscribes through
    -- this campaign's links); set once
    bounced_at       timestamptz,
    complained_at    timestamptz,
    unsubscribed_at  timestamptz,
    UNIQUE (campaign_id, subscriber_id),
    CHECK (state <> 'sending' OR sender_session IS NOT NULL),
    CHECK (state <> 'sent' OR sent_at IS NOT NULL)
);
-- The claim: queued deliveries of one campaign in id order.
CREATE INDEX deliveries_queued ON deliveries (campaign_id, id) WHERE state = 'queued';
-- Orphan detection: deliveries in flight, by the session that holds them.
CREATE INDEX deliveries_sending ON deliveries (sender_session) WHERE state = 'sending';
CREATE INDEX deliveries_subscriber ON deliveries (subscriber_id);

-- A campaign's content and lists are fixed once it leaves draft.
CREATE FUNCTION campaigns_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.state <> 'draft' AND (NEW.subject, NEW.from_name, NEW.from_address,
            NEW.reply_to, NEW.body_text, NEW.body_html)
            IS DISTINCT FROM (OLD.subject, OLD.from_name, OLD.from_address,
            OLD.reply_to, OLD.body_text, OLD.body_html) THEN
        RAISE EXCEPTION 'campaign % is %: only a draft can be edited', OLD.name, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    IF OLD.state IN ('done', 'cancelled') AND NEW.state <> OLD.state
       AND NOT (OLD.state = 'done' AND NEW.state = 'sending') THEN
        RAISE EXCEPTION 'campaign % is %: its state cannot change', OLD.name, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    -- once out of draft, never back: that would make its content editable
    IF NEW.state = 'draft' AND OLD.state <> 'draft' THEN
        RAISE EXCEPTION 'campaign % is %: it cannot become a draft again',
            OLD.name, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER campaigns_update
    BEFORE UPDATE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_on_update();

CREATE FUNCTION campaign_lists_on_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    st text;
BEGIN
    SELECT state INTO st FROM campaigns
     WHERE id = COALESCE(NEW.campaign_id, OLD.campaign_id);
    IF st <> 'draft' THEN
        RAISE EXCEPTION 'campaign % is %: its lists cannot change',
            COALESCE(NEW.campaign_id, OLD.campaign_id), st
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN COALESCE(NEW, OLD);
END
$$;
CREATE TRIGGER campaign_lists_change
    BEFORE INSERT OR UPDATE OR DELETE ON campaign_lists
    FOR EACH ROW EXECUTE FUNCTION campaign_lists_on_change();

CREATE FUNCTION campaigns_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% rows are never deleted', TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER campaigns_no_delete
    BEFORE DELETE ON campaigns
    FOR EACH ROW EXECUTE FUNCTION campaigns_refuse_delete();
CREATE TRIGGER campaigns_no_truncate
    BEFORE TRUNCATE ON campaigns
    FOR EACH STATEMENT EXECUTE FUNCTION campaigns_refuse_delete();
CREATE TRIGGER deliveries_no_delete
    BEFORE DELETE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION campaigns_refuse_delete();
CREATE TRIGGER deliveries_no_truncate
    BEFORE TRUNCATE ON deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION campaigns_refuse_delete();

-- A delivery's state moves forward only:
--   queued  -> sending, suppressed, failed
--   sending -> sent, failed, queued (a 4xx, or never attempted), unknown
--   unknown -> queued (resend-unknown), sent, failed (a late outcome)
-- sent, suppressed and failed are final. Identity columns never change;
-- bounced_at, complained_at and unsubscribed_at are set once.
CREATE FUNCTION deliveries_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.id, NEW.campaign_id, NEW.subscriber_id, NEW.list_id, NEW.created_at)
       IS DISTINCT FROM (OLD.id, OLD.campaign_id, OLD.subscriber_id, OLD.list_id,
                         OLD.created_at) THEN
        RAISE EXCEPTION 'delivery %: its identity cannot change', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF (OLD.bounced_at IS NOT NULL AND NEW.bounced_at IS DISTINCT FROM OLD.bounced_at)
       OR (OLD.complained_at IS NOT NULL AND NEW.complained_at IS DISTINCT FROM OLD.complained_at)
       OR (OLD.unsubscribed_at IS NOT NULL
           AND NEW.unsubscribed_at IS DISTINCT FROM OLD.unsubscribed_at) THEN
        RAISE EXCEPTION 'delivery %: what came back is recorded once', OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.state <> OLD.state AND NOT (
           (OLD.state = 'queued' AND NEW.state IN ('sending', 'suppressed', 'failed'))
        OR (OLD.state = 'sending' AND NEW.state IN ('sent', 'failed', 'queued', 'unknown'))
        OR (OLD.state = 'unknown' AND NEW.state IN ('queued', 'sent', 'failed'))) THEN
        RAISE EXCEPTION 'delivery %: state % cannot become %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    -- the relay's reply may be blanked (an erasure: it often names the
    -- address); nothing else of a final outcome changes
    IF OLD.state IN ('sent', 'suppressed', 'failed')
       AND ((NEW.attempts, NEW.sent_at, NEW.suppression_id)
            IS DISTINCT FROM (OLD.attempts, OLD.sent_at, OLD.suppression_id)
            OR (NEW.smtp_reply IS NOT NULL
                AND NEW.smtp_reply IS DISTINCT FROM OLD.smtp_reply)) THEN
        RAISE EXCEPTION 'delivery % is %: its outcome cannot change', OLD.id, OLD.state
            USING ERRCODE = 'check_violation';
    END IF;
    -- a session id is stamped only when a delivery is claimed
    IF NEW.sender_session IS DISTINCT FROM OLD.sender_session
       AND NOT (NEW.state = 'sending' AND OLD.state = 'queued')
       AND NOT (NEW.sender_session IS NULL AND NEW.state = 'queued') THEN
        RAISE EXCEPTION 'delivery %: its sender session changes only when it is claimed',
            OLD.id
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER deliveries_update
    BEFORE UPDATE ON deliveries
    FOR EACH ROW EXECUTE FUNCTION deliveries_on_update();

-- Test sends ("assent campaign test"): kept for the record, outside the
-- campaign's counts.
CREATE TABLE test_sends (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    campaign_id   bigint NOT NULL REFERENCES campaigns (id),
    email         text NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('sent', 'suppressed', 'failed')),
    detail        text NOT NULL DEFAULT '',
    sent_by       text NOT NULL,
    at            timestamptz NOT NULL DEFAULT now()
);
