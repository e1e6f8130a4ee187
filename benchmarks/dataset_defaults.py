"""The README's table of the built-in datasets: `genlab train` with its defaults, the plain chain
against a network grown from one group (--start single --grow), seed 0, serial engine. Writes
benchmarks/results/cpu/dataset_defaults.json:  python benchmarks/dataset_defaults.py"""

import json
import subprocess
import sys
from pathlib import Path

DATASETS = ("digits", "iris", "wine", "breast_cancer", "moons", "circles", "spirals", "xor")


def train(*options: str) -> dict:
    command = [sys.executable, "-m", "genlab", "train", "--backend", "serial", "--quiet", "--json", *options]
    return json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout)


def main() -> None:
    rows = []
    for name in DATASETS:
        plain, grown = train("--dataset", name), train("--dataset", name, "--start", "single", "--grow")
        rows.append({"dataset": name, "epochs": plain["epochs"], "steps": plain["steps"],
                     "plain": plain["test_accuracy"], "grown": grown["test_accuracy"], "groups": grown["groups"],
                     "parameters_grown": grown["parameters"], "gap": plain["test_accuracy"] - grown["test_accuracy"],
                     "seconds_grown": grown["seconds"]})
        print(rows[-1], flush=True)
    out = Path(__file__).parent / "results" / "cpu" / "dataset_defaults.json"
    out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
