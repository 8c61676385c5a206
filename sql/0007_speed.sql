-- 0007 speed: the same consent ledger and the same one-click unsubscribe,
-- for less of the database's time each.
--
-- 1. The chain trigger (0003) sealed each event through LANGUAGE sql
--    functions that PostgreSQL could not inline (ledger_canon_us() is
--    declared IMMUTABLE around the STABLE extract(), so it ran as a
--    function of its own, its query planned again at every call), three
--    layers of calls deep. ledger_seal() and the two digest functions are
--    redefined below in PL/pgSQL: each canonical text (0003 describes
--    them; ledger_verify() in src/lib/ledger.c recomputes them in C) is
--    one expression, planned once per session, written with the very
--    functions 0003 used, so every digest is byte for byte what 0003 gave.
--    The trigger itself, ledger_canon() and ledger_canon_us() are left as
--    they are.
--
-- 2. optout_unsubscribe_apply() does in one statement, prepared once per
--    connection, what src/lib/optout.c sent as seven or eight (BEGIN and
--    COMMIT included): lock the subscriber, look up the list, end the
--    subscription(s) with their ledger events and mark the campaign's
--    delivery. It inserts into ledger and updates subscriptions and
--    deliveries like any client, so every trigger, constraint and the
--    deferred check that a subscription change has its ledger event
--    still run.

CREATE OR REPLACE FUNCTION ledger_personal_digest(e ledger) RETURNS bytea
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN sha256(e.salt || convert_to(concat_ws('|',
        coalesce(encode(convert_to(text(e.ip), 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.user_agent, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.page, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.source, 'UTF8'), 'hex'), '-'),
        coalesce(encode(convert_to(e.import_file, 'UTF8'), 'hex'), '-')),
        'UTF8'));
END
$$;

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
            '-')), 'UTF8'));
END
$$;

CREATE OR REPLACE FUNCTION ledger_seal(e ledger, prev_seq integer, prev_chain bytea)
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

-- The one-click unsubscribe (and every other unsubscribe through a
-- signed link), as src/lib/optout.c did it statement by statement: lock
-- the subscriber; unless the token is for every list, look up its list
-- (name, removed or not) and the subscription's status; then, for a
-- subscriber that exists and was not erased, end the list's
-- subscription, or every one when p_all, each with its ledger event
-- (action unsubscribe, status_after unsubscribed, the evidence given;
-- the chain trigger seals it), and mark the campaign's delivery
-- unsubscribed_at when something ended and p_campaign is not 0. A
-- subscription already ended is left alone, so a second call changes
-- nothing. p_refuse: the caller found the evidence unfit for the ledger
-- (ledger_evidence_check() in C); the function then changes nothing
-- where it would append an event and says refused.
--
-- It runs under the caller's transaction, or as its own when sent alone
-- (then the deferred ledger check runs at that statement's commit). The
-- suppression entry of an unsubscribe from everything stays in C
-- (suppress_add_in()), in the caller's transaction.
--   email_key  the subscriber's, NULL when there is none or it was erased
--   known    the token's list exists and was not removed (true for a
--            token for every list)
--   list_name, sub_status  the list's name and the subscription's status
--            before (NULL when none)
--   ended    subscriptions ended now
-- End one subscription (its status was p_before) with its ledger event.
CREATE FUNCTION optout_unsubscribe_end(p_subscriber bigint, p_list bigint,
    p_before text, p_channel text, p_source text, p_ip inet, p_user_agent text)
RETURNS void
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    INSERT INTO ledger (subscriber_id, list_id, action, channel,
                        status_before, status_after, ip, user_agent, source)
    VALUES (p_subscriber, p_list, 'unsubscribe', p_channel,
            p_before, 'unsubscribed', p_ip, p_user_agent, p_source);
    UPDATE subscriptions s SET status = 'unsubscribed', updated_at = now()
     WHERE s.subscriber_id = p_subscriber AND s.list_id = p_list;
END
$$;

CREATE FUNCTION optout_unsubscribe_apply(p_subscriber bigint, p_list bigint,
    p_campaign bigint, p_all boolean, p_all_lists boolean, p_channel text,
    p_source text, p_ip inet, p_user_agent text, p_refuse boolean,
    OUT email_key text, OUT known boolean, OUT list_name text,
    OUT sub_status text, OUT ended integer, OUT refused boolean)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    sub record;
BEGIN
    ended := 0;
    refused := false;
    SELECT s.email_key INTO email_key
      FROM subscribers s WHERE s.id = p_subscriber FOR UPDATE;
    IF p_all_lists THEN
        known := true;
    ELSE
        SELECT l.name, s.status, l.removed_at IS NULL
          INTO list_name, sub_status, known
          FROM lists l LEFT JOIN subscriptions s
            ON s.list_id = l.id AND s.subscriber_id = p_subscriber
         WHERE l.id = p_list;
        known := coalesce(known, false);
    END IF;
    IF email_key IS NULL THEN
        RETURN;
    END IF;
    IF p_all THEN
        FOR sub IN SELECT s.list_id, s.status FROM subscriptions s
                    WHERE s.subscriber_id = p_subscriber
                      AND s.status <> 'unsubscribed'
                    ORDER BY s.list_id LOOP
            IF p_refuse THEN
                refused := true;
                RETURN;
            END IF;
            PERFORM optout_unsubscribe_end(p_subscriber, sub.list_id, sub.status,
                p_channel, p_source, p_ip, p_user_agent);
            ended := ended + 1;
        END LOOP;
    ELSIF sub_status <> 'unsubscribed' THEN
        -- as the look-up above read it, after the lock
        IF p_refuse THEN
            refused := true;
            RETURN;
        END IF;
        PERFORM optout_unsubscribe_end(p_subscriber, p_list, sub_status,
            p_channel, p_source, p_ip, p_user_agent);
        ended := 1;
    END IF;
    IF ended > 0 AND p_campaign <> 0 THEN
        UPDATE deliveries d SET unsubscribed_at = now()
         WHERE d.campaign_id = p_campaign AND d.subscriber_id = p_subscriber
           AND d.unsubscribed_at IS NULL;
    END IF;
END
$$;
