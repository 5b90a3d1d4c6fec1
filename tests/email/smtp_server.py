#!/usr/bin/python3
"""A local SMTP server for the tests (Debian python3-aiosmtpd).

usage: smtp_server.py PORT OUTDIR [CERT KEY]
Every accepted message is written to OUTDIR/<n>.eml (with the envelope in OUTDIR/<n>.env).
With CERT and KEY, STARTTLS is offered and AUTH (PLAIN, LOGIN; user "agent", password
"p4ss") is required after it. Recipients "tempfail@..." get 451, "reject@..." get 550.
"""
import asyncio
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Saver:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.startswith("tempfail@"):
            return "451 4.3.0 mailbox busy, try again later"
        if address.startswith("reject@"):
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        base = os.path.join(self.outdir, str(self.count))
        with open(base + ".env.tmp", "w") as f:
            f.write(envelope.mail_from + "\n" + "\n".join(envelope.rcpt_tos) + "\n")
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".env.tmp", base + ".env")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK queued as " + str(self.count)


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"agent" and \
        auth_data.password == b"p4ss"
    return AuthResult(success=ok)


def main():
    port, outdir = int(sys.argv[1]), sys.argv[2]
    kwargs = {}
    if len(sys.argv) > 4:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        kwargs = dict(tls_context=ctx, require_starttls=True, authenticator=authenticator,
                      auth_required=True, auth_require_tls=True)
    controller = Controller(Saver(outdir), hostname="127.0.0.1", port=port,
                            decode_data=False, **kwargs)
    controller.start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
