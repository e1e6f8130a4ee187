"""What the growth study's choices gave, on a Fashion-MNIST subset (20,000 training samples,
3 epochs, dense groups of 16 from one, to 32 groups, seeds 0 and 1): the width-wise sibling
started fresh or split from its group, and the statistic that picks the group, under the study's
schedule (checks spread over the first third of the run, cooldown one check) and under
GrowthPolicy's defaults (every 50 steps, cooldown 100: `genlab train --grow`). Writes
benchmarks/results/cpu/growth_choices.json:  python benchmarks/growth_choices.py"""

import json
from pathlib import Path

from genlab import study
from genlab.study import arms

TASK = study.Task("fashion_mnist", "dense", 16, 3, n_samples=20_000)
CHOICES = [("study", "grad_std", "fresh"), ("study", "grad_std", "split"), ("study", "taylor", "fresh"),
           ("study", "weight_grad_norm", "fresh"), ("defaults", "grad_std", "fresh"), ("defaults", "grad_std", "split")]


def main() -> None:
    default = arms.policy
    rows = []
    for schedule, criterion, sibling in CHOICES:
        def policy(task, data, grow=True, schedule=schedule, criterion=criterion, sibling=sibling):
            p = default(task, data, grow)
            if schedule == "defaults" and grow:
                p.every, p.cooldown = 50, 100
            p.criterion, p.sibling = criterion, sibling
            return p

        arms.policy = policy
        first = (criterion, sibling) == ("grad_std", "fresh")
        results = study.run({TASK.dataset: TASK}, seeds=(0, 1), progress=False,
                            arms=("grown", "regrown", "random") if first else ("grown", "regrown"))
        for arm, s in results["summary"][TASK.dataset].items():
            rows.append({"schedule": schedule, "criterion": criterion, "sibling": sibling, "arm": arm, **s})
            print(rows[-1], flush=True)
    arms.policy = default
    out = Path(__file__).parent / "results" / "cpu" / "growth_choices.json"
    out.write_text(json.dumps({"task": TASK.to_dict(), "seeds": [0, 1], "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
