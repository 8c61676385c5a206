#!/usr/bin/python3
"""smtpd.py: a scriptable SMTP server for assent's tests (aiosmtpd).

usage: smtpd.py --port PORT --dir DIR [--pidfile F]
                [--tls-cert CERT --tls-key KEY] [--require-starttls]
                [--auth-user U --auth-pass P] [--no-enhanced]

Listens on 127.0.0.1:PORT; writes the pidfile, then prints "ready".
What happens to a recipient depends on its local part's prefix
(case-insensitive):

  reject...    550 5.1.1 <addr>: user unknown
  policy...    554 5.7.1 rejected by policy
  tempfail...  451 4.3.0 try again later
  flaky...     450 4.2.0 mailbox busy the first time this server sees
               that exact address, accepted afterwards
  hangup...    accepted; after the message data the server closes the
               connection without a reply
  slow...      accepted; the final reply to DATA comes after 2 s
  anything else is accepted.

Each accepted message is written to DIR/NNNNNNNN.eml (the DATA bytes
as received, dot-unstuffed, CRLF kept; written under a temporary name,
then renamed) and gets one JSON line in DIR/log.jsonl:
  {"seq": N, "mail_from": ..., "rcpt": ..., "file": "NNNNNNNN.eml",
   "tls": bool, "auth": user or null, "conn": N}
("conn" numbers the connections: the same number, the same session.)
("rcpt" is a list when the message had several recipients). Refused
recipients get {"rcpt": ..., "refused": "code text"}, a hangup
{"rcpt": ..., "hangup": true}.

ENHANCEDSTATUSCODES and PIPELINING are advertised; --no-enhanced drops
the first and the X.Y.Z from this server's own replies.
"""

import argparse
import asyncio
import json
import os
import signal
import ssl
import logging
import sys

from aiosmtpd.smtp import SMTP, AuthResult


class Handler:
    def __init__(self, args):
        self.dir = args.dir
        self.enhanced = not args.no_enhanced
        # (not "auth_..." names: aiosmtpd takes handler attributes
        # named auth_X for AUTH mechanism X)
        self.user = args.auth_user
        self.password = args.auth_pass
        self.seen = set()
        self.connections = 0
        self.seq = len([f for f in os.listdir(self.dir) if f.endswith(".eml")])

    def reply(self, code, enhanced, text):
        if self.enhanced:
            return "%d %s %s" % (code, enhanced, text)
        return "%d %s" % (code, text)

    def log(self, record):
        with open(os.path.join(self.dir, "log.jsonl"), "a") as f:
            f.write(json.dumps(record) + "\n")

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # server is the connection (the session is new after STARTTLS)
        if not hasattr(server, "assent_conn"):
            self.connections += 1
            server.assent_conn = self.connections
        extra = ["250-PIPELINING"]
        if self.enhanced:
            extra.append("250-ENHANCEDSTATUSCODES")
        return responses[:-1] + extra + responses[-1:]

    async def handle_MAIL(self, server, session, envelope, address, options):
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return self.reply(250, "2.1.0", "sender ok")

    def refusal(self, address):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return self.reply(550, "5.1.1", "<%s>: user unknown" % address)
        if local.startswith("policy"):
            return self.reply(554, "5.7.1", "rejected by policy")
        if local.startswith("tempfail"):
            return self.reply(451, "4.3.0", "try again later")
        if local.startswith("flaky") and address not in self.seen:
            self.seen.add(address)
            return self.reply(450, "4.2.0", "mailbox busy")
        return None

    async def handle_RCPT(self, server, session, envelope, address, options):
        refused = self.refusal(address)
        if refused is not None:
            self.log({"rcpt": address, "refused": refused})
            return refused
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return self.reply(250, "2.1.5", "recipient ok")

    async def handle_DATA(self, server, session, envelope):
        locals_ = [a.split("@", 1)[0].lower() for a in envelope.rcpt_tos]
        rcpt = envelope.rcpt_tos[0] if len(envelope.rcpt_tos) == 1 \
            else list(envelope.rcpt_tos)
        if any(l.startswith("hangup") for l in locals_):
            self.log({"rcpt": rcpt, "hangup": True})
            server.transport.abort()
            return self.reply(421, "4.4.2", "gone")  # never arrives
        if any(l.startswith("slow") for l in locals_):
            await asyncio.sleep(2)
        self.seq += 1
        name = "%08d.eml" % self.seq
        tmp = os.path.join(self.dir, ".tmp." + name)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.dir, name))
        user = None
        if session.authenticated:
            user = session.auth_data.login.decode("utf-8", "replace")
        self.log({"seq": self.seq, "mail_from": envelope.mail_from,
                  "rcpt": rcpt, "file": name, "tls": session.ssl is not None,
                  "auth": user, "conn": getattr(server, "assent_conn", 0)})
        return self.reply(250, "2.0.0", "queued as %d" % self.seq)

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login == self.user.encode()
              and auth_data.password == self.password.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def parse_args():
    p = argparse.ArgumentParser(description="scriptable SMTP test server")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--pidfile")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    p.add_argument("--require-starttls", action="store_true")
    p.add_argument("--auth-user")
    p.add_argument("--auth-pass", default="")
    p.add_argument("--no-enhanced", action="store_true")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.require_starttls and not args.tls_cert:
        p.error("--require-starttls needs --tls-cert")
    return args


def server_factory(args, handler):
    kwargs = {"hostname": "smtpd.test", "ident": "assent test smtpd"}
    if args.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        kwargs["tls_context"] = ctx
        kwargs["require_starttls"] = args.require_starttls
    if args.auth_user:
        kwargs["authenticator"] = handler.authenticate
        kwargs["auth_require_tls"] = False
    return lambda: SMTP(handler, **kwargs)


def main():
    # quiet: aiosmtpd 1.4 warns about its own use of Session.login_data
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    args = parse_args()
    handler = Handler(args)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(
        server_factory(args, handler), "127.0.0.1", args.port))
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, loop.stop)
    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write("%d\n" % os.getpid())
    print("ready", flush=True)
    try:
        loop.run_forever()
    finally:
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except OSError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
