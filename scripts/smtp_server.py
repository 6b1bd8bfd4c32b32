#!/usr/bin/env python3
"""A real SMTP server for medic's tests (aiosmtpd), storing every message as a JSON file.

Each accepted message becomes one file `<dir>/<received_ns>-<seq>.json`, written atomically (a
hidden temporary file in the same directory, then a rename), so a test that globs `*.json` never
reads half a message. Fields:

    mail_from    envelope sender (MAIL FROM)
    rcpt_tos     envelope recipients (RCPT TO), a list
    data         the raw message (headers and body) as text, undecoded MIME
    received_at  RFC 3339 UTC timestamp
    (extras)     id, peer, helo, tls (bool: STARTTLS was used), auth_user (or null)

Plain server, no TLS and no AUTH:

    python scripts/smtp_server.py --port 2525 --dir /tmp/mail

STARTTLS required, AUTH (PLAIN/LOGIN) required, only offered after STARTTLS:

    python scripts/smtp_server.py --port 2526 --dir /tmp/mail-tls \\
        --tls-cert server.pem --tls-key server.key --auth-user medic --auth-password secret

The same plus `--implicit-tls`: TLS from the first byte (SMTPS, what MAIL_USE_SSL means), no
STARTTLS; AUTH is offered at once since the connection is already encrypted.

`--port 0` picks a free port. Once listening it prints one line `READY <host> <port>` to stdout
(flushed), so a test can start its own instance and read the port from it. `--reject CODE`
answers every DATA with that SMTP code (e.g. 451 or 554) to exercise failure paths.
`--late-accept N` stores the first N messages but answers their DATA only after
`--late-seconds` (default 30): a client that gives up sooner sends the message again, as after a
crash between the server's 250 and the client noting it. `--echo-auth` offers AUTH PLAIN and
LOGIN without TLS and refuses every attempt with a 535 that quotes everything the client sent
for it (the AUTH line and each answer to a challenge, base64 as sent), as careless servers do:
medic must keep the password out of every output all the same. SIGTERM or SIGINT stops it
cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import signal
import ssl
import sys
import time
import warnings
from pathlib import Path

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

_SEQ = itertools.count(1)

# aiosmtpd 1.4 warns about its own legacy attribute on every successful AUTH.
warnings.filterwarnings("ignore", message="Session.login_data is deprecated")


class StoreHandler:
    """aiosmtpd handler: writes each message to `directory` as one JSON file."""

    def __init__(
        self, directory: Path, reject: int | None, implicit_tls: bool, late: int = 0, late_seconds: float = 0
    ) -> None:
        self.directory = directory
        self.reject = reject
        self.implicit_tls = implicit_tls
        # The first `late` messages are stored, then answered only after `late_seconds`: a
        # server that took the message while its client gave up waiting.
        self.late = late
        self.late_seconds = late_seconds

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        if self.reject is not None:
            kind = "Temporary" if 400 <= self.reject < 500 else "Permanent"
            return f"{self.reject} {kind} failure (test server told to reject)"
        raw = envelope.original_content if envelope.original_content is not None else envelope.content
        if isinstance(raw, bytes):
            text = raw.decode("utf-8", errors="replace")
        else:
            text = raw or ""
        now_ns = time.time_ns()
        seq = next(_SEQ)
        msg_id = f"{now_ns}-{os.getpid()}-{seq:06d}"
        auth_user = None
        if session.authenticated and isinstance(session.auth_data, LoginPassword):
            auth_user = session.auth_data.login.decode("utf-8", errors="replace")
        record = {
            "id": msg_id,
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": text,
            "received_at": dt.datetime.fromtimestamp(now_ns / 1e9, tz=dt.timezone.utc)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "peer": list(session.peer) if isinstance(session.peer, tuple) else session.peer,
            "helo": session.host_name,
            "tls": self.implicit_tls or session.ssl is not None,
            "auth_user": auth_user,
        }
        final = self.directory / f"{msg_id}.json"
        tmp = self.directory / f".{msg_id}.json.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        print(f"stored {final.name} from={envelope.mail_from} to={envelope.rcpt_tos}", flush=True)
        if self.late > 0:
            self.late -= 1
            await asyncio.sleep(self.late_seconds)
        return "250 Message accepted for delivery"


class EchoAuthSMTP(SMTP):
    """Refuses every AUTH with a reply quoting what the client sent (see --echo-auth)."""

    async def smtp_AUTH(self, arg: str) -> None:  # noqa: N802 (aiosmtpd's name)
        received = [f"AUTH {arg}"]
        words = arg.split()
        mechanism = words[0].upper() if words else ""
        # Without an initial response the client answers challenges: read them as sent.
        prompts = {"LOGIN": ["VXNlcm5hbWU6", "UGFzc3dvcmQ6"], "PLAIN": [""]}.get(mechanism, [])
        if len(words) == 1:
            for prompt in prompts:
                await self.push(f"334 {prompt}")
                line = await self._reader.readline()
                received.append(line.decode("ascii", errors="replace").strip())
        print(f"auth {mechanism} echoed", flush=True)
        await self.push("535 5.7.8 authentication failed for: " + " / ".join(received))


def make_authenticator(user: str, password: str):
    want = (user.encode(), password.encode())

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == want
        print(f"auth {mechanism} {'ok' if ok else 'refused'}", flush=True)
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticator


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, required=True, help="port to bind; 0 picks a free one")
    p.add_argument("--dir", required=True, type=Path, help="where to store messages (created)")
    p.add_argument("--tls-cert", help="PEM certificate (chain) for STARTTLS")
    p.add_argument("--tls-key", help="PEM private key for STARTTLS")
    p.add_argument("--implicit-tls", action="store_true", help="TLS from the start (SMTPS), no STARTTLS")
    p.add_argument("--auth-user", help="require AUTH with this user (needs --auth-password)")
    p.add_argument("--auth-password", help="password for --auth-user")
    p.add_argument("--reject", type=int, metavar="CODE", help="answer every DATA with this code")
    p.add_argument(
        "--late-accept",
        type=int,
        default=0,
        metavar="N",
        help="store the first N messages but answer their DATA only after --late-seconds",
    )
    p.add_argument("--late-seconds", type=float, default=30.0, help="see --late-accept (default 30)")
    p.add_argument("--hostname", default="medic-test-smtp", help="name in the greeting")
    p.add_argument(
        "--echo-auth",
        action="store_true",
        help="offer AUTH without TLS and refuse it quoting what the client sent",
    )
    a = p.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        p.error("--tls-cert and --tls-key go together")
    if bool(a.auth_user) != bool(a.auth_password):
        p.error("--auth-user and --auth-password go together")
    if a.implicit_tls and not a.tls_cert:
        p.error("--implicit-tls needs --tls-cert/--tls-key")
    if a.auth_user and not a.tls_cert:
        p.error("AUTH is only offered after STARTTLS here: give --tls-cert/--tls-key too")
    if a.late_accept < 0 or a.late_seconds < 0:
        p.error("--late-accept and --late-seconds take counts of 0 or more")
    if a.reject is not None and not 400 <= a.reject <= 599:
        p.error("--reject takes a 4xx or 5xx code")
    return a


async def serve(a: argparse.Namespace) -> None:
    a.dir.mkdir(parents=True, exist_ok=True)
    handler = StoreHandler(a.dir, a.reject, a.implicit_tls, a.late_accept, a.late_seconds)

    tls_context = None
    if a.tls_cert:
        tls_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls_context.load_cert_chain(a.tls_cert, a.tls_key)

    def factory() -> SMTP:
        kwargs = dict(hostname=a.hostname, ident="medic-test-smtp")
        if tls_context is not None and not a.implicit_tls:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if a.echo_auth:
            kwargs.update(
                authenticator=make_authenticator("nobody", "never"),
                auth_required=True,
                auth_require_tls=False,
            )
            return EchoAuthSMTP(handler, **kwargs)
        if a.auth_user:
            kwargs.update(
                authenticator=make_authenticator(a.auth_user, a.auth_password),
                auth_required=True,
                # Over implicit TLS the connection is encrypted already; aiosmtpd only knows
                # about STARTTLS, so it must not wait for one before offering AUTH.
                auth_require_tls=not a.implicit_tls,
            )
        return SMTP(handler, **kwargs)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        factory, host=a.host, port=a.port, ssl=tls_context if a.implicit_tls else None
    )
    host, port = server.sockets[0].getsockname()[:2]
    mode = ("implicit-tls" if a.implicit_tls else "starttls" if tls_context else "plain") + (
        "+auth" if a.auth_user else "+echo-auth" if a.echo_auth else ""
    )
    print(f"READY {host} {port}", flush=True)
    print(f"medic test SMTP ({mode}) on {host}:{port}, storing into {a.dir}", flush=True)

    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    await server.wait_closed()
    print("stopped", flush=True)


def main(argv: list[str]) -> int:
    asyncio.run(serve(parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
