"""The growth study: does growing a network beat a fixed network of its size, and growing at
random? `genlab study` runs it; `run(TASKS)` from Python; notebook 08 reads the committed run.

    >>> from genlab import study
    >>> results = study.run(study.QUICK, seeds=(0,), arms=("grown", "random"), progress=False)  # doctest: +SKIP
"""

from .plots import accuracy_vs_parameters, learning_curves
from .results import compare, merge, published
from .runner import run
from .tasks import ANCHORS, ARMS, QUICK, TASKS, Task

__all__ = ["ANCHORS", "ARMS", "QUICK", "TASKS", "Task", "accuracy_vs_parameters", "compare", "learning_curves", "merge",
           "published", "run"]
