"""The monitor-side commands: train, score, monitor, check-config, record (arguments only; handlers load on use)."""

from __future__ import annotations

import argparse

from .. import broker_login
from .registry import Command


def add_columns(p: argparse.ArgumentParser, what: str = "sensors") -> None:
    """``--sensors`` / ``--exclude``: glob patterns picking the sensor columns (train, score, replay, record)."""
    p.add_argument(
        "--sensors",
        action="append",
        default=None,
        metavar="PATTERNS",
        help=f"only these {what}: glob patterns, comma-separated or repeated, e.g. 'T*,P1' (default: all)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=None,
        metavar="PATTERNS",
        help=f"leave these {what} out (labels, ids, counters): glob patterns, e.g. 'anomaly,changepoint'",
    )


def add_missing(p: argparse.ArgumentParser) -> None:
    """``--missing fail|drop|hold[:N]`` for commands that read history."""
    p.add_argument(
        "--missing",
        default="fail",
        metavar="POLICY",
        help="a missing value (empty, NaN, n/a): 'fail' refuses the file naming the cell, 'drop' leaves the row "
        "out, 'hold:N' repeats the sensor's last value for at most N rows ('hold': no limit), then drops "
        "(default: fail)",
    )


def _train(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        required=True,
        metavar="CSV",
        help="normal operating history: header row, optional timestamp column, one numeric column per sensor",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", metavar="MODEL", help="model folder to create (safetensors weights + JSON manifest)")
    where.add_argument(
        "--store",
        metavar="STORE",
        help="model store (models/NAME) to add the model to as its next version vNNNN; the first version becomes "
        "current, later ones wait for 'plantwatch models promote' (or --challenger)",
    )
    p.add_argument(
        "--challenger",
        action="store_true",
        help="with --store: make the new version the store's challenger, scored in shadow by the running monitor",
    )
    add_columns(p)
    add_missing(p)
    p.add_argument(
        "--feedback",
        default=None,
        metavar="JSONL",
        help="operators' labels (the monitor's <state_dir>/feedback-<instance>.jsonl): confirmed-fault episodes "
        "of the asset are left out, false-alarm ones kept as normal operation (matched by the timestamp column)",
    )
    p.add_argument(
        "--feedback-asset",
        default=None,
        metavar="ASSET",
        help="the asset whose labels apply (default: the --data file's name, as plantwatch record writes it)",
    )
    p.add_argument(
        "--fault-library",
        default=None,
        metavar="CSV",
        help="with --feedback: also write the history with a 'fault' column (1 in confirmed episodes) to this "
        "file, which 'plantwatch gan train --data' reads",
    )
    _training_knobs(p)
    p.add_argument("--force", action="store_true", help="overwrite MODEL if it exists")


def _training_knobs(p: argparse.ArgumentParser) -> None:
    """How a model is trained and calibrated (train, and retrain for its challengers)."""
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="maximum training epochs (default: the model's default; early stopping usually ends sooner)",
    )
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        metavar="S",
        help="wall-clock budget for training and calibration: each model keeps its best weights so far when its "
        "share runs out, and train says so (default: no limit; --epochs limits each model too)",
    )
    p.add_argument(
        "--device",
        default=None,
        choices=["auto", "cpu", "cuda"],
        help="where to train: 'auto' takes a CUDA GPU when torch sees one, else the CPU; 'cuda' insists on one "
        "(default: auto; scoring runs on the CPU)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="N",
        help="random seed; the same seed and data give the same model (default: 0)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="W",
        help="samples per causal window fed to the model (default: 10; 1 scores each row alone)",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=None,
        metavar="SIGMA",
        help="Gaussian corruption, in standard deviations (default: 0.2)",
    )
    p.add_argument(
        "--mask", type=float, default=None, metavar="P", help="fraction of inputs masked during training (default: 0.1)"
    )
    p.add_argument(
        "--false-alarm-rate",
        type=float,
        default=None,
        metavar="R",
        help="target share of normal samples in alarm (default: 0.005); train prints what it promises",
    )
    p.add_argument(
        "--false-alarms-per-day",
        type=float,
        default=None,
        metavar="N",
        help="target false alarm episodes per day on normal operation, counted after the on/off delays, "
        "instead of a share of samples (at the history's sample period, or --sample-period)",
    )
    p.add_argument(
        "--sample-period",
        type=float,
        default=None,
        metavar="S",
        help="seconds between samples (default: from the timestamp column, else 1)",
    )
    p.add_argument(
        "--folds",
        type=int,
        default=None,
        metavar="K",
        help="contiguous out-of-fold blocks for calibration (default: 5)",
    )
    p.add_argument(
        "--threshold",
        default=None,
        choices=["quantile", "spot", "static"],
        help="rolling threshold: 'quantile' scales with a tracked quantile of normal scores, 'spot' fits an "
        "extreme-value tail, 'static' keeps the calibrated value (default: spot)",
    )
    p.add_argument(
        "--on-delay",
        type=int,
        default=None,
        metavar="N",
        help="samples above threshold before an alarm is raised (default: 5)",
    )
    p.add_argument(
        "--off-delay",
        type=int,
        default=None,
        metavar="N",
        help="samples below the clear level before it clears (default: 3)",
    )


def _score(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="MODEL", help="model folder made by 'plantwatch train'")
    p.add_argument(
        "--data", required=True, metavar="CSV", help="data with the same sensor columns as the training data"
    )
    p.add_argument("--out", required=True, metavar="SCORES", help="scores CSV to write (one row per input row)")
    add_columns(p)
    add_missing(p)
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="also draw score, threshold and alarm episodes over time (needs matplotlib: "
        "pip install 'plantwatch[plots]')",
    )
    p.add_argument(
        "--top", type=int, default=3, metavar="K", help="top contributing sensors to name per row (default: 3)"
    )
    p.add_argument(
        "--bounds",
        default=None,
        metavar="TOML",
        help="plausible bounds per sensor from the [sensors] table of this file (e.g. the monitor's config), "
        "instead of the model's defaults; rows with a value outside them are not scored (empty score)",
    )


def _monitor(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", metavar="URL", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--model", metavar="MODEL", help="default model folder for every asset")
    p.add_argument(
        "--metrics-port", type=int, metavar="N", help="HTTP port for /metrics, /healthz, /readyz (default: 9108)"
    )
    p.add_argument("--prefix", metavar="P", help="topic prefix (default: plant)")
    p.add_argument(
        "--config", metavar="FILE", help="TOML config file (flags override it, environment PLANTWATCH_* sits between)"
    )


def _check_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", metavar="FILE", help="TOML config file")


def _record(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", required=True, metavar="URL", help="mqtt://HOST:PORT")
    p.add_argument("--prefix", default="plant", metavar="P", help="topic prefix (default: plant)")
    p.add_argument("--assets", default=None, metavar="A,B", help="comma-separated assets to record (default: all)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for <asset>.csv files (appended to)")
    p.add_argument(
        "--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)"
    )
    p.add_argument(
        "--client-id", default=None, help="fixed client id for a persistent session (default: plantwatch-record-<host>)"
    )
    add_columns(p, "sensors of each message")
    p.add_argument(
        "--format",
        default="json",
        choices=["json", "sparkplug"],
        help="json: <prefix>/<asset>/telemetry; sparkplug: Sparkplug B births and data of --group-ids, each "
        "device into <edge_node_id>/<device_id>.csv with the numeric metrics of its BIRTH (default: json)",
    )
    p.add_argument(
        "--group-ids", default=None, metavar="G,H", help="Sparkplug group ids to record (--format sparkplug)"
    )
    p.add_argument(
        "--sample-period",
        type=float,
        default=0.0,
        metavar="S",
        help="Sparkplug: a row every S seconds of the values held then, as the monitor's [source] sample_period "
        "(default: 0, a row per BIRTH and DATA message)",
    )
    broker_login.add_arguments(p)


def _control(
    p: argparse.ArgumentParser, suppress: bool, feedback: bool = False, listing: bool = False, accept: bool = False
) -> None:
    if listing:
        pass
    elif feedback:
        p.add_argument("--asset", required=True, metavar="ASSET", help="the asset the alarm was on")
        p.add_argument("--episode", required=True, metavar="ID", help="the episode id (alarm topic, alarm_raised log)")
        p.add_argument("--label", required=True, choices=["false_alarm", "confirmed"], help="what the alarm was")
        p.add_argument("--note", default="", metavar="TEXT", help="what was found (stored with the label)")
    else:
        p.add_argument(
            "--asset", required=True, metavar="PATTERN", help="asset name or fnmatch pattern, e.g. 'boiler*'"
        )
    if suppress:
        when = p.add_mutually_exclusive_group(required=True)
        when.add_argument("--for", dest="for_", metavar="DURATION", help="how long: 90m, 2h, 1h30m, 1d")
        when.add_argument("--until", metavar="TIME", help="until an ISO 8601 time, e.g. 2026-12-05T14:00+01:00")
    if not feedback and not listing:
        p.add_argument(
            "--reason",
            required=suppress or accept,
            default="",
            metavar="TEXT",
            help="why (logged, shown on the alarm topic)",
        )
    p.add_argument("--by", metavar="NAME", help="who, when several people share the broker login (default: $USER)")
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", metavar="URL", help="mqtt://HOST:PORT")
    p.add_argument("--prefix", default="plant", metavar="P", help="the monitors' topic prefix (default: plant)")
    p.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="seconds to wait for a monitor's answer (default: 10)"
    )
    broker_login.add_arguments(p)


def _suppress(p: argparse.ArgumentParser) -> None:
    _control(p, suppress=True)


def _unsuppress(p: argparse.ArgumentParser) -> None:
    _control(p, suppress=False)


def _suppressions(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--asset", default="*", metavar="PATTERN", help="only windows that may name these assets (default: all)"
    )
    _control(p, suppress=False, listing=True)


def _accept(p: argparse.ArgumentParser) -> None:
    _control(p, suppress=False, accept=True)


def _feedback(p: argparse.ArgumentParser) -> None:
    _control(p, suppress=False, feedback=True)


def _models_list(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "root", nargs="?", default="models", metavar="DIR", help="a store, or the folder of stores (default: models)"
    )


def _models_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="the model store, e.g. models/boiler")
    p.add_argument("version", nargs="?", default=None, metavar="VERSION", help="default: the current one")


def _who(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--reason", required=required, default="", metavar="TEXT", help="why (kept in history.jsonl)")
    p.add_argument("--by", metavar="NAME", help="who (default: $USER)")


def _models_promote(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="the model store, e.g. models/boiler")
    p.add_argument("version", metavar="VERSION", help="the version to make current, e.g. v0003")
    _who(p, required=False)


def _models_rollback(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="the model store, e.g. models/boiler")
    _who(p, required=False)


def _models_shadow(p: argparse.ArgumentParser) -> None:
    p.add_argument("store", metavar="STORE", help="the model store, e.g. models/boiler")
    p.add_argument("version", nargs="?", default=None, metavar="VERSION", help="the version to score in shadow")
    p.add_argument("--stop", action="store_true", help="score no challenger any more")


def _models_compare(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "store", metavar="STORE", help="the model store (models/boiler) or just its name (boiler): picks the records"
    )
    p.add_argument(
        "--state-dir",
        required=True,
        metavar="DIR",
        help="the monitor's state_dir, where it writes shadow-<instance>.jsonl while a challenger runs",
    )
    p.add_argument("--since", default="24h", metavar="DURATION", help="how far back from the newest row (default: 24h)")
    p.add_argument("--challenger", metavar="VERSION", help="default: the store's challenger, else the newest recorded")
    p.add_argument(
        "--drill-report",
        action="append",
        metavar="REPORT",
        help="a 'plantwatch drill --report' folder or report.json: its injections in the window count as detected "
        "by a model that was in alarm on the drill copy during one (repeatable)",
    )
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def _retrain(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, metavar="STORE", help="the model store whose challenger this runs")
    p.add_argument(
        "--data",
        required=True,
        metavar="CSV",
        help="recorded history of the asset (plantwatch record), with timestamps",
    )
    p.add_argument(
        "--state-dir",
        required=True,
        metavar="DIR",
        help="the monitor's state_dir: feedback labels, operators' maintenance windows, shadow results",
    )
    p.add_argument("--asset", metavar="ASSET", help="whose labels and windows apply (default: the --data file's name)")
    p.add_argument(
        "--config", metavar="TOML", help="the monitor's config: its [[maintenance]] windows are left out of training"
    )
    p.add_argument(
        "--shadow", default="24h", metavar="DURATION", help="how long the challenger runs in shadow (default: 24h)"
    )
    p.add_argument("--report", metavar="DIR", help="where the decision reports go (default: STORE/reports)")
    p.add_argument(
        "--drill-report",
        action="append",
        metavar="REPORT",
        help="'plantwatch drill --report' folders or report.json of drills run during the shadow (repeatable)",
    )
    rule = p.add_argument_group("the promotion rule (written into every report)")
    rule.add_argument(
        "--max-false-alarm-ratio",
        type=float,
        default=1.0,
        metavar="R",
        help="challenger alarm episodes/day on real assets <= R x the champion's + slack (default: 1)",
    )
    rule.add_argument(
        "--false-alarm-slack",
        type=float,
        default=0.0,
        metavar="N",
        help="episodes/day added to that bound (default: 0)",
    )
    rule.add_argument(
        "--drill-slack",
        type=int,
        default=0,
        metavar="N",
        help="drill injections the challenger may miss that the champion detected (default: 0)",
    )
    rule.add_argument(
        "--min-drills", type=int, default=0, metavar="N", help="drill injections the window must hold (default: 0)"
    )
    rule.add_argument(
        "--min-shadow-rows", type=int, default=1000, metavar="N", help="shadow rows needed to judge (default: 1000)"
    )
    add_columns(p)
    add_missing(p)
    _training_knobs(p)


COMMANDS = (
    Command(
        "train",
        "monitor.commands.train:train_command",
        "Train a denoising-autoencoder detector on normal history and calibrate its threshold.",
        "  plantwatch train --data history.csv --out models/boiler\n"
        "  plantwatch train --data history.csv --out m/ --window 10 --false-alarms-per-day 2 --sample-period 60\n"
        "  plantwatch train --data export.csv --out m/ --exclude 'anomaly,changepoint' --missing hold:5\n"
        "\ntrain prints the sensors it takes and warns about columns that look like labels, ids or counters\n"
        "(only 0/1, increasing whole numbers) or are constant: leave them out with --exclude.\n",
        arguments=_train,
    ),
    Command(
        "score",
        "monitor.commands.score:score_command",
        "Score a CSV file causally, row by row, exactly as the monitor would score the stream.",
        "  plantwatch score --model models/boiler --data today.csv --out scores.csv\n"
        "  plantwatch score --model models/boiler --data today.csv --out scores.csv --plot scores.png\n"
        "  plantwatch score --model models/boiler --data today.csv --out scores.csv --bounds plantwatch.toml\n"
        "\na row holding a value outside a sensor's plausible bounds (default: 100 training spans past the\n"
        "training range; [sensors.NAME] min/max in the --bounds file) is not scored: its score, threshold,\n"
        "anomaly and top sensors are left empty and the stream goes on as if it were absent, as in the monitor;\n"
        "so is a row --missing drops. score lists the alarm episodes (start, end, duration, peak, top sensors)\n"
        "and says when rows lie far outside the model's training range.\n",
        arguments=_score,
    ),
    Command(
        "monitor",
        "monitor.commands.monitor:monitor_command",
        "Run the monitoring daemon: subscribe to telemetry, score it, raise alarms, serve /metrics.",
        "  plantwatch monitor --broker mqtt://127.0.0.1:1883 --model models/boiler --metrics-port 9108\n"
        "  plantwatch monitor --config /etc/plantwatch/plantwatch.toml\n",
        arguments=_monitor,
    ),
    Command(
        "check-config",
        "monitor.commands.check_config:check_config_command",
        "Validate a monitor config file (and the models it names) without starting; exit 0 or 2.",
        "  plantwatch check-config /etc/plantwatch/plantwatch.toml\n",
        arguments=_check_config,
    ),
    Command(
        "record",
        "monitor.commands.record:record_command",
        "Record live telemetry into per-asset CSV files that 'plantwatch train' reads.",
        "  plantwatch record --broker mqtt://127.0.0.1:1883 --out history/ --duration 3600\n"
        "  plantwatch record --broker mqtt://127.0.0.1:1883 --assets boiler,pump --out history/\n"
        '\nthe retraining loop (a model store the monitor\'s config names: models.default = "models/boiler"):\n'
        "  1. plantwatch record --broker URL --assets boiler --out history/ --duration 86400\n"
        "  2. plantwatch train --data history/boiler.csv --store models/boiler --challenger\n"
        "  3. the monitor scores it in shadow; plantwatch models compare models/boiler --state-dir DIR\n"
        "  4. plantwatch models promote models/boiler v0002: checked, then swapped in between two batches\n"
        "     (plantwatch retrain and deploy/systemd/plantwatch-retrain.timer run 2-4 on a schedule)\n"
        "\nrows are acknowledged to the broker only once written and flushed; stopping (Ctrl-C, SIGTERM)\n"
        "writes what was received and leaves the rest queued at the broker for the next run.\n",
        arguments=_record,
    ),
    Command(
        "suppress",
        "monitor.commands.suppress:suppress_command",
        "Suppress alarms of assets for a maintenance window (scored, no alarms); the monitors confirm.",
        "  plantwatch suppress --asset 'boiler*' --for 2h --reason 'valve swap'\n"
        "  plantwatch suppress --asset pump-3 --until 2026-12-05T18:00+01:00 --reason 'seal change' \\\n"
        "      --broker mqtts://broker:8883 --username plantwatch-operator --password-file ~/.pw-operator\n"
        "\nevery monitor answers (exit 0 applied, 2 refused: unknown pattern, time passed, an asset already\n"
        "suppressed; 3 no answer). The window survives monitor restarts and ends by itself; the asset then\n"
        "re-arms after [suppression] warmup_rows messages. Scheduled windows: [[maintenance]] in the config.\n",
        arguments=_suppress,
    ),
    Command(
        "unsuppress",
        "monitor.commands.suppress:unsuppress_command",
        "End an operator's suppression early (the asset re-arms after its warm-up).",
        "  plantwatch unsuppress --asset 'boiler*'\n",
        arguments=_unsuppress,
    ),
    Command(
        "suppressions",
        "monitor.commands.suppress:list_command",
        "List the maintenance windows in force and those scheduled for the next week, as each monitor has them.",
        "  plantwatch suppressions\n  plantwatch suppressions --asset 'boiler*'\n",
        arguments=_suppressions,
    ),
    Command(
        "accept",
        "monitor.commands.suppress:accept_command",
        "Accept where assets run now as their new normal: running alarms clear, a new baseline is learned.",
        "  plantwatch accept --asset boiler --reason 'new burner, runs 5 K hotter by design'\n"
        "\nfor an operating point that is normal but unlike the training history (a setpoint change, new\n"
        "equipment): the alarm clears at once, the next 200 samples are learned without alarms, then the score\n"
        "measures departures from them. Retrain on history of the new point when there is enough of it.\n"
        "Exit 0 applied, 2 refused (unknown pattern), 3 no monitor answered.\n",
        arguments=_accept,
    ),
    Command(
        "feedback",
        "monitor.commands.suppress:feedback_command",
        "Tell the monitor what an alarm episode was: a false alarm or a confirmed fault (stored with its time range).",
        "  plantwatch feedback --asset boiler --episode e-3c1ba2f8d91a --label false_alarm --note 'sensor recalibrated'\n"
        "  plantwatch feedback --asset pump-3 --episode e-9f0c11aa2b4e --label confirmed --note 'bearing wear'\n"
        '\nthe episode id is on the alarm topic ("episode") and in the alarm_raised log line. The label is kept in\n'
        "<state_dir>/feedback-<instance>.jsonl; 'plantwatch train --feedback FILE' keeps false-alarm ranges as normal\n"
        "data and leaves confirmed faults out. Exit 0 stored, 2 refused (unknown episode), 3 no monitor answered.\n",
        arguments=_feedback,
    ),
    Command(
        "models",
        "monitor.commands.models:usage_command",
        "Model versions: list them, show one, promote, roll back, score a challenger in shadow, compare.",
        "  plantwatch train --data history/boiler.csv --store models/boiler --challenger\n"
        "  plantwatch models list models/\n"
        "  plantwatch models compare models/boiler --state-dir /var/lib/plantwatch\n"
        "  plantwatch models promote models/boiler v0002 --reason 'fewer false alarms in shadow'\n"
        "  plantwatch models rollback models/boiler\n",
        subcommands=(
            Command(
                "list",
                "monitor.commands.models:list_command",
                "List model stores (current and challenger versions) or one store's versions.",
                "  plantwatch models list\n  plantwatch models list models/boiler\n",
                arguments=_models_list,
            ),
            Command(
                "show",
                "monitor.commands.models:show_command",
                "Show a version: sensors, training data, threshold, weights hash and its promotions.",
                "  plantwatch models show models/boiler\n  plantwatch models show models/boiler v0002\n",
                arguments=_models_show,
            ),
            Command(
                "promote",
                "monitor.commands.models:promote_command",
                "Make a version current (checked to load first; the previous one stays for rollback).",
                "  plantwatch models promote models/boiler v0003 --reason 'retrained after the revamp'\n"
                "\na version that does not load is refused (exit 2) and nothing changes. A monitor whose config\n"
                'names the store (models.default = "models/boiler") swaps between two batches within a second.\n',
                arguments=_models_promote,
            ),
            Command(
                "rollback",
                "monitor.commands.models:rollback_command",
                "Return to the version that was current before the last promotion.",
                "  plantwatch models rollback models/boiler --reason 'alarms on the night shift'\n",
                arguments=_models_rollback,
            ),
            Command(
                "shadow",
                "monitor.commands.models:shadow_command",
                "Score a version as the challenger beside the current one (exported model=challenger, no alarms).",
                "  plantwatch models shadow models/boiler v0003\n  plantwatch models shadow models/boiler --stop\n",
                arguments=_models_shadow,
            ),
            Command(
                "compare",
                "monitor.commands.model_compare:compare_command",
                "Compare champion and challenger on the live rows the monitor scored with both (shadow).",
                "  plantwatch models compare models/boiler --state-dir /var/lib/plantwatch\n"
                "  plantwatch models compare models/boiler --state-dir /var/lib/plantwatch --since 7d \\\n"
                "      --drill-report drill-report/ --json\n"
                "\nper model: alarm episodes per day and alarm time on the real assets (drill copies left out),\n"
                "rows only it flagged, and drill injections detected. Exit 2 when nothing was recorded.\n",
                arguments=_models_compare,
            ),
        ),
    ),
    Command(
        "retrain",
        "monitor.commands.retrain:retrain_command",
        "One step of the retraining loop: train a challenger, let it shadow, then promote it or drop it by a rule.",
        "  plantwatch retrain --store /var/lib/plantwatch/models/boiler --data /var/lib/plantwatch/history/boiler.csv \\\n"
        "      --state-dir /var/lib/plantwatch --config /etc/plantwatch/plantwatch.toml --shadow 24h\n"
        "\nrun it on a schedule (deploy/systemd/plantwatch-retrain.timer). With no challenger it trains one on the\n"
        "history minus maintenance windows and confirmed faults (false alarms kept as normal) and makes it the\n"
        "store's challenger; while it shadows it says how long is left; after --shadow it compares both on the\n"
        "rows the monitor scored (plantwatch models compare) and promotes it only if the rule holds. Every\n"
        "decision writes STORE/reports/retrain-*.json and .md with the data, the figures and the rule.\n",
        arguments=_retrain,
    ),
)
