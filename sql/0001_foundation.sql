-- 0001 foundation: lists, subscribers, subscriptions and the consent ledger.
--
-- The database defends the promises itself, so that a bug in C cannot
-- break them quietly:
--   * the ledger is append-only (UPDATE, DELETE and TRUNCATE are refused);
--   * a subscription cannot be created or change status unless a ledger
--     event for it was appended in the same transaction.

CREATE TABLE lists (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL
                  CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    description   text NOT NULL DEFAULT ''
                  CHECK (description !~ '[\x01-\x1f\x7f]' AND length(description) <= 1000),
    double_optin  boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    removed_at    timestamptz
);
-- A removed list keeps its row (the ledger refers to it); its name is free again.
CREATE UNIQUE INDEX lists_live_name ON lists (lower(name)) WHERE removed_at IS NULL;

CREATE TABLE subscribers (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email         text NOT NULL
                  CHECK (length(email) <= 254 AND email ~ '^[!-~]+@[a-z0-9.-]+$'),
    email_key     text NOT NULL UNIQUE CHECK (email_key = lower(email)),
    name          text NOT NULL DEFAULT ''
                  CHECK (name !~ '[\x01-\x1f\x7f]' AND length(name) <= 200),
    attrs         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(attrs) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE subscriptions (
    subscriber_id bigint NOT NULL REFERENCES subscribers (id),
    list_id       bigint NOT NULL REFERENCES lists (id),
    status        text NOT NULL CHECK (status IN ('pending', 'confirmed', 'unsubscribed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber_id, list_id)
);
CREATE INDEX subscriptions_list_status ON subscriptions (list_id, status);

CREATE TABLE ledger (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at                    timestamptz NOT NULL DEFAULT now(),
    txid                  bigint NOT NULL DEFAULT txid_current(),
    subscriber_id         bigint NOT NULL REFERENCES subscribers (id),
    list_id               bigint REFERENCES lists (id),          -- NULL: every list
    action                text NOT NULL CHECK (action IN ('subscribe', 'confirm',
                              'unsubscribe', 'resubscribe', 'import', 'bounce',
                              'complaint', 'rectify', 'erase')),
    channel               text NOT NULL CHECK (channel IN ('cli', 'import', 'web',
                              'one-click', 'mailto', 'confirm-link', 'bounce', 'complaint')),
    status_before         text CHECK (status_before IN ('pending', 'confirmed', 'unsubscribed')),
    status_after          text CHECK (status_after IN ('pending', 'confirmed', 'unsubscribed')),
    ip                    inet,
    user_agent            text CHECK (user_agent !~ '[\x01-\x1f\x7f]' AND length(user_agent) <= 512),
    page                  text CHECK (page !~ '[\x01-\x1f\x7f]' AND length(page) <= 1000),
    operator              text CHECK (operator !~ '[\x01-\x1f\x7f]' AND length(operator) <= 200),
    source                text NOT NULL CHECK (source <> '' AND source !~ '[\x01-\x1f\x7f]'
                              AND length(source) <= 1000),
    consent_text_version  text CHECK (consent_text_version ~ '^[!-~]{1,64}$'),
    CHECK (channel <> 'cli' OR operator IS NOT NULL)
);
CREATE INDEX ledger_subscriber ON ledger (subscriber_id, id);
CREATE INDEX ledger_txid ON ledger (txid, subscriber_id);

CREATE FUNCTION ledger_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the consent ledger is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER ledger_append_only
    BEFORE UPDATE OR DELETE ON ledger
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change();
CREATE TRIGGER ledger_no_truncate
    BEFORE TRUNCATE ON ledger
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change();

-- Checked at commit: the transaction that created or changed a
-- subscription also appended its ledger event (for that list, or for
-- every list) with the status it now has.
CREATE FUNCTION subscriptions_require_ledger() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM ledger l
         WHERE l.txid = txid_current()
           AND l.subscriber_id = NEW.subscriber_id
           AND (l.list_id = NEW.list_id OR l.list_id IS NULL)
           AND l.status_after = NEW.status) THEN
        RAISE EXCEPTION 'subscription change without a consent ledger event (subscriber %, list %)',
            NEW.subscriber_id, NEW.list_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER subscriptions_ledgered_insert
    AFTER INSERT ON subscriptions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION subscriptions_require_ledger();
CREATE CONSTRAINT TRIGGER subscriptions_ledgered_update
    AFTER UPDATE OF status ON subscriptions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION subscriptions_require_ledger();

-- Nothing removes a subscription: it ends as 'unsubscribed'.
CREATE FUNCTION subscriptions_refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'subscriptions are never deleted; unsubscribe instead'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER subscriptions_no_delete
    BEFORE DELETE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION subscriptions_refuse_delete();
