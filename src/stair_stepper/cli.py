"""The ``stair-stepper`` command line: a registry of subcommands, each in its own module.

Each module named in ``COMMANDS`` owns its flags (``add_arguments(parser)``) and its work
(``run_args(args) -> exit code``), as memray's ``commands/`` do; only the module of the
command being run is imported, so ``serve``'s measured process never loads the load
driver, the recorder or matplotlib. Every error of ours (``errors.StairStepperError``) is
one line and the exit status it carries (2 for a user's mistake, a usage mistake too).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from stair_stepper.errors import StairStepperError

#: name -> (module that owns it, one line of help, an example its --help ends with).
#: A new command is one module and one entry.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "serve": (
        "service.serve",
        "serve the wasteful widget service (or your --app) on one allocator",
        "stair-stepper serve --allocator jemalloc --bind 127.0.0.1:8000",
    ),
    "allocators": (
        "allocators.trials",
        "which allocators work here, with versions",
        "stair-stepper allocators --json",
    ),
    "plans": (
        "load.plans",
        "generate the drill plan files (request bodies)",
        "stair-stepper plans generate",
    ),
    "load": (
        "load.command",
        "run a drill benchmark file against a local server",
        "stair-stepper load --benchmark benchmark.yml --base http://127.0.0.1:8000 --stats",
    ),
    "record": (
        "record.command",
        "sample a process's memory into a CSV trace",
        "stair-stepper record --pid 12345 --out trace.csv --interval 0.5 --duration 60",
    ),
    "experiment": (
        "experiment.command",
        "the main job: load each allocator variant, record, analyse",
        "stair-stepper experiment --preset quick --allocators glibc,jemalloc+bg --out results/q",
    ),
    "plot": (
        "analysis.plot",
        "summary tables and figures from result folders",
        "stair-stepper plot results/q",
    ),
    "compare": (
        "analysis.compare",
        "two result folders side by side",
        "stair-stepper compare results/before results/after",
    ),
    "report": (
        "analysis.report",
        "a result folder's report.html, for a design review",
        "stair-stepper report results/q",
    ),
    "cleanup": (
        "record.cleanup",
        "remove the memory cgroups a run killed hard left behind",
        "stair-stepper cleanup --dry-run",
    ),
}


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one sentence and exit 2, like every other user error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message.rstrip('.')}. (--help lists the options)\n")


class _Version(argparse.Action):
    """--version, with the version looked up only when asked (it costs 18 ms to find)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from stair_stepper import __version__

        parser.exit(0, f"stair-stepper {__version__}\n")


def build_parser(chosen: str | None = None) -> tuple[argparse.ArgumentParser, object]:
    """The parser, with the flags of ``chosen`` (its module imported) and the names and help
    of every other command; returns it and the chosen command's module (or None)."""
    parser = _Parser(
        prog="stair-stepper",
        description="Why does a Python service's memory climb in stair steps, "
        "and which allocator or setting fixes it, at what price?",
    )
    parser.add_argument("--version", action=_Version, nargs=0, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    module = None
    for name, (module_name, help_text, example) in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if name == chosen:
            module = importlib.import_module(f".{module_name}", __package__)
            module.add_arguments(p)
    return parser, module


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    parser, module = build_parser(chosen if chosen in COMMANDS else None)
    args = parser.parse_args(argv)
    args.argv = argv  # serve re-executes itself with them
    try:
        return module.run_args(args)  # type: ignore[union-attr]
    except StairStepperError as exc:  # one line, and the status the error carries
        print(f"stair-stepper: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("stair-stepper: interrupted.", file=sys.stderr)
        return 130
