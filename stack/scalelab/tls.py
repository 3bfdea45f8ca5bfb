"""The stack's own certificate authority, and the certificate nginx serves HTTPS with (lab 02).

A real site gets its certificate from a public CA that every browser trusts. A lab on
127.0.0.1 cannot, so the stack makes a small CA of its own, once per state directory, and
signs nginx's certificate with it: the learner's client trusts that CA (``verify=ca_file``)
and nothing else — exactly what a company's internal CA is for. Keys are ECDSA P-256 (small
and fast to handshake with); the server certificate names ``localhost`` and ``127.0.0.1``
(subjectAltName: what a client checks) and lives 30 days; the CA 1 year. Files:
``ca.pem`` (the one to trust), ``ca.key``, ``edge.pem`` (nginx's certificate, then the CA's:
the chain it sends), ``edge.key``. Keys are 0600.
"""

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAMES = ("localhost", "127.0.0.1")
SERVER_DAYS = 30
CA_DAYS = 365
RENEW_BEFORE = datetime.timedelta(days=2)


@dataclass(frozen=True)
class EdgeCertificate:
    ca_file: Path             # what a client trusts
    certificate_file: Path    # what nginx serves (certificate + CA)
    key_file: Path            # nginx's private key

    def subject(self) -> str:
        return _load(self.certificate_file).subject.rfc4514_string()


def _load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Scalable Backend Lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _fresh(path: Path, now: datetime.datetime) -> bool:
    try:
        return _load(path).not_valid_after_utc - RENEW_BEFORE > now
    except (OSError, ValueError):
        return False


def _make_ca(directory: Path, now: datetime.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name(f"Scalable Backend Lab CA ({directory.parent.name or 'lab'})")
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    _write_key(directory / "ca.key", key)
    (directory / "ca.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def ensure(directory: Path, names: tuple[str, ...] = SERVER_NAMES) -> EdgeCertificate:
    """The CA and nginx's certificate in ``directory``: made on first use, renewed before they
    expire, reused otherwise (a client that trusted the CA keeps trusting it)."""
    directory.mkdir(parents=True, exist_ok=True)
    edge = EdgeCertificate(directory / "ca.pem", directory / "edge.pem", directory / "edge.key")
    now = datetime.datetime.now(datetime.UTC)
    if _fresh(edge.ca_file, now) and (directory / "ca.key").exists():
        ca_cert = _load(edge.ca_file)
        ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
        assert isinstance(ca_key, ec.EllipticCurvePrivateKey)   # what _make_ca writes
    else:
        ca_cert, ca_key = _make_ca(directory, now)
    if (_fresh(edge.certificate_file, now) and edge.key_file.exists()
            and _load(edge.certificate_file).issuer == ca_cert.subject):
        return edge
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names: list[x509.GeneralName] = []
    for name in names:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt_names.append(x509.DNSName(name))
    cert = (x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write_key(edge.key_file, key)
    edge.certificate_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM)
                                      + ca_cert.public_bytes(serialization.Encoding.PEM))
    return edge
