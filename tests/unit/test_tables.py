"""Reading a trace: the usual file in one split of its text, a damaged one line by line, with
the same table either way (record/schema.py)."""

from __future__ import annotations

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
