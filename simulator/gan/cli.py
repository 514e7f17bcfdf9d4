"""Arguments of ``plantwatch gan train | sample | evaluate``; handlers are imported only when they run."""

from __future__ import annotations

import argparse

from monitor.commands import Command

DATA_HELP = (
    "a TEP folder (d00.dat normal, dNN.dat fault runs, dNN_te.dat test runs), a CSV with a 'fault' column "
    "(class per row, 0 = normal; optional 'run' column), a CSV with FILE.truth.jsonl beside it, "
    "or a folder of such CSVs"
)


def _train(p: argparse.ArgumentParser) -> None:

    p.add_argument("--data", required=True, metavar="DIR_OR_CSV", help=DATA_HELP)
    p.add_argument("--out", required=True, metavar="GAN", help="GAN folder to create")
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        metavar="N",
        help="training epochs at most (default: 600, the first 40%% moment matching alone; TEP: about 9 minutes on "
        "2 idle cores, so --max-minutes shortens them unless it is 0)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=None,
        metavar="W",
        help="training window in samples, a multiple of 8 (default: 64); episodes shorter are skipped",
    )
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        metavar="M",
        help="time budget for the whole command (default: 3): when the epochs would take longer, the schedule "
        "is shortened to end in time (warm-up, adversarial phase and learning-rate decay alike), the run says so "
        "and the manifest records it; 0 = no budget (every epoch, reproducible for a seed)",
    )
    p.add_argument("--classes", default=None, metavar="A,B", help="train on these fault classes only (default: all)")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="N",
        help="epochs between checkpoints (default: 50; 0 = none)",
    )
    p.add_argument("--keep-checkpoints", action="store_true", help="keep OUT.checkpoints/ after a successful run")
    p.add_argument("--force", action="store_true", help="overwrite GAN if it exists")


def _sample(p: argparse.ArgumentParser) -> None:

    p.add_argument("--gan", required=True, metavar="GAN", help="folder made by 'plantwatch gan train'")
    p.add_argument(
        "--class", dest="cls", required=True, metavar="C", help="fault class (as listed in the GAN's manifest)"
    )
    p.add_argument("--n", type=int, default=1, metavar="N", help="number of patterns (default: 1)")
    p.add_argument(
        "--length", type=int, default=None, metavar="L", help="samples per pattern (default: the GAN's window)"
    )
    p.add_argument(
        "--offset", type=int, default=0, metavar="T", help="samples since onset of the first sample (default: 0)"
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")
    p.add_argument(
        "--denoise", action="store_true", help="remove the normal noise: what an injection adds to a live stream"
    )
    p.add_argument(
        "--units",
        default="std",
        choices=["std", "sensor"],
        help="std: standard deviations of normal data (default); sensor: times each sensor's normal std",
    )
    p.add_argument("--out", required=True, metavar="FILE", help="FILE.csv or FILE.npy")


def _evaluate(p: argparse.ArgumentParser) -> None:

    p.add_argument("--gan", required=True, metavar="GAN", help="folder made by 'plantwatch gan train'")
    p.add_argument("--data", required=True, metavar="DIR_OR_CSV", help="held-out episodes: " + DATA_HELP)
    p.add_argument(
        "--train-data", default=None, metavar="DIR_OR_CSV", help="the training episodes, for the TRTR reference"
    )
    p.add_argument("--out", required=True, metavar="REPORT.json", help="report to write")
    p.add_argument(
        "--exclude",
        default=None,
        metavar="A,B",
        help="classes left out of the macro recalls (default: 3,9,15 for TEP, none otherwise)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="N", help="random seed (default: 0)")


COMMANDS = (
    Command(
        "gan",
        "simulator.gan.commands:usage_command",
        "Learn fault patterns from recorded fault episodes (a conditional GAN), draw them, evaluate them.",
        "  plantwatch gan train --data ../shared/data/tep --out gans/tep\n"
        "  plantwatch gan evaluate --gan gans/tep --data ../shared/data/tep --out gan-report/REPORT.json\n"
        "  plantwatch gan sample --gan gans/tep --class 4 --n 5 --length 300 --out fault4.csv\n"
        "  plantwatch simulate --broker URL --replay d00_te.csv --gan gans/tep --fault 'gan:4@100+200'\n",
        subcommands=(
            Command(
                "train",
                "simulator.gan.commands:train_command",
                "Train a conditional WGAN-GP on recorded fault episodes; writes a GAN folder (safetensors + manifest).",
                "  plantwatch gan train --data ../shared/data/tep --out gans/tep\n"
                "  plantwatch gan train --data episodes.csv --out gans/pump --window 32 --epochs 300\n"
                "\nthe GAN learns each fault's deviation from normal, in standard deviations of each sensor's\n"
                "normal data, from the fault's onset on; normal rows fix the normal mean, spread and noise.\n"
                "checkpoints: OUT.checkpoints/epoch-NNNNN (complete GAN folders, the last two kept; removed\n"
                "after a successful run unless --keep-checkpoints)\n",
                arguments=_train,
            ),
            Command(
                "sample",
                "simulator.gan.sample:sample_command",
                "Draw fault patterns from a GAN: deviations from normal after the onset, per sensor.",
                "  plantwatch gan sample --gan gans/tep --class 4 --n 10 --out fault4.npy\n"
                "  plantwatch gan sample --gan gans/tep --class 1 --n 1 --length 800 --denoise --units sensor --out f1.csv\n"
                "\n.npy: float32 array (n, length, sensors); .csv: columns pattern, step, then one per sensor\n",
                arguments=_sample,
            ),
            Command(
                "evaluate",
                "simulator.gan.commands:evaluate_command",
                "Evaluate a GAN on held-out fault episodes: discriminative accuracy, TSTR/TRTR recall, diversity.",
                "  plantwatch gan evaluate --gan gans/tep --data ../shared/data/tep --out report/REPORT.json\n"
                "  plantwatch gan evaluate --gan gans/pump --data held-out/ --train-data episodes.csv --out r/REPORT.json\n"
                "\nTEP folder: held-out = the dNN_te.dat test runs, TRTR reference = the dNN.dat training runs.\n"
                "CSV: held-out = the given files (refused if the GAN was trained on them); TRTR uses --train-data\n"
                "(default: the training data named in the GAN's manifest, when it still exists).\n"
                "writes REPORT.json, REPORT.md and REPORT_figures/*.png\n",
                arguments=_evaluate,
            ),
        ),
    ),
)
