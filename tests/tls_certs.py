"""Certificates made by a test, for a test: a self-signed CA, a server certificate for 127.0.0.1
and localhost, client certificates, and a second CA nobody trusts (with the ``cryptography``
package; nothing is read from or written to the machine's trust store)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Key = ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate and its key as PEM files; ``combined`` holds both (MongoDB's
    ``tlsCertificateKeyFile``)."""

    cert: Path
    key: Path
    combined: Path


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA certificate (PEM) the server and the clients trust
    server: Issued  # SAN 127.0.0.1, ::1 and localhost
    client: Issued  # signed by the CA: accepted by a server that verifies its peers
    stranger_ca: Path  # another self-signed CA: trusting it instead of ``ca`` must fail
    stranger_client: Issued  # a client certificate signed by ``stranger_ca``


def _key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "zeroerrand tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, issuer: x509.Name, key: Key) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2)))


def _self_signed_ca(common_name: str) -> tuple[x509.Certificate, Key]:
    key = _key()
    cert = (_builder(common_name, _name(common_name), key)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _leaf(common_name: str, ca: tuple[x509.Certificate, Key], *, server: bool) -> tuple[x509.Certificate, Key]:
    ca_cert, ca_key = ca
    key = _key()
    builder = (_builder(common_name, ca_cert.subject, key)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.IPAddress(ipaddress.ip_address("::1"))]), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _write(directory: Path, name: str, pair: tuple[x509.Certificate, Key]) -> Issued:
    cert, key = pair
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    paths = Issued(directory / f"{name}.crt", directory / f"{name}.key", directory / f"{name}.pem")
    paths.cert.write_bytes(_pem(cert))
    paths.key.write_bytes(key_pem)
    paths.combined.write_bytes(_pem(cert) + key_pem)
    for path in (paths.key, paths.combined):
        path.chmod(0o600)
    return paths


def make_pki(directory: Path) -> Pki:
    """Writes a fresh CA, server and client certificates (valid for two days) into ``directory``.
    The files are readable by this user only, except the certificates (0644, as servers that
    drop privileges need them)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = _self_signed_ca("zeroerrand test CA")
    stranger = _self_signed_ca("zeroerrand stranger CA")
    (directory / "ca.crt").write_bytes(_pem(ca[0]))
    (directory / "stranger-ca.crt").write_bytes(_pem(stranger[0]))
    return Pki(ca=directory / "ca.crt",
                   server=_write(directory, "server", _leaf("localhost", ca, server=True)),
                   client=_write(directory, "client", _leaf("zeroerrand-service", ca, server=False)),
                   stranger_ca=directory / "stranger-ca.crt",
                   stranger_client=_write(directory, "stranger-client", _leaf("intruder", stranger, server=False)))
