"""asyncwarp's benchmark suite: each benchmark times asyncwarp kernels and their baselines
in one process and reports ratios against goals (`python -m benchmarks --help`).

NOTES.md states the method, each benchmark's floor and the predictions.
"""

# name -> module (in benchmarks/), in the order the runner runs and prints them
BENCHMARKS = {
    "pipeline": "pipeline",
    "await_cost": "await_cost",
    "round_trip": "round_trip",
    "progress": "progress",
    "backends": "backend_compare",
    "host_overhead": "host_overhead",
}
