"""A throwaway certificate authority for the broker's TLS listeners (demo, tests, benches).

`make_pki(dir)` writes a CA, a server certificate for 127.0.0.1/localhost signed by it, and a
client certificate (the ingest service's, for the mutual-TLS service listener) with
/usr/bin/openssl. EC P-256 keys: the whole set takes a fraction of a second.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class PkiUnavailable(RuntimeError):
    """openssl is missing or failed; the message says which step."""


@dataclass(frozen=True)
class Pki:
    """Paths of a CA and the certificates it signed (PEM files, keys unencrypted)."""

    ca: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str) -> None:
    tool = shutil.which("openssl") or "/usr/bin/openssl"
    done = subprocess.run([tool, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PkiUnavailable(f"openssl {args[0]} failed: {done.stderr[-1000:]}")


def _key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path))
    path.chmod(0o600)


def _signed(
    pki_dir: Path, name: str, subject: str, extensions: str, ca: Path, ca_key: Path
) -> tuple[Path, Path]:
    key, csr, cert, ext = (pki_dir / f"{name}{s}" for s in (".key", ".csr", ".crt", ".ext"))
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr))
    ext.write_text(extensions)
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", str(ext), "-out", str(cert),
    )  # fmt: skip
    return cert, key


def make_pki(pki_dir: Path, client_name: str = "ingest") -> Pki:
    """Write a CA, a server certificate (127.0.0.1, localhost) and a client certificate."""
    pki_dir.mkdir(parents=True, exist_ok=True)
    ca, ca_key = pki_dir / "ca.crt", pki_dir / "ca.key"
    _key(ca_key)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-subj", "/CN=anbu throwaway CA",
        "-days", "2", "-sha256", "-out", str(ca),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    server_cert, server_key = _signed(
        pki_dir,
        "server",
        "/CN=localhost",
        "basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "extendedKeyUsage=serverAuth\n",
        ca,
        ca_key,
    )
    client_cert, client_key = _signed(
        pki_dir,
        "client",
        f"/CN={client_name}",
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        ca,
        ca_key,
    )
    return Pki(ca, ca_key, server_cert, server_key, client_cert, client_key)
