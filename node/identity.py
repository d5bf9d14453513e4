"""The node's Ed25519 identity: key file, node id fingerprint, signing.

DESIGN.md section 3: every node has an Ed25519 key pair created by
``examnode init`` and kept owner-only in the data directory. The node id is a
readable fingerprint of the public key (Syncthing-style groups of base32).
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.bindings
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from node.errors import ConfigError

KEY_FILE = "node.key"


def node_id_of(public_key: bytes) -> str:
    """Return the readable fingerprint of an Ed25519 public key."""
    digest = hashlib.sha256(public_key).digest()
    text = base64.b32encode(digest).decode("ascii").rstrip("=")[:28]
    return "-".join(text[i : i + 7] for i in range(0, 28, 7))


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return True when ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        VerifyKey(public_key).verify(message, signature)
    except (BadSignatureError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class Identity:
    """A node's key pair."""

    signing_key: SigningKey

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    @property
    def node_id(self) -> str:
        return node_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached Ed25519 signature of ``message``."""
        # The raw binding avoids building a SignedMessage object per delta.
        signed = nacl.bindings.crypto_sign(message, self.signing_key._signing_key)
        return signed[:64]

    @classmethod
    def generate(cls) -> Identity:
        """Create a fresh random identity."""
        return cls(SigningKey.generate())

    def save(self, data_dir: Path) -> Path:
        """Write the key seed owner-only into ``data_dir``; refuse to overwrite."""
        path = data_dir / KEY_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(bytes(self.signing_key))
            f.flush()
            os.fsync(f.fileno())
        return path

    @classmethod
    def load(cls, data_dir: Path) -> Identity:
        """Read the node key from ``data_dir``; refuse a key others can read."""
        path = data_dir / KEY_FILE
        try:
            st = path.stat()
            seed = path.read_bytes()
        except FileNotFoundError as e:
            raise ConfigError(f"{path}: node key missing (is this an examnode data dir?)") from e
        if st.st_mode & 0o077:
            raise ConfigError(f"{path}: key file must be owner-only (chmod 600)")
        if len(seed) != 32:
            raise ConfigError(f"{path}: not an Ed25519 key seed ({len(seed)} bytes)")
        return cls(SigningKey(seed))
