#!/usr/bin/env python3
"""A fake drill, for what real drill cannot do on demand (tests that are about drill's own
behaviour use real drill: tests/conftest.py real_drill()).

It accepts drill's command line (``--benchmark FILE --stats --quiet [--tags T]``), runs the
benchmark with stair-stepper's own driver and prints drill's --stats layout.
FAKE_DRILL_EXIT=N makes it fail with exit code N instead; FAKE_DRILL_RECORD=DIR makes it
write what it was given (benchmark file and its base URL) into DIR, one JSON file a call.
Not modelled: drill's own HTTP client, its statistics, its panics.
"""

import json
import os
import subprocess
import sys
import uuid

import yaml

if os.environ.get("FAKE_DRILL_EXIT"):
    print("fake drill: failing on purpose", file=sys.stderr)
    sys.exit(int(os.environ["FAKE_DRILL_EXIT"]))
args = sys.argv[1:]
benchmark = args[args.index("--benchmark") + 1]
if os.environ.get("FAKE_DRILL_RECORD"):
    with open(benchmark) as handle:
        base = yaml.safe_load(handle)["base"]
    given = {"benchmark": os.path.abspath(benchmark), "base": base, "argv": args}
    path = os.path.join(os.environ["FAKE_DRILL_RECORD"], f"{uuid.uuid4()}.json")
    with open(path, "w") as handle:
        json.dump(given, handle)
out = ["load", "--benchmark", benchmark, "--stats", "--quiet"]
if "--tags" in args:
    out += ["--tags", args[args.index("--tags") + 1]]
sys.exit(subprocess.call([sys.executable, "-m", "stair_stepper", *out]))
