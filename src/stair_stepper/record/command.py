"""``stair-stepper record``: sample a pid, or a command it starts, into a trace (psrecord's
``main`` and ``monitor``: the command line parses, ``record_command`` does the work)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from stair_stepper.errors import ProcessGone
from stair_stepper.record import procfs
from stair_stepper.record.recorder import POLL_S, Recorder


def record_command(
    *,
    out: Path,
    pid: int | None = None,
    command: list[str] | None = None,
    interval: float = 0.1,
    duration: float | None = None,
    service_url: str | None = None,
    pss_interval: float = 1.0,
    poll_interval: float = POLL_S,
    append: bool = False,
    include_children: bool = False,
) -> int:
    """``stair-stepper record``: sample a pid or a command it starts; a clean end either way
    (psrecord's ``monitor(...)``: the command line parses, this does the work).

    A command it starts is its child in its own session, stopped with its whole group when
    the recording ends, is interrupted or is terminated, and by the kernel if we die first.
    Ctrl-C, SIGTERM and SIGHUP end the recording (``errors.Stopper``); the exit code is
    128 + the signal's number for the last two.
    """
    import signal

    from stair_stepper import selfexec, validate
    from stair_stepper.errors import Stopper, UserError
    from stair_stepper.load.client import MEMORY, AllocatorPoller

    validate.positive_float("--interval", interval)
    if not append and out.exists() and out.stat().st_size > 0:
        raise UserError(f"{out} already exists; give --append to continue it, or another --out.")
    child = poller = None
    with Stopper() as stopper:
        try:
            if command:
                child = _start(command)
                pid = child.pid
            assert pid is not None
            if not procfs.alive(pid):
                raise UserError(f"there is no process {pid} to record.")
            if service_url:
                poller = AllocatorPoller(service_url, MEMORY, poll_interval)
            recorder = _recorder(
                pid, out, interval, include_children, pss_interval, poller, append, stopper
            )
            what = "the process tree of pid" if include_children else "pid"
            print(
                f"recording {what} {pid} every {interval} s into {out} (Ctrl-C stops)",
                file=sys.stderr,
            )
            if poller:
                poller.start()
            recorder.run(duration)
        finally:
            if poller:
                poller.stop()
            if child is not None:
                selfexec.stop_group(child)
    took = time.monotonic() - recorder.started
    if recorder.gone:
        print(
            f"process {pid} exited after {took:.1f} s; kept {recorder.samples} samples in {out}.",
            file=sys.stderr,
        )
    else:
        print(f"stopped after {took:.1f} s; {recorder.samples} samples in {out}.", file=sys.stderr)
    if stopper.signum in (signal.SIGTERM, signal.SIGHUP):
        print(
            f"stair-stepper: terminated by {signal.Signals(stopper.signum).name}.", file=sys.stderr
        )
        return 128 + stopper.signum
    return 130 if stopper.signum == signal.SIGINT else 0


def _start(command: list[str]):
    """The command to record, in its own session, dying with us."""
    import subprocess

    from stair_stepper import selfexec
    from stair_stepper.errors import UserError

    try:
        return subprocess.Popen(command, **selfexec.child_popen_options())
    except OSError as exc:
        raise UserError(f"cannot start {command[0]}: {exc.strerror}.") from None


def _recorder(pid, out, interval, include_children, pss_interval, poller, append, stopper):
    """The Recorder, or the one sentence that says why it cannot record."""
    from stair_stepper.errors import UserError

    try:
        return Recorder(
            pid,
            out,
            interval,
            include_children=include_children,
            pss_interval=pss_interval,
            allocator=poller,
            append=append,
            stop=stopper.event,
        )
    except ProcessGone:
        raise UserError(f"process {pid} exited before the first sample.") from None
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}.") from None


def add_arguments(p) -> None:
    """``record``'s flags."""
    import argparse

    from stair_stepper.validate import flag, non_negative_float, positive_float, positive_int

    seconds = flag(positive_float)
    p.add_argument("--pid", type=flag(positive_int), help="process to record")
    p.add_argument("--out", "-o", required=True, help="trace CSV to write (must not exist)")
    p.add_argument(
        "--append",
        action="store_true",
        help="continue an existing trace (its clock goes on from the last row)",
    )
    p.add_argument("--interval", type=seconds, default=0.1, help="seconds between samples")
    p.add_argument("--duration", type=seconds, help="stop after this many seconds")
    p.add_argument("--service-url", help="our service's base URL, for allocator accounting")
    p.add_argument(
        "--include-children",
        action="store_true",
        help="record the whole process tree: memory and CPU summed over it, with a process count",
    )
    p.add_argument(
        "--pss-interval",
        type=flag(non_negative_float),
        default=1.0,
        help="least seconds between PSS/USS reads (default 1; smaps_rollup is costly, so they "
        "also keep to 0.2%% of a core by their own measured cost; 0: every sample, whatever "
        "it costs); the tree is looked up again with each",
    )
    p.add_argument(
        "--poll-interval",
        type=seconds,
        default=POLL_S,
        help="seconds between allocator polls with --service-url (default 0.5)",
    )
    p.add_argument("command_line", nargs=argparse.REMAINDER, metavar="-- COMMAND ...")


def run_args(args) -> int:
    from stair_stepper.errors import UserError

    command = args.command_line[1:] if args.command_line[:1] == ["--"] else args.command_line
    if (args.pid is None) == (not command):
        raise UserError("give either --pid PID or -- COMMAND ..., not both or neither.")
    return record_command(
        out=Path(args.out),
        pid=args.pid,
        command=command or None,
        interval=args.interval,
        duration=args.duration,
        service_url=args.service_url,
        pss_interval=args.pss_interval,
        poll_interval=args.poll_interval,
        append=args.append,
        include_children=args.include_children,
    )
