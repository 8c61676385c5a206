#!/usr/bin/python3
"""smtpd.py: a scriptable SMTP server for assent's tests (aiosmtpd).

usage: smtpd.py --port PORT --dir DIR [--pidfile F]
                [--tls-cert CERT --tls-key KEY] [--require-starttls]
                [--auth-user U --auth-pass P] [--no-enhanced]
                [--mail-from-reply "CODE TEXT" [--mail-from-reject-after N]
                 [--mail-from-reject-count M]] [--chunking]

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
  contentreject...
               accepted; after the message data 550 5.7.1 message
               content rejected (a refusal of the content, not of the
               address)
  rcpthangup...
               no reply to RCPT: the server closes the connection.
               With --chunking it first waits 0.5 s for BDAT chunks
               pipelined after the RCPT and, when they come up to the
               LAST one, keeps the message as delivered (the client
               would have sent a message the relay has, while it never
               heard back about the recipient).
  anything else is accepted.

--mail-from-reply "CODE TEXT" answers MAIL FROM with that reply instead
of 250 (logged as {"mail_from": ..., "refused": "CODE TEXT"}). With
--mail-from-reject-after N the first N MAIL FROMs of the server's life
are accepted and only the later ones refused; with
--mail-from-reject-count M only M are refused, later ones accepted
again.

--chunking advertises CHUNKING and takes BDAT (RFC 3030; aiosmtpd has
no BDAT of its own): each chunk that is not the last gets 250, the LAST
one the reply DATA would get; BDAT without an accepted recipient gets
554 5.5.1 no valid recipients.

An AUTH attempt is logged as {"auth_attempt": user, "tls": bool}.

Each accepted message is written to DIR/NNNNNNNN.eml (the DATA bytes
as received, dot-unstuffed, CRLF kept; written under a temporary name,
then renamed) and gets one JSON line in DIR/log.jsonl:
  {"seq": N, "mail_from": ..., "rcpt": ..., "file": "NNNNNNNN.eml",
   "tls": bool, "auth": user or null, "via": "DATA" or "BDAT", "conn": N}
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
        self.chunking = args.chunking
        self.mail_reply = args.mail_from_reply
        self.mail_reject_after = args.mail_from_reject_after
        self.mail_reject_count = args.mail_from_reject_count
        self.mails = 0
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
        if self.chunking:
            extra.append("250-CHUNKING")
        return responses[:-1] + extra + responses[-1:]

    def mail_refusal(self):
        self.mails += 1
        if self.mail_reply is None or self.mails <= self.mail_reject_after:
            return None
        if (self.mail_reject_count is not None
                and self.mails > self.mail_reject_after
                + self.mail_reject_count):
            return None
        return self.mail_reply

    async def handle_MAIL(self, server, session, envelope, address, options):
        refused = self.mail_refusal()
        if refused is not None:
            self.log({"mail_from": address, "refused": refused})
            return refused
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

    async def read_chunks(self, server):
        """Read pipelined BDAT commands and their chunks up to LAST."""
        data = b""
        while True:
            line = await server._reader.readuntil(b"\r\n")
            words = line.decode("ascii", "replace").split()
            if len(words) < 2 or words[0].upper() != "BDAT":
                return None
            data += await server._reader.readexactly(int(words[1]))
            if len(words) > 2 and words[2].upper() == "LAST":
                return data

    async def rcpt_hangup(self, server, envelope, address):
        if self.chunking:
            try:
                data = await asyncio.wait_for(self.read_chunks(server), 0.5)
            except asyncio.TimeoutError:
                data = None
            if data is not None:
                self.store(server, server.session, envelope.mail_from,
                           address, data, "BDAT")
        self.log({"rcpt": address, "rcpt_hangup": True})
        server.transport.abort()
        return self.reply(421, "4.4.2", "gone")  # never arrives

    async def handle_RCPT(self, server, session, envelope, address, options):
        if address.split("@", 1)[0].lower().startswith("rcpthangup"):
            return await self.rcpt_hangup(server, envelope, address)
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
        if any(l.startswith("contentreject") for l in locals_):
            refused = self.reply(550, "5.7.1", "message content rejected")
            self.log({"rcpt": rcpt, "refused": refused})
            return refused
        self.store(server, session, envelope.mail_from, rcpt,
                   envelope.original_content,
                   "BDAT" if hasattr(envelope, "assent_chunks") else "DATA")
        return self.reply(250, "2.0.0", "queued as %d" % self.seq)

    def store(self, server, session, mail_from, rcpt, content, via):
        self.seq += 1
        name = "%08d.eml" % self.seq
        tmp = os.path.join(self.dir, ".tmp." + name)
        with open(tmp, "wb") as f:
            f.write(content)
        os.rename(tmp, os.path.join(self.dir, name))
        user = None
        if session.authenticated:
            user = session.auth_data.login.decode("utf-8", "replace")
        self.log({"seq": self.seq, "mail_from": mail_from,
                  "rcpt": rcpt, "file": name, "tls": session.ssl is not None,
                  "auth": user, "via": via,
                  "conn": getattr(server, "assent_conn", 0)})

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.log({"auth_attempt": auth_data.login.decode("utf-8", "replace"),
                  "tls": session.ssl is not None})
        ok = (auth_data.login == self.user.encode()
              and auth_data.password == self.password.encode())
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class ChunkingSMTP(SMTP):
    """aiosmtpd's SMTP with BDAT (RFC 3030) for --chunking."""

    async def smtp_BDAT(self, arg):
        words = arg.split() if arg else []
        last = len(words) == 2 and words[1].upper() == "LAST"
        if (len(words) not in (1, 2) or not words[0].isdigit()
                or (len(words) == 2 and not last)):
            # the size is unknown, so is where the next command starts
            await self.push("501 5.5.4 Syntax: BDAT size [LAST]")
            self.transport.close()
            return
        chunk = await self._reader.readexactly(int(words[0]))
        handler = self.event_handler
        if not self.envelope.mail_from:
            await self.push(handler.reply(503, "5.5.1", "need MAIL"))
            return
        if not self.envelope.rcpt_tos:
            await self.push(handler.reply(554, "5.5.1",
                                          "no valid recipients"))
            return
        if not hasattr(self.envelope, "assent_chunks"):
            self.envelope.assent_chunks = b""
        self.envelope.assent_chunks += chunk
        if not last:
            await self.push(handler.reply(250, "2.0.0",
                                          "%d octets" % len(chunk)))
            return
        self.envelope.original_content = self.envelope.assent_chunks
        self.envelope.content = self.envelope.assent_chunks
        status = await handler.handle_DATA(self, self.session, self.envelope)
        self._set_post_data_state()
        await self.push(status)


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
    p.add_argument("--mail-from-reply")
    p.add_argument("--mail-from-reject-after", type=int, default=0)
    p.add_argument("--mail-from-reject-count", type=int)
    p.add_argument("--chunking", action="store_true")
    args = p.parse_args()
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if args.require_starttls and not args.tls_cert:
        p.error("--require-starttls needs --tls-cert")
    if args.mail_from_reply is not None:
        words = args.mail_from_reply.split(" ", 1)
        if not words[0].isdigit() or len(words[0]) != 3:
            p.error("--mail-from-reply wants \"CODE TEXT\"")
    elif args.mail_from_reject_after or args.mail_from_reject_count:
        p.error("--mail-from-reject-* need --mail-from-reply")
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
    cls = ChunkingSMTP if args.chunking else SMTP
    return lambda: cls(handler, **kwargs)


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
