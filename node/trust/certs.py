"""X.509 certificates binding node keys to a centre and a role.

The authority is an Ed25519 X.509 CA. It certifies each node directly, or
delegates a centre to a centre CA (``provision``) that certifies that
centre's nodes. A node certificate's subject carries the node id (CN), the
centre (O) and the role (OU); its public key *is* the node's Ed25519 key,
so TLS sessions and delta signatures are pinned to the same key.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import NameOID

from node.errors import ExamnodeError
from node.identity import Identity, node_id_of

ROLES = ("node", "hq")
AUTHORITY_CENTER = "*"
NODE_CERT_DAYS = 3650
MAX_CERT_BYTES = 16 * 1024


class CertificateError(ExamnodeError):
    code = "bad_certificate"
    status = 403


@dataclass(frozen=True)
class NodeCert:
    """A verified node certificate: who may sign what."""

    public_key: bytes
    node_id: str
    center: str
    role: str
    direct: bool  # issued by the authority itself (may write the global scope)
    chain: tuple[bytes, ...]  # DER: leaf first, then the centre CA if any

    def may_write(self, scope: str) -> bool:
        """Return True when this node may sign deltas in ``scope``."""
        if self.role == "hq":
            return True
        if scope == "global":
            return self.direct
        return scope == self.center


def _private_key(identity: Identity) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes(identity.signing_key))


def _raw_public(cert: x509.Certificate) -> bytes:
    key = cert.public_key()
    if not isinstance(key, Ed25519PublicKey):
        raise CertificateError("certificate key is not Ed25519")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1:
        raise CertificateError(f"certificate name lacks a single {oid._name}")
    value = values[0].value
    return value if isinstance(value, str) else value.decode()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _builder(subject: x509.Name, issuer: x509.Name, public: Ed25519PublicKey,
             days: int) -> x509.CertificateBuilder:
    now = _now()
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days)))


def make_authority(identity: Identity, name: str) -> x509.Certificate:
    """Return a self-signed root CA certificate for an authority key."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"examnode authority {name}"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, AUTHORITY_CENTER)])
    key = _private_key(identity)
    return (_builder(subject, subject, key.public_key(), 36500)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(key, None))


def make_center_ca(authority: Identity, authority_cert: x509.Certificate, center_key: Identity,
                   center: str) -> x509.Certificate:
    """Return a centre CA certificate delegated by the authority to ``center``."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"examnode centre {center}"),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, center)])
    return (_builder(subject, authority_cert.subject, _private_key(center_key).public_key(),
                     NODE_CERT_DAYS)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(_private_key(authority), None))


def issue_node_cert(issuer: Identity, issuer_cert: x509.Certificate, node_public: bytes,
                    center: str, role: str) -> x509.Certificate:
    """Return a certificate binding ``node_public`` to ``center`` and ``role``."""
    if role not in ROLES:
        raise CertificateError(f"unknown role {role!r}")
    node_id = node_id_of(node_public)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, center),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role)])
    public = Ed25519PublicKey.from_public_bytes(node_public)
    return (_builder(subject, issuer_cert.subject, public, NODE_CERT_DAYS)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(
                node_id.lower() + ".examnode")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(_private_key(issuer), None))


def _check_time(cert: x509.Certificate, what: str) -> None:
    now = _now()
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise CertificateError(f"{what} certificate is not valid now")


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def verify_chain(chain: list[bytes] | tuple[bytes, ...], root: x509.Certificate) -> NodeCert:
    """Verify a DER chain (leaf first) up to the authority ``root``; return the node."""
    if not isinstance(chain, list | tuple) or not 1 <= len(chain) <= 2:
        raise CertificateError("a node chain is a leaf and at most one centre CA")
    if not all(isinstance(c, bytes | bytearray) and 0 < len(c) <= MAX_CERT_BYTES
               for c in chain):
        raise CertificateError("a certificate must be DER bytes of at most 16 KiB")
    try:
        certs = [x509.load_der_x509_certificate(bytes(c)) for c in chain]
    except ValueError as e:
        raise CertificateError(f"certificate does not parse: {e}") from e
    leaf = certs[0]
    issuer = certs[1] if len(certs) == 2 else root
    try:
        if len(certs) == 2:
            if not _is_ca(issuer) or _attr(issuer.subject, NameOID.ORGANIZATION_NAME) in (
                    AUTHORITY_CENTER, ""):
                raise CertificateError("intermediate is not a centre CA")
            issuer.verify_directly_issued_by(root)
            _check_time(issuer, "centre CA")
        leaf.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError) as e:
        raise CertificateError("certificate is not issued by this deployment's authority") \
            from e
    _check_time(leaf, "node")
    if _is_ca(leaf):
        raise CertificateError("a CA certificate cannot be a node certificate")
    public = _raw_public(leaf)
    node_id = _attr(leaf.subject, NameOID.COMMON_NAME)
    center = _attr(leaf.subject, NameOID.ORGANIZATION_NAME)
    role = _attr(leaf.subject, NameOID.ORGANIZATIONAL_UNIT_NAME)
    if node_id != node_id_of(public):
        raise CertificateError("certificate name does not match its key")
    if role not in ROLES:
        raise CertificateError(f"unknown role {role!r}")
    if len(certs) == 2 and role != "hq" and \
            center != _attr(issuer.subject, NameOID.ORGANIZATION_NAME):
        raise CertificateError("a centre CA may only certify nodes of its own centre")
    if len(certs) == 2 and role == "hq":
        raise CertificateError("only the authority certifies HQ nodes")
    return NodeCert(public, node_id, center, role, len(certs) == 1,
                    tuple(bytes(c) for c in chain))


def to_pem(*certs: x509.Certificate) -> bytes:
    """Return certificates as concatenated PEM."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Parse concatenated PEM certificates."""
    return x509.load_pem_x509_certificates(data)


def der(cert: x509.Certificate) -> bytes:
    """Return a certificate's DER bytes."""
    return cert.public_bytes(serialization.Encoding.DER)


def private_key_pem(identity: Identity) -> bytes:
    """Return the PKCS#8 PEM of an identity's private key (for TLS)."""
    return _private_key(identity).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
