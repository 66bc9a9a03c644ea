"""The post-fork hook docs/your-service.md shows is the one the verdict prints (and
tests/test_prefork.py runs that one in a real gunicorn)."""

from __future__ import annotations

import re
from pathlib import Path

from stair_stepper.allocators import settings
from stair_stepper.analysis import verdict

ROOT = Path(__file__).resolve().parents[2]


def test_the_docs_show_the_hook_the_verdict_prints():
    var = settings.parse(
        "x=jemalloc MALLOC_CONF=background_thread:true post_fork=background_thread"
    )
    info = {"settings": {"allocator": "jemalloc", "given": var.env, "strategy": var.strategy_text}}
    lines = verdict.environment(info, {})
    start = next(i for i, line in enumerate(lines) if line.startswith("# def post_fork"))
    printed = ["" if line == "#" else line.removeprefix("# ") for line in lines[start:]]
    readme = (ROOT / "docs" / "your-service.md").read_text()
    block = re.search(r"```python\n# gunicorn.conf.py\n(.*?)```", readme, re.S)
    assert block, "docs/your-service.md has no gunicorn.conf.py block"
    assert block.group(1).splitlines() == printed
