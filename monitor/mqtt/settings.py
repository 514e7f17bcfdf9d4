"""Where and how to connect to a broker: the URL rules and the login, without paho."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigError


@dataclass(frozen=True)
class BrokerSettings:
    """Where and how to connect; the password never comes from the command line."""

    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    username: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    client_id: str | None = None
    protocol: int = 4  # 4 = MQTT 3.1.1, 5 = MQTT 5
    keepalive: int = 30
    session_expiry: int = 3600  # MQTT 5 Session Expiry Interval, seconds

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    def password(self) -> str | None:
        if self.password_file:
            try:
                return Path(self.password_file).read_text().strip()
            except OSError as exc:
                raise ConfigError(f"broker.password_file: cannot read {self.password_file}: {exc.strerror}") from None
        if self.password_env:
            value = os.environ.get(self.password_env)
            if value is None:
                raise ConfigError(f"broker.password_env: environment variable {self.password_env} is not set")
            return value
        return None


def parse_url(url: str) -> tuple[str, int, bool]:
    """``mqtt://host:port`` or ``mqtts://host:port`` -> (host, port, tls)."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ConfigError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    tls = parts.scheme in ("mqtts", "ssl")
    if not parts.hostname:
        raise ConfigError(f"broker URL {url!r}: no host")
    if parts.username or parts.password:
        raise ConfigError(
            f"broker URL {url!r}: put the username in the config and the password in a file or environment variable, not in the URL"
        )
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise ConfigError(f"broker URL {url!r}: port must be 1-65535") from None
    return parts.hostname, port, tls


def settings_from_url(url: str, **kw: Any) -> BrokerSettings:
    """Settings for ``url``; ``kw`` are the other :class:`BrokerSettings` fields."""
    host, port, tls = parse_url(url)
    return BrokerSettings(host=host, port=port, tls=tls, **kw)
