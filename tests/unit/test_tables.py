"""Reading a trace: the usual file in one split of its text, a damaged one line by line, with
the same table either way (record/schema.py)."""

from __future__ import annotations

from stair_stepper.analysis import read
from stair_stepper.record import schema
from stair_stepper.record.schema import TRACE_COLUMNS, RowWriter, read_trace


def write_trace(path, rows: int, comment: str = "") -> None:
    with RowWriter(path, TRACE_COLUMNS, comment=comment) as writer:
        for i in range(rows):
            writer.write(
                {
                    "t_s": i * 0.1,
                    "wall_time": 1.7e9 + i,
                    "phase": "baseline" if i < 3 else "batch 1",
                    "rss_bytes": 1000 + i,
                    "live_bytes": None if i % 2 else 10 * i,  # blanks
                    "cgroup_bytes": 2000 + i,
                }
            )


def test_a_whole_file_is_split_once_and_reads_as_line_by_line(tmp_path, monkeypatch):
    path = tmp_path / "v.trace.csv"
    write_trace(path, 50, comment="process tree of pid 1: rss_bytes sums")
    text = path.read_text().partition("\n")[2]  # below its # line
    assert schema._whole_rows(text, 3) is not None  # the one-split path takes this file

    def refuse(*args):
        raise AssertionError("read line by line")

    monkeypatch.setattr(schema, "_line_by_line", refuse)
    fast = read_trace(path)
    monkeypatch.undo()
    monkeypatch.setattr(schema, "_whole_rows", lambda text, first: None)
    slow = read_trace(path)
    assert list(fast.columns) == list(slow.columns) == list(TRACE_COLUMNS)
    for name in TRACE_COLUMNS:
        assert fast.column(name) == slow.column(name), name
    assert fast.column("rss_bytes") == [1000 + i for i in range(50)]
    assert fast.column("live_bytes")[:4] == [0, None, 20, None]
    assert fast.column("phase")[2:4] == ["baseline", "batch 1"]
    assert fast.warnings == slow.warnings == []


def test_a_short_line_and_a_long_one_are_not_taken_for_whole_rows(tmp_path):
    """One line a cell short and the next a cell long hold as many cells as two whole rows:
    each line is judged by its own width, so both are dropped and the rest keep their places."""
    path = tmp_path / "v.trace.csv"
    write_trace(path, 6)
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0]  # line 4 of the file: one cell short
    lines[4] = lines[4] + ",7"  # line 5: one cell long
    path.write_text("\n".join(lines) + "\n")
    trace = read_trace(path)
    assert trace.column("rss_bytes") == [1000, 1001, 1004, 1005]
    assert trace.column("cgroup_bytes") == [2000, 2001, 2004, 2005]
    assert trace.warnings == [
        "v.trace.csv: skipped malformed line 4.",
        "v.trace.csv: skipped malformed line 5.",
    ]


def test_rows_of_a_value_are_every_row_that_holds_it_in_runs_or_apart(tmp_path):
    """The index keeps a phase's rows run by run; a value that comes back later (a phase
    label written again after another) gets all its rows, in order, as a scan would."""
    cells = ["baseline"] * 3 + ["batch 1"] * 2 + [None] + ["batch 1", "pause 1", "pause 1"]
    table = schema.Table(tmp_path / "t.csv", {"phase": cells})
    for value in {*cells, "absent"}:
        assert table.rows_where("phase", value) == [k for k, c in enumerate(cells) if c == value]
    assert table.distinct("phase") == ["baseline", "batch 1", None, "pause 1"]
    assert schema.Table(tmp_path / "e.csv", {"phase": []}).rows_where("phase", None) == []


def test_a_phase_s_window_length_and_last_reading_come_from_its_own_rows(tmp_path):
    """Read back from a phase's last row: the last WINDOW_S seconds of its own rows (another
    phase's rows between them, and readings missing, left out), its length first to last."""
    rows = [  # t_s, phase, rss: pause 1 is interrupted by a read and resumed
        (0.0, "pause 1", 90),
        (0.5, "pause 1", 50),
        (1.0, "read 1", 1),
        (1.6, "pause 1", 70),
        (1.8, "pause 1", None),
        (2.0, "pause 1", 80),
        (2.1, "after trim", 5),
    ]
    t, phase, rss = (list(column) for column in zip(*rows, strict=True))
    table = schema.Table(tmp_path / "t.csv", {"t_s": t, "phase": phase, "rss_bytes": rss})
    assert read.phase_window(table, "pause 1") == 70  # 1.0 s to 2.0 s: 70 and 80, not 50
    assert read.phase_window(table, "pause 1", reduce=list) == [70, 80]  # in time order
    assert read.phase_window(table, "pause 2") is None
    assert read.phase_last(table, "pause 1", "rss_bytes") == 80
    assert read.phase_length(table, "pause 1") == 2.0
    assert read.phase_length(table, "pause 2") is None
