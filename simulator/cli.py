"""Arguments of the simulator-side commands: simulate, demo, gan (train, sample, evaluate), drill."""

from __future__ import annotations

import argparse

from monitor import broker_login
from monitor.commands import Command

from .drill.cli import COMMANDS as DRILL_COMMANDS
from .gan.cli import COMMANDS as GAN_COMMANDS


def _simulate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT to publish to")
    broker_login.add_arguments(p)
    p.add_argument(
        "--assets", type=int, default=3, metavar="N", help="number of simulated assets asset01..assetNN (default: 3)"
    )
    p.add_argument(
        "--sensors",
        action="append",
        default=None,
        metavar="K|PATTERNS",
        help="sensors per asset, 8-60 (default: 12-40, drawn per asset from the seed); with --replay, glob "
        "patterns of the columns to publish, comma-separated or repeated (default: all)",
    )
    p.add_argument("--rate", type=float, default=1.0, metavar="HZ", help="samples per second per asset (default: 1)")
    p.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="process seed; same seed, same data (default: 0)")
    p.add_argument("--prefix", default="plant", metavar="P", help="topic prefix (default: plant)")
    p.add_argument("--qos", type=int, default=1, choices=[0, 1, 2], help="MQTT QoS of JSON telemetry (default: 1)")
    _sparkplug_arguments(p)
    p.add_argument(
        "--to-csv", metavar="FILE", help="write history to FILE instead of publishing (one asset: --asset-index)"
    )
    p.add_argument("--samples", type=int, default=None, metavar="N", help="rows to write with --to-csv")
    p.add_argument(
        "--asset-index", type=int, default=1, metavar="I", help="which asset --to-csv writes (default: 1 = asset01)"
    )
    p.add_argument("--replay", metavar="CSV", help="publish the rows of a recorded CSV instead of simulating")
    p.add_argument("--asset", default=None, metavar="NAME", help="asset name for --replay (default: the file's stem)")
    p.add_argument("--loop", action="store_true", help="with --replay, start again at the end of the file")
    p.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="PATTERNS",
        help="with --replay, columns not to publish (labels, ids): glob patterns, e.g. 'anomaly,changepoint'",
    )
    p.add_argument(
        "--missing",
        default="fail",
        metavar="POLICY",
        help="with --replay, a missing value: fail, drop (the row) or hold[:N] (the last value, at most N rows; "
        "default: fail)",
    )
    p.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="a fault (repeatable): see the fault spec below",
    )
    p.add_argument(
        "--start-time",
        type=float,
        default=None,
        metavar="TS",
        help="unix time of sample 0 for --to-csv (default: 2026-01-01)",
    )
    p.add_argument(
        "--gan", default=None, metavar="GAN", help="GAN folder ('plantwatch gan train') for gan:<class> faults"
    )


def _sparkplug_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        default="json",
        choices=["json", "sparkplug"],
        help="json: plantwatch's telemetry contract; sparkplug: Sparkplug B, one edge node with a device per "
        "asset (births, report-by-exception data at QoS 0, seq, NDEATH will) (default: json)",
    )
    p.add_argument("--group-id", default="plantwatch", metavar="G", help="Sparkplug group id (default: plantwatch)")
    p.add_argument(
        "--edge-node", default="plantwatch-sim", metavar="N", help="Sparkplug edge node id (default: plantwatch-sim)"
    )
    p.add_argument(
        "--deadband",
        type=float,
        default=0.0,
        metavar="SD",
        help="Sparkplug report-by-exception: send a metric when it moved more than SD standard deviations "
        "since it was last sent (default: 0, every change; a real gateway's deadband makes the monitor see "
        "held values, which the model was not trained on)",
    )


def _demo(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--duration", type=float, default=None, metavar="S", help="exit 0 after S seconds (default: until Ctrl-C)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=9108,
        metavar="N",
        help="port of /metrics, /healthz, /readyz (default: 9108)",
    )
    p.add_argument(
        "--broker-port", type=int, default=None, metavar="N", help="port of the embedded broker (default: a free port)"
    )
    p.add_argument(
        "--broker-kind",
        default="auto",
        choices=["auto", "mosquitto", "amqtt"],
        help="auto: mosquitto when installed, else the embedded amqtt (default: auto)",
    )
    p.add_argument("--assets", type=int, default=3, metavar="N", help="simulated assets (default: 3)")
    p.add_argument("--rate", type=float, default=2.0, metavar="HZ", help="samples per second per asset (default: 2)")
    p.add_argument(
        "--cache",
        default=None,
        metavar="DIR",
        help="where the demo model is cached (default: ~/.cache/plantwatch/demo)",
    )
    p.add_argument("--no-view", action="store_true", help="no live terminal view, log lines only")
    p.add_argument(
        "--format",
        default="json",
        choices=["json", "sparkplug"],
        help="telemetry between simulator and monitor: plantwatch's JSON, or Sparkplug B (an edge node "
        "'plantwatch-sim' with a device per asset, group 'plantwatch') (default: json)",
    )


_OWN = (
    Command(
        "simulate",
        "simulator.commands:simulate_command",
        "Publish a realistic multi-asset process over MQTT, write it as CSV history, or replay a CSV.",
        "  plantwatch simulate --broker mqtt://127.0.0.1:1883 --assets 5 --rate 10 --duration 60\n"
        "  plantwatch simulate --to-csv history.csv --samples 20000 --seed 3\n"
        "  plantwatch simulate --broker mqtt://127.0.0.1:1883 --replay d00.csv --rate 50\n"
        "  plantwatch simulate --broker mqtt://127.0.0.1:1883 --replay export.csv --exclude 'anomaly,changepoint'\n"
        "  plantwatch simulate --broker mqtt://127.0.0.1:1883 --assets 2 --rate 5 \\\n"
        "      --fault 'bias@30+60:asset=asset01,sensors=FI103,magnitude=4'\n"
        "  plantwatch simulate --broker mqtt://127.0.0.1:1883 --replay d00_te.csv --gan gans/tep \\\n"
        "      --fault 'gan:4@100+200'\n"
        "  plantwatch simulate --broker mqtts://broker:8883 --ca-file ca.crt --username plantwatch-simulator \\\n"
        "      --password-file /etc/plantwatch/simulator-password --assets 2\n"
        "  plantwatch simulate --broker mqtt://127.0.0.1:1883 --format sparkplug --group-id plant1 --edge-node gw1\n"
        "\nfault kinds: bias drift stuck noise spikes intermittent coefficient decorrelate, and gan:<class>\n"
        "fault spec:  KIND@START+DURATION[:asset=A,sensors=S1;S2,magnitude=M]  (START and DURATION in samples)\n"
        "             defaults: the first asset, 1-3 sensors picked from --seed, a magnitude per kind;\n"
        "             magnitudes are in standard deviations of the sensor's normal data\n"
        "gan:<class>: a pattern of that fault class drawn from the GAN given with --gan, added to the sensors\n"
        "             of the same names (the asset needs every sensor of the GAN); magnitude scales it (default 1)\n"
        "ground truth: published on <prefix>/<asset>/drill when a fault starts and ends;\n"
        "             with --to-csv it is written to FILE.truth.jsonl (one JSON object per line)\n",
        arguments=_simulate,
    ),
    Command(
        "demo",
        "simulator.demo:demo_command",
        "Run the whole chain on this machine: broker, simulator with injected faults, monitor, /metrics.",
        "  plantwatch demo\n  plantwatch demo --duration 60 --metrics-port 9108 --broker-port 1883\n"
        "  plantwatch demo --format sparkplug      # the plant speaks Sparkplug B\n",
        arguments=_demo,
    ),
)
COMMANDS: tuple[Command, ...] = _OWN + GAN_COMMANDS + DRILL_COMMANDS
