"""TLS and basic auth for the HTTP endpoint, from a web config file as Prometheus exporters read it.

The file is the one the Prometheus exporter toolkit defines (``--web.config.file``
of node_exporter and friends), so one file and one habit serve every exporter
of a host::

    tls_server_config:
      cert_file: server.crt          # relative paths: next to this file
      key_file: server.key
      client_ca_file: ca.crt         # optional: mutual TLS with client_auth_type
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    basic_auth_users:
      prometheus: $2y$10$...         # bcrypt hash: htpasswd -nBC 10 "" | tr -d ':\\n'

Unknown keys are refused (as the toolkit does) and every problem names its key.
Basic auth guards ``/metrics``; ``/healthz`` and ``/readyz`` stay open for the
supervisor's probes and say nothing but "ok" or the reason they fail.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from ..errors import ConfigError

_TLS_KEYS = {"cert_file", "key_file", "client_ca_file", "client_auth_type", "min_version", "max_version"}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1, "TLS12": ssl.TLSVersion.TLSv1_2,
             "TLS13": ssl.TLSVersion.TLSv1_3}  # fmt: skip
#: the toolkit's client_auth_type values Python's ssl can honour (it cannot ask for a certificate and not verify it)
_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_CACHE_SIZE = 64  # verified credentials kept, so a scrape every few seconds does not pay bcrypt each time


@dataclass
class WebConfig:
    """What the file asks for: a server TLS context and/or basic auth users (name -> bcrypt hash)."""

    path: str = ""
    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    _verified: dict[bytes, bool] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries a user's right password (True without users).

        bcrypt costs tens of milliseconds by design: call it off the event loop.
        """
        if not self.users:
            return True
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, sep, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        hashed = self.users.get(user)
        if not sep or hashed is None:
            bcrypt.checkpw(b"timing", _DUMMY)  # an unknown user costs as much as a wrong password
            return False
        key = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        with self._lock:
            known = self._verified.get(key)
        if known is not None:
            return known
        ok = bcrypt.checkpw(password.encode(), hashed)
        with self._lock:
            if len(self._verified) >= _CACHE_SIZE:
                self._verified.clear()
            self._verified[key] = ok
        return ok


_DUMMY = bcrypt.hashpw(b"plantwatch", bcrypt.gensalt(10))


def load(path: str | Path) -> WebConfig:
    """Read and check a web config file; ConfigError lists every problem, each naming its key."""
    p = Path(path)
    where = f"metrics.web_config_file {p}"
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read it: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not YAML: {str(exc).splitlines()[0]}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: must be a mapping with tls_server_config and/or basic_auth_users")
    problems = [f"{where}: {k}: unknown key (known: tls_server_config, basic_auth_users)" for k in doc
                if k not in ("tls_server_config", "basic_auth_users")]  # fmt: skip
    users = _users(doc.get("basic_auth_users"), where, problems)
    tls = _tls(doc.get("tls_server_config"), p.parent, where, problems)
    if problems:
        raise ConfigError(*problems)
    return WebConfig(str(p), tls, users)


def _users(raw: Any, where: str, problems: list[str]) -> dict[str, bytes]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(f"{where}: basic_auth_users: must map user names to bcrypt hashes")
        return {}
    users = {}
    for name, hashed in raw.items():
        key = f"{where}: basic_auth_users.{name}"
        if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
            problems.append(f"{key}: must be a bcrypt hash ($2y$..., e.g. from htpasswd -nBC 10), not a password")
            continue
        try:
            bcrypt.checkpw(b"", hashed.encode())
        except ValueError:
            problems.append(f"{key}: not a valid bcrypt hash")
            continue
        users[str(name)] = hashed.encode()
    return users


def _tls(raw: Any, base: Path, where: str, problems: list[str]) -> ssl.SSLContext | None:
    if raw is None:
        return None
    key = f"{where}: tls_server_config"
    if not isinstance(raw, dict):
        problems.append(f"{key}: must be a mapping (cert_file, key_file, ...)")
        return None
    before = len(problems)
    problems.extend(
        f"{key}.{k}: unknown key (known: {', '.join(sorted(_TLS_KEYS))})" for k in raw if k not in _TLS_KEYS
    )
    if not raw.get("cert_file") or not raw.get("key_file"):
        problems.append(f"{key}: needs both cert_file and key_file")
    auth = raw.get("client_auth_type", "NoClientCert")
    if auth not in _CLIENT_AUTH:
        problems.append(f"{key}.client_auth_type: must be one of {', '.join(_CLIENT_AUTH)}, got {auth!r}")
    if auth != "NoClientCert" and not raw.get("client_ca_file"):
        problems.append(f"{key}.client_auth_type {auth}: needs client_ca_file")
    versions = {}
    for k in ("min_version", "max_version"):
        if k in raw:
            if raw[k] not in _VERSIONS:
                problems.append(f"{key}.{k}: must be one of {', '.join(_VERSIONS)}, got {raw[k]!r}")
            else:
                versions[k] = _VERSIONS[raw[k]]
    if len(problems) > before:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = versions.get("min_version", ssl.TLSVersion.TLSv1_2)
    if "max_version" in versions:
        ctx.maximum_version = versions["max_version"]
    cert, private = base / str(raw["cert_file"]), base / str(raw["key_file"])
    try:
        ctx.load_cert_chain(cert, private)
    except (OSError, ssl.SSLError) as exc:
        problems.append(f"{key}: cannot load cert_file {cert} with key_file {private}: {_why(exc)}")
        return None
    if raw.get("client_ca_file"):
        ca = base / str(raw["client_ca_file"])
        try:
            ctx.load_verify_locations(ca)
        except (OSError, ssl.SSLError) as exc:
            problems.append(f"{key}.client_ca_file {ca}: {_why(exc)}")
            return None
    ctx.verify_mode = _CLIENT_AUTH[auth]
    return ctx


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc)
