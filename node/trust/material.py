"""The trust files of a data directory and how they come to be.

    authority.crt   the deployment's root CA (every node)
    node.crt        this node's certificate chain, PEM, leaf first
    signer.key      (signing nodes only) the key that certifies joining nodes:
    signer.crt      the authority itself, or the centre CA it delegated

A standalone centre's first node holds the authority (``init``); an HQ's
first node too (``init --hq``); ``provision`` writes a centre CA into a file
from which ``init --from`` makes that centre's first node.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgpack
from cryptography import x509

from node.errors import ConfigError
from node.identity import Identity
from node.trust.certs import (
    CertificateError,
    NodeCert,
    der,
    issue_node_cert,
    load_pem_chain,
    make_authority,
    make_center_ca,
    to_pem,
    verify_chain,
)

AUTHORITY_FILE = "authority.crt"
NODE_CERT_FILE = "node.crt"
SIGNER_KEY_FILE = "signer.key"
SIGNER_CERT_FILE = "signer.crt"
PROVISION_KIND = "examnode-provision-v1"


@dataclass(frozen=True)
class TrustMaterial:
    """A node's view of the deployment's trust."""

    root: x509.Certificate
    chain: list[x509.Certificate]  # this node's, leaf first
    me: NodeCert
    signer: tuple[Identity, x509.Certificate] | None

    @property
    def chain_der(self) -> list[bytes]:
        return [der(c) for c in self.chain]


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _save(data_dir: Path, root: x509.Certificate, chain: list[x509.Certificate],
          signer: tuple[Identity, x509.Certificate] | None) -> None:
    (data_dir / AUTHORITY_FILE).write_bytes(to_pem(root))
    (data_dir / NODE_CERT_FILE).write_bytes(to_pem(*chain))
    if signer is not None:
        _write_private(data_dir / SIGNER_KEY_FILE, bytes(signer[0].signing_key))
        (data_dir / SIGNER_CERT_FILE).write_bytes(to_pem(signer[1]))


def create_authority(data_dir: Path, node: Identity, center: str, role: str) -> None:
    """Make this node its deployment's authority and certify it directly."""
    authority = Identity.generate()
    root = make_authority(authority, center)
    leaf = issue_node_cert(authority, root, node.public_key, center, role)
    _save(data_dir, root, [leaf], (authority, root))


def provision_center(data_dir: Path, center: str) -> bytes:
    """Return a provisioning file delegating ``center`` to a new centre CA."""
    trust = load_trust(data_dir)
    if trust.signer is None or der(trust.signer[1]) != der(trust.root):
        raise ConfigError("only the authority's node (HQ) can provision a centre")
    center_key = Identity.generate()
    ca = make_center_ca(trust.signer[0], trust.root, center_key, center)
    out: bytes = msgpack.packb({
        "kind": PROVISION_KIND, "center": center, "authority": der(trust.root),
        "ca_cert": der(ca), "ca_key": bytes(center_key.signing_key),
        # The HQ node's chain, so the centre can encrypt bundles to HQ from day one.
        "hq_chain": trust.chain_der,
    }, use_bin_type=True)
    return out


def read_provision(data: bytes) -> tuple[str, x509.Certificate, Identity, x509.Certificate,
                                          list[bytes]]:
    """Parse a provisioning file: (centre, root, centre CA key, cert, HQ node chain)."""
    try:
        p = msgpack.unpackb(data, raw=False, max_bin_len=1 << 16, max_str_len=1 << 10)
        if not isinstance(p, dict) or p.get("kind") != PROVISION_KIND:
            raise ValueError("not a provisioning file")
        root = x509.load_der_x509_certificate(p["authority"])
        ca = x509.load_der_x509_certificate(p["ca_cert"])
        from nacl.signing import SigningKey

        key = Identity(SigningKey(p["ca_key"]))
        ca.verify_directly_issued_by(root)
        hq_chain = [bytes(c) for c in p.get("hq_chain", [])]
        return str(p["center"]), root, key, ca, hq_chain
    except Exception as e:  # any malformed file gets the same clear answer
        raise ConfigError(f"not a valid examnode provisioning file: {e}") from e


def init_from_provision(data_dir: Path, node: Identity, data: bytes) -> list[bytes]:
    """Certify ``node`` with a provisioned centre CA; return the HQ node's chain."""
    center, root, ca_key, ca, hq_chain = read_provision(data)
    leaf = issue_node_cert(ca_key, ca, node.public_key, center, "node")
    _save(data_dir, root, [leaf, ca], (ca_key, ca))
    return hq_chain


def certify_joiner(trust: TrustMaterial, public_key: bytes) -> list[x509.Certificate]:
    """Return the chain certifying a joining node for this node's centre."""
    if trust.signer is None:
        raise ConfigError("this node holds no signing key; invite from the centre's first node")
    key, cert = trust.signer
    leaf = issue_node_cert(key, cert, public_key, trust.me.center, "node")
    return [leaf] if der(cert) == der(trust.root) else [leaf, cert]


def save_joined(data_dir: Path, root: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """Write the trust files of a node that joined with a token."""
    _save(data_dir, root, chain, None)


def load_trust(data_dir: Path) -> TrustMaterial:
    """Read and verify the trust files of ``data_dir``."""
    try:
        root = load_pem_chain((data_dir / AUTHORITY_FILE).read_bytes())[0]
        chain = load_pem_chain((data_dir / NODE_CERT_FILE).read_bytes())
    except FileNotFoundError as e:
        raise ConfigError(f"{e.filename}: missing; this node has no certificate") from e
    except ValueError as e:
        raise ConfigError(f"{data_dir}: certificate files do not parse: {e}") from e
    try:
        me = verify_chain([der(c) for c in chain], root)
    except CertificateError as e:
        raise ConfigError(f"{data_dir / NODE_CERT_FILE}: {e.detail}") from e
    signer = None
    if (data_dir / SIGNER_KEY_FILE).exists():
        from nacl.signing import SigningKey

        key_path = data_dir / SIGNER_KEY_FILE
        if key_path.stat().st_mode & 0o077:
            raise ConfigError(f"{key_path}: key file must be owner-only (chmod 600)")
        signer = (Identity(SigningKey(key_path.read_bytes())),
                  load_pem_chain((data_dir / SIGNER_CERT_FILE).read_bytes())[0])
    return TrustMaterial(root, chain, me, signer)
