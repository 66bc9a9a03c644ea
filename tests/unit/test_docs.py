"""The README and docs/ hold no dead link and no command that would not run as written.

Every relative link (a file, a file's heading, a heading of the same page) must resolve; every
command in a shell block is checked the fastest way that proves it: a ``stair-stepper`` line
is parsed by that subcommand's own parser (its flags and their values, as argparse checks
them), a ``./dev`` line names one of dev's commands, a ``python bench/….py`` line's script
answers ``--help``, and a ``nix run .#X`` line names an app of the flake. Every subcommand's
``--help`` ends with an example, and the example parses.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from stair_stepper import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, fenced = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            found.add(slug(line.lstrip("#")))
    return found


def links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        found += [(page, target) for target in LINK.findall(text)]
    return found


@pytest.mark.parametrize(("page", "target"), links(), ids=[f"{p.name}:{t}" for p, t in links()])
def test_every_relative_link_resolves(page, target):
    if target.startswith(("http://", "https://", "mailto:")):
        return
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.name} links to {target}, which is not there"
    if anchor:
        assert anchor in anchors(file), f"{page.name} links to {target}: no such heading"


def shell_lines(page: Path) -> list[str]:
    """Each command of the page's ``sh`` blocks, continuation lines joined, comments cut."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" # ")[0].strip()
            if command and not command.startswith("#") and "=" not in command.split()[0]:
                commands.append(command)
    return commands


def inline_commands(page: Path) -> list[str]:
    """Commands quoted inline (``stair-stepper …``, ``./dev …``, ``python bench/….py …``)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    # pytest's skip reasons, quoted as they print (not commands)
    text = re.sub(r"<!-- sandbox-skips -->.*?<!-- /sandbox-skips -->", "", text, flags=re.S)
    text = text.replace("\n", " ")
    spans = re.findall(r"`([^`]+)`", text)
    starts = ("stair-stepper ", "./dev ", "python bench/", "python3 bench/")
    return [span.strip() for span in spans if span.startswith(starts)]


COMMANDS = [
    (page, line)
    for page in PAGES
    for line in dict.fromkeys([*shell_lines(page), *inline_commands(page)])
]


def dev_commands() -> set[str]:
    """The commands of ./dev's case statement (``    name)`` lines)."""
    return set(re.findall(r"^    ([a-z]+)\)", (ROOT / "dev").read_text(), re.M))


@pytest.mark.parametrize(
    ("page", "line"), COMMANDS, ids=[f"{p.name}:{line[:50]}" for p, line in COMMANDS]
)
def test_every_command_quoted_would_run(page, line):
    words = shlex.split(re.sub(r"\[[^\]]*\]", "", line))  # [optional] parts of a synopsis left out
    if words[0] == "stair-stepper" and len(words) == 2:  # a command named, not run
        assert words[1] in cli.COMMANDS, f"{page.name}: no command {words[1]}"
        return
    if words[0] == "./dev":
        assert len(words) == 1 or words[1] in dev_commands(), f"{page.name}: {line}"
        if len(words) > 2 and words[1] == "run":  # ./dev run takes experiment's flags
            _parses(["experiment", *words[2:]], page, line)
    elif words[0] == "stair-stepper":
        _parses(words[1:], page, line)
    elif words[0] in ("python", "python3") and words[1:2] and words[1].startswith("bench/"):
        done = subprocess.run(
            [sys.executable, str(ROOT / words[1]), "--help"], capture_output=True, text=True
        )
        assert done.returncode == 0, f"{page.name}: {line}: {done.stderr[-500:]}"
    elif words[0] == "nix" and words[1:2] == ["run"] and len(words) > 2 and "#" in words[2]:
        app = words[2].partition("#")[2]
        flake = (ROOT / "flake.nix").read_text()
        assert re.search(rf"\b{re.escape(app)}\b", flake), f"{page.name}: no app {app}"


def _parses(argv: list[str], page: Path, line: str) -> None:
    parser, _ = cli.build_parser(argv[0] if argv else None)
    try:
        parser.parse_args(argv)
    except SystemExit as exit:
        assert exit.code == 0, f"{page.name}: `{line}` does not parse"


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_subcommand_help_ends_with_an_example_that_parses(name, capsys):
    parser, _ = cli.build_parser(name)
    with pytest.raises(SystemExit) as exit:
        parser.parse_args([name, "--help"])
    assert exit.value.code == 0
    last_two = capsys.readouterr().out.rstrip("\n").splitlines()[-2:]
    assert last_two[0] == "example:", f"{name} --help does not end with an example"
    example = last_two[1].strip()
    assert shlex.split(example)[:2] == ["stair-stepper", name], example
    _parses(shlex.split(example)[1:], Path(f"{name} --help"), example)
