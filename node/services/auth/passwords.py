"""Passwords: Argon2id (libsodium via PyNaCl) and a length/strength policy.

Hashing is deliberately slow and memory-hard, so it runs off the event loop
and at most a few at a time (a hall of candidates signing in at 9:00 must
not exhaust a node's memory).
"""

from __future__ import annotations

import asyncio
import os

import nacl.pwhash
from nacl.exceptions import InvalidkeyError

from node.errors import ValidationError

_SLOTS = asyncio.Semaphore(max(1, min(4, os.cpu_count() or 1)))
COMMON = {"password", "123456", "12345678", "123456789", "1234567890", "qwerty",
          "qwertyuiop", "letmein", "welcome", "admin", "examnode", "iloveyou", "abc123",
          "password1", "passw0rd", "monkey", "dragon", "football", "baseball", "master"}


def check_policy(password: str, *, min_length: int, username: str = "") -> None:
    """Raise a field error when ``password`` is too weak."""
    problems = []
    if len(password) < min_length:
        problems.append(f"Ensure this field has at least {min_length} characters.")
    if len(password) > 256:
        problems.append("Ensure this field has no more than 256 characters.")
    lowered = password.lower()
    if lowered in COMMON or (username and username.lower() in lowered):
        problems.append("This password is too common or contains the username.")
    if len(set(password)) < 4:
        problems.append("This password has too few different characters.")
    if problems:
        raise ValidationError("Invalid password.", fields={"password": problems})


def _hash(password: str) -> str:
    return nacl.pwhash.argon2id.str(password.encode()).decode()


def _verify(stored: str, password: str) -> bool:
    try:
        return bool(nacl.pwhash.argon2id.verify(stored.encode(), password.encode()))
    except (InvalidkeyError, ValueError, TypeError):
        return False


async def hash_password(password: str) -> str:
    """Return the Argon2id hash string of ``password`` (off the event loop)."""
    async with _SLOTS:
        return await asyncio.to_thread(_hash, password)


async def verify_password(stored: str, password: str) -> bool:
    """Return True when ``password`` matches the stored hash (off the event loop)."""
    if not stored.startswith("$argon2id$"):
        return False
    async with _SLOTS:
        return await asyncio.to_thread(_verify, stored, password)


def hash_password_sync(password: str) -> str:
    """``hash_password`` for the CLI."""
    return _hash(password)
