"""Accounts, centres and security on the replicated store (issue 4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from node.services.auth.accounts import Accounts
from node.services.auth.signin import SignIn, declare_indexes
from node.services.auth.tokens import TokenService

if TYPE_CHECKING:
    from node.services.system import NodeContext


@dataclass
class AuthServices:
    """The account services of one node."""

    accounts: Accounts
    signin: SignIn
    tokens: TokenService

    @classmethod
    def build(cls, ctx: NodeContext) -> AuthServices:
        """Wire the services for ``ctx`` and declare their indexes (store not yet open)."""
        policy = ctx.policy
        tokens = TokenService(ctx.identity, ctx.node_id, policy.public_key_of,
                              policy.is_revoked)
        accounts = Accounts(ctx)
        declare_indexes(ctx.store)
        return cls(accounts, SignIn(ctx, accounts, tokens), tokens)
