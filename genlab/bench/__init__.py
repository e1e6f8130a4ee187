"""genlab's benchmarks (`genlab bench`), apart from the library: workloads, PyTorch baselines,
timing, the targets and the reports, a module each."""

from .baselines import compile_child, torch_group_model, torch_level_model
from .cli import main
from .growth_run import growth_phases, run_growth
from .report import chart, sweep_figure, write
from .targets import bound, targets
from .timing import time_cuda, time_graph, time_host
from .workload_run import run_workload, step_breakdown
from .workloads import GENLAB, IMPLEMENTATIONS, WORKLOADS, batch_of, step_cost

__all__ = ["compile_child", "torch_group_model", "torch_level_model", "main", "growth_phases", "run_growth", "chart",
           "sweep_figure", "write", "bound", "targets", "time_cuda", "time_graph", "time_host", "run_workload",
           "step_breakdown", "GENLAB", "IMPLEMENTATIONS", "WORKLOADS", "batch_of", "step_cost"]
