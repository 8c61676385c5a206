-- 0004 consent: the exact wordings subscribers are shown, and the basis
-- of each subscription (express, or implied with an expiry).

CREATE TABLE consent_texts (
    version       text PRIMARY KEY CHECK (version ~ '^[!-~]{1,64}$'),
    body          text NOT NULL CHECK (length(body) BETWEEN 1 AND 100000),
    sha256        text NOT NULL,
    effective_at  timestamptz NOT NULL DEFAULT now(),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL CHECK (created_by !~ '[\x01-\x1f\x7f]'),
    -- the digest is of the stored wording, whoever inserts it
    CHECK (sha256 = encode(sha256(convert_to(body, 'UTF8')), 'hex'))
);

-- A wording is never edited. Once a ledger event names it, the foreign
-- key below also keeps it from being removed.
CREATE FUNCTION consent_texts_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent texts are never edited: add a new version'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER consent_texts_immutable
    BEFORE UPDATE ON consent_texts
    FOR EACH ROW EXECUTE FUNCTION consent_texts_refuse_update();

-- Nor removed: a wording once stored stays, since ledger events carry its
-- digest and ledger_verify() checks it against the body.
CREATE FUNCTION consent_texts_refuse_removal() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent texts are never removed: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER consent_texts_no_delete
    BEFORE DELETE ON consent_texts
    FOR EACH ROW EXECUTE FUNCTION consent_texts_refuse_removal();
CREATE TRIGGER consent_texts_no_truncate
    BEFORE TRUNCATE ON consent_texts
    FOR EACH STATEMENT EXECUTE FUNCTION consent_texts_refuse_removal();

-- The chain trigger (0003) copies the digest of the wording an event
-- names into ledger.consent_text_sha256, inside the content digest, so
-- that a wording swapped later no longer matches the events that named
-- it.
CREATE OR REPLACE FUNCTION ledger_consent_text_sha256(v text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT sha256 FROM consent_texts WHERE version = v
$$;

-- New events may only name a known wording (older rows are not checked).
ALTER TABLE ledger ADD CONSTRAINT ledger_consent_text_known
    FOREIGN KEY (consent_text_version) REFERENCES consent_texts (version)
    NOT VALID;

-- The basis the subscription stands on now: express consent lasts until
-- withdrawn; implied consent (CASL: two years after a purchase, six
-- months after an inquiry) lapses at basis_expires_at.
ALTER TABLE subscriptions
    ADD COLUMN basis text NOT NULL DEFAULT 'express'
        CHECK (basis IN ('express', 'implied')),
    ADD COLUMN basis_expires_at timestamptz,
    ADD CONSTRAINT subscriptions_basis_expiry
        CHECK ((basis = 'express') = (basis_expires_at IS NULL));

-- Who may be mailed on which list, before the suppression gate: a
-- confirmed subscription whose consent has not lapsed. Sending builds
-- its audience from this view and nothing else.
CREATE VIEW sendable_subscriptions AS
    SELECT subscriber_id, list_id
      FROM subscriptions
     WHERE status = 'confirmed'
       AND (basis_expires_at IS NULL OR basis_expires_at > now());
