"""Account commands: createsuperuser, cleanup-sessions, totp."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from node.cli.errors import CliError
from node.runlock import is_running


def _offline(args: argparse.Namespace) -> Any:
    from node.runtime import open_offline

    return open_offline(args.data)[0]


def cmd_createsuperuser(args: argparse.Namespace) -> int:
    """Create an admin account (the password comes from stdin, or is generated)."""
    from node.services.auth.models import UserCreate
    from node.services.auth.permissions import Role
    from node.services.auth.signin import new_password

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CliError("no password on standard input", code=2)
    elif args.generate:
        password = new_password()
    else:
        raise CliError("give --password-stdin or --generate", code=2)
    ctx = _offline(args)
    try:
        body = UserCreate(username=args.username, password=password, role=Role.ADMIN,
                          full_name=args.full_name or "", email=args.email)
        if ctx.trust is not None and not ctx.trust.me.may_write("global"):
            raise CliError("admins are global: create them on the HQ node (or on a "
                           "standalone centre's first node)")
        asyncio.run(ctx.auth.accounts.create_user(None, body))
        center = ctx.config.node.center
        if ctx.trust.me.role != "hq" and ctx.store.get(f"centers/{center}") is None:
            from node.services.auth.models import CenterCreate

            asyncio.run(ctx.auth.accounts.create_center(None, CenterCreate(
                code=center, name=ctx.config.node.name or center)))
    except Exception as e:
        detail = getattr(e, "detail", None)
        fields = getattr(e, "fields", None)
        raise CliError(f"{detail or e}{' ' + str(fields) if fields else ''}") from e
    finally:
        ctx.store.close()
    print(f"created admin {args.username}")
    if args.generate:
        print(f"  username: {args.username}")
        print(f"  password: {password}")
        print("  (shown once: write it down or change it after signing in)")
    return 0


def cmd_cleanup_sessions(args: argparse.Namespace) -> int:
    """Delete sessions that ended over a day ago and old sign-in attempts."""
    if is_running(args.data):
        raise CliError("the node is running; it cleans up hourly by itself "
                       "(stop it to run this by hand)")
    ctx = _offline(args)
    try:
        removed = asyncio.run(ctx.auth.signin.cleanup(keep_days=args.keep_days))
    finally:
        ctx.store.close()
    print(f"removed {removed} ended session(s) and old sign-in attempt(s)")
    return 0


def cmd_totp(args: argparse.Namespace) -> int:
    """Enrol a TOTP second factor for an account (node stopped); prints the secret."""
    import pyotp

    if is_running(args.data):
        raise CliError("the node is running; stop it, or enrol through the API "
                       "(POST /api/auth/totp/setup/)")
    ctx = _offline(args)
    try:
        key = f"users/{args.username}"
        if ctx.store.get(key) is None:
            raise CliError(f"unknown user {args.username}")
        secret = pyotp.random_base32()
        asyncio.run(ctx.store.put(key, {"totp_secret": secret, "totp_pending": None,
                                        "totp_enabled": True, "totp_last_step": 0}))
    finally:
        ctx.store.close()
    print(f"second factor enrolled for {args.username}; add it to an authenticator app:")
    print(f"  secret: {secret}")
    uri = pyotp.TOTP(secret).provisioning_uri(name=args.username, issuer_name='examnode')
    print(f"  uri:    {uri}")
    return 0


def add_commands(sub: Any, data_arg: Any) -> None:
    """Register the account commands."""
    p = sub.add_parser("createsuperuser", help="create an admin account",
                       description=cmd_createsuperuser.__doc__)
    data_arg(p)
    p.add_argument("--username", required=True)
    p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p.add_argument("--generate", action="store_true", help="generate and print a password")
    p.add_argument("--full-name")
    p.add_argument("--email")
    p.set_defaults(func=cmd_createsuperuser)

    p = sub.add_parser("totp", help="enrol a TOTP second factor for an account",
                       description=cmd_totp.__doc__)
    data_arg(p)
    p.add_argument("--username", required=True)
    p.set_defaults(func=cmd_totp)

    p = sub.add_parser("cleanup-sessions", help="delete ended sessions",
                       description=cmd_cleanup_sessions.__doc__)
    data_arg(p)
    p.add_argument("--keep-days", type=float, default=30.0,
                   help="keep sign-in attempts this many days (default 30)")
    p.set_defaults(func=cmd_cleanup_sessions)
