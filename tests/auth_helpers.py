"""Users, tokens and a throwaway certificate authority for the auth and TLS tests.

Certificates are made here with ``cryptography`` each session: a CA, a server certificate
for 127.0.0.1/localhost, a client certificate, and a second, unrelated CA.
"""

from __future__ import annotations

import base64
import datetime
import functools
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flight_lake.auth.passwords import hash_password

PASSWORDS = {"reader1": "reader-pass-1", "writer1": "writer-pass-1", "admin1": "admin-pass-1"}
ROLES = {"reader1": "reader", "writer1": "writer", "admin1": "admin"}
SIGNING_KEY = "test-signing-key-" + secrets.token_urlsafe(32)


@functools.cache
def _hashes() -> dict[str, str]:
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


def auth_section(**overrides: Any) -> dict[str, Any]:
    """An ``[auth]`` section with a reader, a writer and an admin."""
    users = [{"name": name, "role": ROLES[name], "password_hash": stored}
             for name, stored in _hashes().items()]
    return {"users": users, "signing_key": SIGNING_KEY, **overrides}


def basic(user: str, password: str, *, padding: bool = True) -> str:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return "Basic " + (encoded if padding else encoded.rstrip("="))


@dataclass(frozen=True)
class Pem:
    cert: bytes
    key: bytes

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        cert, key = folder / f"{name}.crt", folder / f"{name}.key"
        cert.write_bytes(self.cert)
        key.write_bytes(self.key)
        return cert, key


@dataclass(frozen=True)
class Authority:
    """A CA with the server and client certificates it signed."""

    ca: Pem
    server: Pem
    client: Pem

    def tls_section(self, folder: Path, *, mutual: bool = False) -> dict[str, str]:
        cert, key = self.server.write(folder, "server")
        section = {"cert": str(cert), "key": str(key)}
        if mutual:
            ca_cert, _ = self.ca.write(folder, "ca")
            section["client_ca"] = str(ca_cert)
        return section


@functools.cache
def authority(label: str = "flight_lake test CA") -> Authority:
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, label)])
    now = datetime.datetime.now(datetime.UTC)
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True,
            content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def issue(common_name: str, usage: x509.ObjectIdentifier, server: bool) -> Pem:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
        )
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return Pem(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    return Authority(
        ca=Pem(ca_cert.public_bytes(serialization.Encoding.PEM), _key_pem(ca_key)),
        server=issue("localhost", ExtendedKeyUsageOID.SERVER_AUTH, True),
        client=issue("flight_lake test client", ExtendedKeyUsageOID.CLIENT_AUTH, False),
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
