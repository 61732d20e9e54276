"""Nessus: the REST API simulator (lab/nessus_sim.py) over TLS with a CA made here.

Env: LAB_NESSUS_URL, LAB_NESSUS_CA (PEM of the lab CA: give it as ca_path), LAB_NESSUS_ACCESS_KEY,
LAB_NESSUS_SECRET_KEY, LAB_NESSUS_USERNAME, LAB_NESSUS_PASSWORD, LAB_NESSUS_ADMIN_TOKEN (header
X-Sim-Token for POST /_sim/config), LAB_NESSUS_SAMPLES (dir of the real .nessus samples).
LAB_NESSUS_SCAN_SECONDS at `lab up` sets how long a scan runs (default 1.5; 60 for benchmarks).
See lab/README-nessus.md.
"""
import datetime
import ipaddress
import json
import os
import secrets
import ssl

from ._util import free_port, http_ok, spawn, wait_for

NAME = "nessus"


def _make_certs(directory):
    """A lab CA and a server certificate for 127.0.0.1 / localhost signed by it (kept across restarts)."""
    ca_path = os.path.join(directory, "ca.pem")
    cert_path = os.path.join(directory, "server.pem")
    key_path = os.path.join(directory, "server.key")
    if all(os.path.exists(p) for p in (ca_path, cert_path, key_path)):
        return ca_path, cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloudefigo lab Nessus CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=365))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=90))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    os.makedirs(directory, exist_ok=True)
    with open(ca_path, "wb") as handle:
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(cert_path, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    return ca_path, cert_path, key_path


def samples_dir(root):
    # the real .nessus samples the simulator replays live in the repository (tests/data/nessus)
    return os.environ.get("LAB_NESSUS_SAMPLES") or os.path.join(root, "tests", "data", "nessus")


def start(ctx):
    directory = os.path.join(ctx.state_dir, "nessus")
    os.makedirs(directory, exist_ok=True)
    ca_path, cert_path, key_path = _make_certs(directory)
    samples = samples_dir(ctx.root)
    if not os.path.isdir(samples):
        raise RuntimeError("Nessus samples not found at %s (expected tests/data/nessus in the repository;"
                           " or set LAB_NESSUS_SAMPLES)" % samples)
    port = free_port()
    conf = {
        "host": "127.0.0.1",
        "port": port,
        "cert": cert_path,
        "key": key_path,
        "samples_dir": samples,
        "access_key": secrets.token_hex(32),
        "secret_key": secrets.token_hex(32),
        "users": {"admin": secrets.token_urlsafe(16)},
        "admin_token": secrets.token_urlsafe(24),
        "scan_seconds": float(os.environ.get("LAB_NESSUS_SCAN_SECONDS", "1.5")),
    }
    conf_path = os.path.join(directory, "config.json")
    with open(os.open(conf_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as handle:
        json.dump(conf, handle, indent=2)
    log = os.path.join(ctx.state_dir, "nessus.log")
    proc = spawn([ctx.venv_bin("python"), os.path.join(ctx.root, "lab", "nessus_sim.py"), "--config", conf_path], log)
    url = "https://127.0.0.1:%d" % port
    context = ssl.create_default_context(cafile=ca_path)
    wait_for(lambda: http_ok(url + "/server/status", context=context), 30, "nessus simulator", proc, log)
    return {
        "pids": [proc.pid],
        "env": {
            "LAB_NESSUS_URL": url,
            "LAB_NESSUS_CA": ca_path,
            "LAB_NESSUS_ACCESS_KEY": conf["access_key"],
            "LAB_NESSUS_SECRET_KEY": conf["secret_key"],
            "LAB_NESSUS_USERNAME": "admin",
            "LAB_NESSUS_PASSWORD": conf["users"]["admin"],
            "LAB_NESSUS_ADMIN_TOKEN": conf["admin_token"],
            "LAB_NESSUS_SAMPLES": samples,
        },
    }
