#!/usr/bin/env python3
"""A stand-in for real drill, which cannot be installed here (no crates registry).

It accepts drill's command line, runs the benchmark with stair-stepper's own
driver and prints drill's --stats layout, so the experiment's drill path
(benchmark copy, command line, stats parsing) is exercised for real.
FAKE_DRILL_EXIT=N makes it fail with exit code N instead.
"""

import os
import subprocess
import sys

if os.environ.get("FAKE_DRILL_EXIT"):
    print("fake drill: failing on purpose", file=sys.stderr)
    sys.exit(int(os.environ["FAKE_DRILL_EXIT"]))
args = sys.argv[1:]
out = ["load", "--benchmark", args[args.index("--benchmark") + 1], "--stats", "--quiet"]
if "--tags" in args:
    out += ["--tags", args[args.index("--tags") + 1]]
sys.exit(subprocess.call([sys.executable, "-m", "stair_stepper", *out]))
