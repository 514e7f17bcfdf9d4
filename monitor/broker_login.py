"""How the commands that connect as clients of the broker, besides the monitor, log in (simulate, drill).

A production broker (deploy/mosquitto) refuses anonymous clients, so these
commands take the monitor's own [broker] login keys, with the same meaning and
the same checks (:mod:`monitor.config`, which does the work): a ``username``;
its password only from a file (``password_file``, e.g. a systemd credential)
or from a named environment variable (``password_env``), never from the
command line, where every user of the host can read it in the process list;
CA, certificate and key files for ``mqtts://``. As for the monitor, a file's
[broker] table (a drill scenario) is overridden by the ``PLANTWATCH_BROKER_*``
environment variables of these keys, and those by flags; errors name the key
and where it was set.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

from . import config
from .errors import ConfigError
from .mqtt import BrokerSettings

#: The [broker] keys of a client that is not the monitor: no fixed client id or persistent session.
KEYS = ("url", "ca_file", "cert_file", "key_file", "username", "password_env", "password_file")
#: argparse destination -> [broker] key (``--broker`` is each command's own, for the URL).
FLAGS = {
    "broker": "url",
    "username": "username",
    "password_file": "password_file",
    "password_env": "password_env",
    "ca_file": "ca_file",
    "cert_file": "cert_file",
    "key_file": "key_file",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """``--username``, ``--password-file``, ``--password-env`` and the TLS files; there is no password flag."""
    g = p.add_argument_group("broker login (as the monitor's [broker] keys; PLANTWATCH_BROKER_* variables too)")
    g.add_argument("--username", metavar="NAME", help="MQTT username (the password comes from a file or a variable)")
    g.add_argument("--password-file", metavar="FILE", help="file holding the password, e.g. a systemd credential")
    g.add_argument("--password-env", metavar="VAR", help="name of the environment variable holding the password")
    g.add_argument("--ca-file", metavar="FILE", help="CA certificate for an mqtts:// broker (default: the system CAs)")
    g.add_argument("--cert-file", metavar="FILE", help="client certificate for mqtts:// (mutual TLS)")
    g.add_argument("--key-file", metavar="FILE", help="client private key for mqtts://")


def given(args: argparse.Namespace) -> list[str]:
    """The login flags given on the command line (for commands to refuse them where they do not apply)."""
    return [
        "--" + dest.replace("_", "-") for dest in FLAGS if dest != "broker" and getattr(args, dest, None) is not None
    ]


def check_table(table: Mapping[str, Any]) -> None:
    """Types and names of a [broker] table's keys, before the environment and flags are known."""
    unknown = set(table) - set(KEYS)
    if unknown:
        raise ConfigError(f"broker.{sorted(unknown)[0]}: unknown key (known: {', '.join(KEYS)})")
    config.build_broker(table)


def settings(
    table: Mapping[str, Any], args: argparse.Namespace, environ: Mapping[str, str] | None = None, where: str = ""
) -> BrokerSettings:
    """The broker settings from a [broker] table (paths already relative to its file), the environment and
    the flags of ``args``, checked as the monitor checks its own; ``where`` names the table's file in
    errors. The password is read once here, so a missing file or variable fails now."""
    check_table(table)
    data: dict[str, Any] = {"broker": dict(table)}
    env = {
        name: (key, tp)
        for name, (key, tp) in config.env_keys().items()
        if key.startswith("broker.") and key.removeprefix("broker.") in KEYS
    }
    flags = {
        f"broker.{key}": ("--" + dest.replace("_", "-"), getattr(args, dest))
        for dest, key in FLAGS.items()
        if getattr(args, dest, None) is not None
    }
    origin = config.overlay(data, os.environ if environ is None else environ, env, flags)
    try:
        if "url" not in data["broker"]:
            raise ConfigError("broker.url: no broker; give --broker mqtt://HOST:PORT")
        return config.broker_settings(config.parse_broker(data["broker"]))
    except ConfigError as exc:
        raise config.blame(exc, origin, where or None) from None
