"""The trace and batch CSV schemas, their writer and their reader: defined once.

A trace is one row per sample, appended and flushed as it is taken, so a crash
loses at most the row being written. The reader tolerates exactly that: a
truncated last line is dropped with a warning, not an error.

Times: ``t_s`` is seconds since the recording started (monotonic clock);
``wall_time`` is Unix seconds. Memory is in bytes; an empty cell is unknown.
``processes`` is how many processes a row covers: a recording of a process tree
(``record --include-children``, ``experiment --command``) sums the memory and CPU
columns over them, says which in a ``#`` line above the header, and keeps the
biggest member's RSS in ``largest_rss_bytes``. Readers skip leading ``#`` lines.
"""

from __future__ import annotations

import collections
import csv
import io
from pathlib import Path

from stair_stepper.errors import TraceError

#: the columns a process-tree row sums over its processes (its ``#`` line says so)
SUMMED_COLUMNS = (
    "rss_bytes",
    "rss_anon_bytes",
    "peak_rss_bytes",
    "pss_bytes",
    "uss_bytes",
    "lazyfree_bytes",
    "cpu_s",
    "cpu_user_s",
    "cpu_system_s",
    "minor_faults",
    "major_faults",
)
TRACE_COLUMNS = (
    "t_s",
    "wall_time",
    "phase",
    "rss_bytes",
    "rss_anon_bytes",
    "peak_rss_bytes",
    "pss_bytes",
    "uss_bytes",
    "cpu_s",
    "live_bytes",
    "held_bytes",
    "processes",
    "largest_rss_bytes",
    "cpu_user_s",
    "cpu_system_s",
    "minor_faults",
    "major_faults",
    # the kernel's side: pages given back with MADV_FREE it may take without a kill
    # (smaps_rollup's LazyFree), and the memory cgroup's charge, its peak, anon and file parts
    "lazyfree_bytes",
    "cgroup_bytes",
    "cgroup_peak_bytes",
    "cgroup_anon_bytes",
    "cgroup_file_bytes",
)
BATCH_COLUMNS = (
    "batch",
    "start_s",
    "end_s",
    "pause_end_s",
    "requests",
    "failures",
    "requests_per_second",
    "p50_ms",
    "p99_ms",
    "p99_9_ms",
    "rss_end_batch_bytes",
    "rss_end_pause_bytes",
    "pause_s",
    "settled",
    "pause_requests",
    "idle_requests_sent",
    "trims",
    "trims_s",
    "rate",
    "lag_p99_ms",
    "lag_max_ms",
    "cpu_user_s",
    "cpu_system_s",
    "minor_faults",
    "major_faults",
    # the memory cgroup's, over the batch and its pause: its charge's peak so far, and the
    # times it hit its limit (v1's failcnt, empty where memsw is limited too; v2's "max")
    # and its memory.high (v2)
    "cgroup_peak_bytes",
    "limit_hits",
    "high_events",
)
#: one batch and the pause after it, as ``<variant>.batches.csv`` holds it (every field a column)
#: ``lag_p99_ms`` and ``lag_max_ms``: how late an open loop's sender sent
#: (``load.openloop.fell_behind`` judges them)
BatchRow = collections.namedtuple("BatchRow", BATCH_COLUMNS, defaults=(None,) * len(BATCH_COLUMNS))


FLOAT_COLUMNS = {"t_s", "wall_time", "cpu_s", "start_s", "end_s", "pause_end_s", "pause_s"}
FLOAT_COLUMNS |= {"cpu_user_s", "cpu_system_s", "trims_s", "probe_s", "rate"}
FLOAT_COLUMNS |= {"lag_p99_ms", "lag_max_ms"}
FLOAT_COLUMNS |= {"requests_per_second", "p50_ms", "p99_ms", "p99_9_ms"}
TEXT_COLUMNS = {"phase", "role"}

#: Python's own layer in a structure reading (tracemalloc when on, pymalloc's arenas)
PYTHON_COLUMNS = (
    "python_traced_bytes",  # tracemalloc (--trace-python)
    "tracemalloc_bytes",  # tracemalloc's own memory
    "pymalloc_arena_bytes",
    "pymalloc_used_bytes",
)


def structure_columns() -> tuple[str, ...]:
    """The allocator's structure, one row per reading after an idle phase
    (``<variant>.structure.csv``): live and held bytes, the totals each allocator's structure
    names (its own module says what they are: ``Allocator.structure_columns``), the number of
    arenas, Python's layer, and what asking took in the served process (``probe_s``)."""
    from stair_stepper.allocators import structure_columns as allocators_columns

    return (
        "t_s",
        "phase",
        "live_bytes",
        "held_bytes",
        *allocators_columns(),
        "arenas",
        *PYTHON_COLUMNS,
        "probe_s",
    )


def arena_columns() -> tuple[str, ...]:
    """Per arena, one row per arena per reading (``<variant>.arenas.csv``): the columns each
    allocator's arenas have (``Allocator.arena_columns``)."""
    from stair_stepper.allocators import arena_columns as allocators_columns

    return ("t_s", "phase", "arena", *allocators_columns(), "pid")  # pid: a tree's process


#: a process tree's members, one row per process per reading after an idle phase
#: (``<variant>.processes.csv``): its part in the server (master, worker, process), what the
#: kernel counts (RSS, PSS, USS and the shared rest of its RSS: what fork left shared with
#: the master) and what its allocator counts (live and held, from its agent)
PROCESS_COLUMNS = (
    "t_s",
    "phase",
    "pid",
    "role",
    "rss_bytes",
    "pss_bytes",
    "uss_bytes",
    "shared_bytes",
    "live_bytes",
    "held_bytes",
)
PROCESSES_SUFFIX = ".processes.csv"
STRUCTURE_SUFFIX = ".structure.csv"
ARENAS_SUFFIX = ".arenas.csv"
TRACE_SUFFIX = ".trace.csv"
RUN_PREFIX = "run-"  # experiment --repeat N: run-1 … run-N, each a complete result folder
BATCHES_SUFFIX = ".batches.csv"


class RowWriter:
    """Append rows to a CSV file, flushing each one (a killed run keeps every row written)."""

    def __init__(self, path: Path, columns: tuple[str, ...], comment: str = "") -> None:
        self.path = Path(path)
        self.columns = columns
        new = not self.path.exists() or self.path.stat().st_size == 0
        self._file = open(self.path, "a", newline="", encoding="ascii")  # noqa: SIM115
        self._writer = csv.writer(self._file)
        if new:
            if comment:
                self._file.write(f"# {comment}\n")
            self._writer.writerow(columns)
            self._file.flush()

    def write(self, row) -> None:
        """One row: a mapping, or a named tuple such as ``BatchRow``."""
        if hasattr(row, "_asdict"):
            row = row._asdict()
        self._writer.writerow([_cell(row.get(k)) for k in self.columns])
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> RowWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _parse(column: str, text: str):
    if text == "" or text is None:
        return None
    if column in TEXT_COLUMNS:
        return text
    if column in FLOAT_COLUMNS:
        return float(text)
    return int(float(text))


class Table:
    """Rows of a CSV as columns of Python values, plus what was wrong with the file."""

    def __init__(self, path: Path, columns: dict[str, list] | None = None) -> None:
        self.path = path
        self.columns: dict[str, list] = columns if columns is not None else {}
        self.warnings: list[str] = []
        self._indexes: dict = {}

    def __repr__(self) -> str:
        return f"Table({self.path}, {len(self)} rows, columns {list(self.columns)})"

    def __len__(self) -> int:
        return len(next(iter(self.columns.values()), []))

    def column(self, name: str) -> list:
        found = self.columns.get(name)
        if isinstance(found, _Unparsed):  # read fast, parsed on first use
            found = self.columns[name] = found.parse(name, self)
        return found if found is not None else [None] * len(self)

    def parse(self, *names: str) -> Table:
        """Parse these columns now, so that what was wrong with them is in ``warnings``."""
        for name in names:
            self.column(name)
        return self

    def rows_where(self, column: str, value) -> list[int]:
        """Row numbers whose ``column`` equals ``value``, from an index built once per column
        (the summary asks for every phase: a scan each time would grow as samples x pauses)."""
        index = self._indexes.get(column)
        if index is None:  # a phase runs for many rows: one entry per run of them, not per row
            cells, index = self.column(column), {}
            starts = [0, *(k for k in range(1, len(cells)) if cells[k] != cells[k - 1])]
            for start, end in zip(starts, [*starts[1:], len(cells)], strict=True) if cells else ():
                index.setdefault(cells[start], []).extend(range(start, end))
            self._indexes[column] = index
        return index.get(value, [])

    def distinct(self, column: str) -> list:
        """The values of ``column``, each once, in the order they first appear."""
        self.rows_where(column, None)
        return list(self._indexes[column])


def read_table(path: Path, required: tuple[str, ...]) -> Table:
    """Read a trace or batches CSV, tolerating what a crash or damage leaves behind: a line
    with the wrong number of cells is dropped with a warning (a truncated last line says so), a
    cell that is not a number becomes empty, with a warning naming its column and line."""
    path = Path(path)
    try:
        if path.suffix == ".gz":  # published folders keep their traces compressed
            import gzip  # here: a recorder never pays for it

            with gzip.open(path, "rt", encoding="ascii", errors="replace") as handle:
                text = handle.read()
        else:
            text = path.read_text(encoding="ascii", errors="replace")
    except (OSError, EOFError) as exc:
        raise TraceError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}.") from None
    table = Table(path)
    if not text.strip():
        raise TraceError(f"{path} is empty.")
    truncated = not text.endswith("\n")
    skipped = 0
    while text.startswith("#"):  # a tree recording says which columns are sums
        text = text.partition("\n")[2]
        skipped += 1
    if not text.strip():
        raise TraceError(f"{path} has no header.")
    first = 2 + skipped  # the first row's line in the file
    header, cells, lines = _whole_rows(text, first) or _line_by_line(text, first, truncated, table)
    missing = [c for c in required if c not in header]
    if missing:
        raise TraceError(f"{path} is not a stair-stepper CSV (no column {missing[0]!r}).")
    table.columns = {name: _Unparsed(cells[k], lines) for k, name in enumerate(header)}
    return table


def _whole_rows(text: str, first: int) -> tuple[list[str], list[list[str]], range] | None:
    """Header, columns and line numbers when every line is a whole row, none quoted (the
    usual file): one split of the text, each column a slice of it, no list per row (a 10-hour
    trace: 360,000 rows of 22 cells). None: the line-by-line rules apply."""
    if '"' in text or "\r" in text:
        return None
    head, _, body = text.partition("\n")
    header, width, body = head.split(","), head.count(",") + 1, body.removesuffix("\n")
    if not body or any(line.count(",") != width - 1 for line in body.split("\n")):
        return None
    cells = body.replace("\n", ",").split(",")
    return (
        header,
        [cells[k::width] for k in range(width)],
        range(first, first + len(cells) // width),
    )


def _line_by_line(text: str, first: int, truncated: bool, table: Table) -> tuple:
    """Header, columns and line numbers of the rows as wide as the header, any other line
    dropped with a warning in ``table``; split at commas unless a cell is quoted (then csv)."""
    if '"' in text:
        rows = list(csv.reader(io.StringIO(text)))
    else:
        rows = [line.split(",") for line in text.splitlines()]
    header, body = rows[0], rows[1:]
    kept, lines = [], []
    for number, cells in enumerate(body, start=first):
        if len(cells) == len(header):
            kept.append(cells)
            lines.append(number)
        elif number == first + len(body) - 1 and truncated:
            table.warnings.append(f"{table.path.name}: dropped a truncated last line.")
        else:
            table.warnings.append(f"{table.path.name}: skipped malformed line {number}.")
    return header, [[row[k] for row in kept] for k in range(len(header))], lines


class _Unparsed(list):
    """A column's cells as text until first asked for (``Table.column``): an analysis uses
    five of a trace's columns. ``lines``: each cell's line in the file, for warnings."""

    def __init__(self, cells: list[str], lines: list[int]) -> None:
        super().__init__(cells)
        self.lines = lines

    def parse(self, column: str, table: Table) -> list:
        try:
            return _parse_column(column, self)
        except ValueError:
            pass
        values = []
        for number, cell in zip(self.lines, self, strict=True):
            try:
                values.append(_parse(column, cell))
            except ValueError:
                table.warnings.append(f"{table.path.name}: unreadable {column} on line {number}.")
                values.append(None)
        return values


def _parse_column(column: str, cells) -> list:
    """One column's cells as values, as ``_parse`` would give them (ValueError if one is not)."""
    if column in TEXT_COLUMNS:
        return [c or None for c in cells]
    number = float if column in FLOAT_COLUMNS else int
    try:
        return list(map(number, cells))  # no blanks, integers written as integers
    except ValueError:
        pass
    try:
        return [number(c) if c else None for c in cells]  # blanks
    except ValueError:
        return [_parse(column, c) for c in cells]  # an integer column written as 1.0


def read_trace(path: Path) -> Table:
    return read_table(path, ("t_s", "rss_bytes"))


def read_batches(path: Path) -> Table:
    return read_table(path, ("batch", "start_s", "end_s"))


def variant_files(folder: Path) -> dict[str, Path]:
    """variant name -> trace file (``.csv`` or compressed ``.csv.gz``), sorted by name."""
    files = {}
    for suffix in (TRACE_SUFFIX + ".gz", TRACE_SUFFIX):
        for p in sorted(Path(folder).glob(f"*{suffix}")):
            files[p.name[: -len(suffix)]] = p
    return dict(sorted(files.items()))


def companion(trace: Path, suffix: str) -> Path:
    """The file beside a trace for the same variant (e.g. its batches), compressed or not."""
    name = trace.name.removesuffix(".gz").removesuffix(TRACE_SUFFIX)
    plain = trace.parent / f"{name}{suffix}"
    return (
        plain
        if plain.exists() or not plain.with_name(plain.name + ".gz").exists()
        else (plain.with_name(plain.name + ".gz"))
    )
