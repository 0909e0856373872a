"""What a killed lgml command leaves behind: partial outputs, hidden temporary files, a broken bundle.

Usage: python bench/bench_kills.py [--kills 30] [--firms 3000] [--seed 0]
                                   [--commands score,features,check,simulate,train] [--keep]
e.g.   python bench/bench_kills.py --kills 10

Set-up, in a temporary folder: ``lgml simulate --firms N`` into ``data/``, then one tiny
designation model (60 rounds, one thread, no tracking) trained by ``lgml train`` on those files.
Each command below is first run once to completion: its output is the reference (row counts)
and its wall time the "typical run time". Then, for each signal (SIGKILL, SIGTERM), ``--kills``
rounds of:

1. remove the command's outputs (never its debris: that is for the next run to sweep), start
   the command, sleep a seeded random time in [0.2 s, typical run time], send the signal, wait;
2. record the exit code (SIGTERM: 143 from lgml's handler; -15 when the signal comes before the
   handler is installed, i.e. during start-up imports; 0 or any code when the command had
   finished before the signal, counted apart), the output state, and the debris: entries of
   the output folder whose name starts with "." (lgml's ``.<output>.lgml-<pid>-...``);
3. run the same command again to completion and count the debris left after it (the sweep of
   an earlier run's temporary files: expected 0).

Output states: ``none``; ``complete`` (every output file readable, as many rows as the
reference); ``partial`` (an output file that is unreadable or short: never expected);
``some`` (simulate only: some of its three files, each complete). A signal that comes after the
output was renamed into place, while the command prints or exits, leaves ``complete`` with exit
-9 or 143. ``train --overwrite`` runs over an existing bundle, whose folder must hold a whole
bundle after any kill (model.txt, metadata.json, manifest.json, and ``load_bundle`` succeeds):
``old`` (the same folder, by inode) or ``new`` (exchanged), else ``broken`` (counted as
bundle_path_empty).

Commands killed (run from the temporary folder):
  score     score --model models/kill-designation --input data/panel.parquet
            --output out/scores.csv --chunk-rows 200
  features  features data/panel.parquet --events data/events.parquet --out out/f.parquet
  check     check data/panel.parquet --year 2026 --out out/c.csv
  simulate  simulate --firms 20000 --out out/sim
  train     train --config train.yaml --overwrite
Every stderr is searched for "Traceback"; a round with a traceback, an exit code other than 0,
143, -9 or -15, or a failed next run has both stderrs printed in full (to stderr). Prints a table per command and signal; the last line
prints ``key=value`` pairs (debris counts are entries, summed over rounds).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

BUNDLE = "models/kill-designation"
TRAIN_CONFIG = """
task: designation
name: kill-designation
seed: {seed}
data: {{panel: data/panel.parquet, events: data/events.parquet, truth: data/truth.parquet}}
split: {{train_until: 2023, valid: [2024], test: [2025]}}
lightgbm: {{num_threads: 1, num_boost_round: 60, early_stopping_rounds: 20, learning_rate: 0.1,
           num_leaves: 7, min_child_samples: 100}}
level_adjust: {{by: null}}
gates: {{beat_rules: false}}
mlflow: {{enabled: false}}
models_dir: models
"""


@dataclass(frozen=True)
class Command:
    """An lgml command line, the files it writes and the folder searched for debris."""

    args: tuple[str, ...]
    outputs: tuple[str, ...]
    folder: str


COMMANDS = {
    "score": Command(("score", "--model", BUNDLE, "--input", "data/panel.parquet", "--output", "out/scores.csv",
                      "--chunk-rows", "200"), ("out/scores.csv",), "out"),
    "features": Command(("features", "data/panel.parquet", "--events", "data/events.parquet", "--out",
                         "out/f.parquet"), ("out/f.parquet",), "out"),
    "check": Command(("check", "data/panel.parquet", "--year", "2026", "--out", "out/c.csv"), ("out/c.csv",), "out"),
    "simulate": Command(("simulate", "--firms", "20000", "--out", "out/sim"),
                        ("out/sim/panel.parquet", "out/sim/events.parquet", "out/sim/truth.parquet"), "out"),
    "train": Command(("train", "--config", "train.yaml", "--overwrite"), (BUNDLE,), "models"),
}


@dataclass
class Tally:
    """What the rounds of one command and one signal left behind."""

    exits: Counter = field(default_factory=Counter)
    states: Counter = field(default_factory=Counter)
    finished_first: int = 0
    debris_after_kill: int = 0
    debris_after_next_run: int = 0
    next_run_failed: int = 0
    tracebacks: int = 0


def run(work: Path, command: Command) -> tuple[int, str, float]:
    """Run ``lgml <args>`` in ``work`` to completion: (exit code, stderr, seconds)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lgml", *command.args], cwd=work, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, check=False)
    return done.returncode, done.stderr, time.perf_counter() - start


def killed(work: Path, command: Command, signum: int, delay: float) -> tuple[int, bool, str]:
    """Start the command, send ``signum`` after ``delay`` seconds unless it has already finished:
    (exit code, finished before the signal, stderr)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen([sys.executable, "-m", "lgml", *command.args], cwd=work,
                                stdout=subprocess.DEVNULL, stderr=err, text=True)
        time.sleep(delay)
        finished = proc.poll() is not None
        if not finished:
            proc.send_signal(signum)
        code = proc.wait()
        err.seek(0)
        return code, finished, err.read()


def debris(work: Path, command: Command) -> list[Path]:
    """Hidden entries anywhere in the command's output folder (not looking inside them)."""
    found = []
    for root, dirs, files in os.walk(work / command.folder):
        found += [Path(root, n) for n in [*dirs, *files] if n.startswith(".")]
        dirs[:] = [d for d in dirs if not d.startswith(".")]
    return found


def remove(paths: list[Path]) -> None:
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def table_rows(path: Path) -> int | None:
    """Rows of a whole, readable table file; None if it cannot be read."""
    try:
        if path.suffix == ".parquet":
            return pq.read_table(path).num_rows
        return len(pd.read_csv(path, dtype=str, encoding="utf-8-sig"))
    except Exception:  # noqa: BLE001 -- any failure to read is what we count
        return None


def bundle_state(path: Path, inode: int) -> str:
    """``old`` / ``new`` for a whole, loadable bundle in the same / another folder; else ``broken``."""
    from lgml.modeling.bundle import load_bundle

    if not all((path / n).is_file() for n in ("model.txt", "metadata.json", "manifest.json")):
        return "broken"
    try:
        load_bundle(path)
    except Exception:  # noqa: BLE001
        return "broken"
    return "old" if path.stat().st_ino == inode else "new"


def output_state(work: Path, command: Command, reference: dict[str, int], inode: int | None) -> str:
    if inode is not None:
        return bundle_state(work / command.outputs[0], inode)
    present = [p for p in command.outputs if (work / p).exists()]
    if not present:
        return "none"
    if any(table_rows(work / p) != reference[p] for p in present):
        return "partial"
    return "complete" if len(present) == len(command.outputs) else "some"


def kill_rounds(work: Path, command: Command, signum: int, kills: int, typical: float, rng: random.Random,
                reference: dict[str, int]) -> Tally:
    tally = Tally()
    is_train = command.outputs == (BUNDLE,)
    for _ in range(kills):
        remove(debris(work, command))  # earlier rounds' leftovers are already counted
        if not is_train:
            remove([work / p for p in command.outputs])
        inode = (work / BUNDLE).stat().st_ino if is_train else None
        code, finished, err = killed(work, command, signum, rng.uniform(0.2, max(typical, 0.2)))
        finished = finished or code == 0  # 0 after the signal: it came too late to interrupt anything
        tally.finished_first += finished
        tally.exits[f"done({code})" if finished else code] += 1
        tally.states[output_state(work, command, reference, inode)] += 1
        tally.debris_after_kill += len(debris(work, command))
        if not is_train:
            remove([work / p for p in command.outputs])  # the command does not overwrite
        next_code, next_err, _ = run(work, command)
        tally.next_run_failed += next_code != 0
        tally.debris_after_next_run += len(debris(work, command))
        tally.tracebacks += ("Traceback" in err) + ("Traceback" in next_err)
        odd = code not in (0, 143, -signal.SIGKILL, -signal.SIGTERM) or next_code or "Traceback" in err + next_err
        if odd:  # shown in full: these are what to report
            print(f"# exit {code} (next run {next_code}):\n{err}\n{next_err}", file=sys.stderr, flush=True)
    return tally


def set_up(work: Path, firms: int, seed: int) -> None:
    """Simulated data and a trained bundle in ``work``."""
    simulated = run(work, Command(("simulate", "--firms", str(firms), "--seed", "0", "--out", "data"), (), "data"))
    if simulated[0]:
        raise RuntimeError(f"lgml simulate failed:\n{simulated[1]}")
    (work / "train.yaml").write_text(TRAIN_CONFIG.format(seed=seed), encoding="utf-8")
    code, err, _ = run(work, Command(("train", "--config", "train.yaml"), (), "models"))
    if code:
        raise RuntimeError(f"lgml train failed:\n{err}")
    (work / "out").mkdir()


def reference_run(work: Path, name: str, command: Command) -> tuple[float, dict[str, int]]:
    """Run the command once to completion: its seconds and the rows of each output table."""
    if name != "train":
        remove([work / p for p in command.outputs])
    code, err, seconds = run(work, command)
    if code:
        raise RuntimeError(f"lgml {name} failed:\n{err}")
    rows = {} if name == "train" else {p: table_rows(work / p) for p in command.outputs}
    return seconds, rows


def show(tallies: dict[tuple[str, str], Tally], typical: dict[str, float], kills: int) -> None:
    head = f"{'command':<9} {'signal':<8} {'typ_s':>6} {'rounds':>6} {'fin_1st':>7}  {'exit codes':<26} " \
           f"{'output after kill':<26} {'debris':>6} {'d_next':>6} {'n_fail':>6} {'trace':>5}"
    print(head)
    print("-" * len(head))
    for (name, sig), t in tallies.items():
        exits = " ".join(f"{k}x{v}" for k, v in sorted(t.exits.items(), key=str))
        states = " ".join(f"{k}x{v}" for k, v in sorted(t.states.items()))
        print(f"{name:<9} {sig:<8} {typical[name]:>6.1f} {kills:>6} {t.finished_first:>7}  {exits:<26} "
              f"{states:<26} {t.debris_after_kill:>6} {t.debris_after_next_run:>6} {t.next_run_failed:>6} "
              f"{t.tracebacks:>5}")


def summary(tallies: dict[tuple[str, str], Tally]) -> str:
    total = Counter()
    for (name, sig), t in tallies.items():
        total["kills"] += sum(t.exits.values())
        total["finished_before_signal"] += t.finished_first
        if sig == "SIGKILL":
            total["sigkill_exit_-9"] += t.exits[-signal.SIGKILL]
        else:
            total["sigterm_exit_143"] += t.exits[143]
            total["sigterm_killed_by_signal"] += t.exits[-signal.SIGTERM]
            total["sigterm_other_exit"] += sum(v for k, v in t.exits.items()
                                               if k not in (143, -15) and not str(k).startswith("done"))
        total["partial_outputs"] += t.states["partial"]
        total["debris_after_kill"] += t.debris_after_kill
        total["debris_after_next_run"] += t.debris_after_next_run
        total["next_run_failed"] += t.next_run_failed
        total["bundle_path_empty"] += t.states["broken"]
        total["tracebacks"] += t.tracebacks
    keys = ("kills", "finished_before_signal", "sigkill_exit_-9", "sigterm_exit_143", "sigterm_killed_by_signal",
            "sigterm_other_exit", "partial_outputs", "debris_after_kill", "debris_after_next_run", "next_run_failed",
            "bundle_path_empty", "tracebacks")
    return " ".join(f"{k}={total[k]}" for k in keys)


def bench(args: argparse.Namespace, work: Path) -> None:
    names = [n.strip() for n in args.commands.split(",") if n.strip()]
    unknown = sorted(set(names) - set(COMMANDS))
    if unknown:
        raise SystemExit(f"unknown command(s) {unknown}; allowed: {', '.join(COMMANDS)}")
    set_up(work, args.firms, args.seed)
    rng = random.Random(args.seed)
    typical, tallies = {}, {}
    for name in names:
        command = COMMANDS[name]
        typical[name], reference = reference_run(work, name, command)
        for sig in (signal.SIGKILL, signal.SIGTERM):
            tallies[name, sig.name] = kill_rounds(work, command, sig, args.kills, typical[name], rng, reference)
            print(f"# {name} {sig.name}: done", file=sys.stderr, flush=True)
    show(tallies, typical, args.kills)
    print(summary(tallies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--firms", type=int, default=3000, help="firms of the simulated panel (score/features/check)")
    parser.add_argument("--kills", type=int, default=30, help="rounds per command and signal")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill delays and of the model")
    parser.add_argument("--commands", default=",".join(COMMANDS), help="comma list of: " + ", ".join(COMMANDS))
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (its path is printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lgml-bench-kills-"))
    try:
        bench(args, work)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
