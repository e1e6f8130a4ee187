"""Every kernel harness in turn: python benchmarks/kernels/all.py (exit status 1 if any fails)."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
failed = []
for family in ("forward", "backward", "optim", "growth", "topology", "persistent", "kinds"):
    print(f"== {family}", flush=True)
    if subprocess.run([sys.executable, str(here / f"{family}.py")]).returncode:
        failed.append(family)
print("all kernel families match the reference" if not failed else f"failed: {', '.join(failed)}")
raise SystemExit(1 if failed else 0)
