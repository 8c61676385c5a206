-- 0008 signup: the public subscribe form and the confirmation requests
-- (notices) a double-opt-in sign-up sends.

-- What a list's form takes: the consent wording it shows now (NULL: the
-- list takes no sign-ups from the web form) and the attributes a form
-- may set (attr.KEY fields), each a key as templates name them.
ALTER TABLE lists
    ADD COLUMN form_consent_text text REFERENCES consent_texts (version),
    ADD COLUMN form_attrs text[] NOT NULL DEFAULT '{}'
        CHECK (cardinality(form_attrs) <= 32
               AND array_to_string(form_attrs, ',') ~ '^([A-Za-z0-9_-]{1,64}(,|$))*$');

-- A notice is one transactional message to one subscriber, sent by the
-- sender workers through the same suppression gate and relay as
-- campaigns: today the confirmation request of a pending subscription.
-- It is queued in the transaction that makes the subscription pending,
-- so a sign-up is never recorded without its mail, nor mailed without
-- being recorded. The states move as a delivery's do (0006):
--   queued -> sending (claimed by a worker's session, committed before
--   the relay sees it) -> sent | failed | unknown (the worker died with
--   it in flight: never resent on its own), queued again after a 4xx;
--   queued -> suppressed (the gate) | skipped (nothing to confirm any
--   more: confirmed, ended, erased, list removed).
CREATE TABLE notices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL DEFAULT 'confirm' CHECK (kind IN ('confirm')),
    subscriber_id   bigint NOT NULL REFERENCES subscribers (id),
    list_id         bigint NOT NULL REFERENCES lists (id),
    state           text NOT NULL DEFAULT 'queued'
                    CHECK (state IN ('queued', 'sending', 'sent', 'suppressed',
                                     'failed', 'unknown', 'skipped')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    sender_session  integer,
    suppression_id  bigint REFERENCES suppressions (id),
    detail          text CHECK (octet_length(detail) <= 1000),
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    sent_at         timestamptz,
    CHECK (state <> 'sending' OR sender_session IS NOT NULL),
    CHECK (state <> 'sent' OR sent_at IS NOT NULL)
);
CREATE INDEX notices_queued ON notices (next_attempt_at, id) WHERE state = 'queued';
CREATE INDEX notices_sending ON notices (sender_session) WHERE state = 'sending';
CREATE INDEX notices_subscriber ON notices (subscriber_id, created_at);

-- A notice's state only moves forward: what was sent, failed, found
-- suppressed or skipped stays so, and one in flight becomes sent,
-- failed, unknown or queued (a 4xx, or never tried) only.
CREATE FUNCTION notices_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state AND NOT (
           (OLD.state = 'queued' AND NEW.state IN ('sending', 'suppressed', 'skipped'))
        OR (OLD.state = 'sending' AND NEW.state IN ('queued', 'sent', 'failed', 'unknown'))) THEN
        RAISE EXCEPTION 'notice %: % cannot become %', OLD.id, OLD.state, NEW.state
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE TRIGGER notices_update
    BEFORE UPDATE ON notices
    FOR EACH ROW EXECUTE FUNCTION notices_on_update();
