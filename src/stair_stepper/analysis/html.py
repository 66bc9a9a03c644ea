"""``report.html``: one self-contained page per result folder, for a design review.

The same words as ``summary.md`` (rendered from it: one text, two forms), with the verdict
first and a copy button on every environment block, and the folder's figures inlined as SVG.
Nothing is fetched: no script, style sheet, font or image from anywhere else, so the file can
be mailed, attached or opened offline. Only a renderer: it reads what the analysis wrote.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from stair_stepper.analysis.verdict import CAVEATS

#: the figures of a folder (analysis/figures*.py), in the order the page shows any that no
#: mark in the summary placed (a stem ending in "-" names a family: sweep-NAME)
FIGURES = ("memory", "layers", "floors", "floors-runs", "tradeoff", "arenas", "memory-rss")

#: summary.md says where its figures belong with an HTML comment (invisible where Markdown
#: is rendered); the page puts the figures there
MARK = re.compile(r"^<!-- figures: ([\w\- ]+) -->$", re.M)


def figures_mark(*stems: str) -> str:
    """The line of summary.md after which report.html shows these figures."""
    return f"<!-- figures: {' '.join(stems)} -->"


STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;max-width:1240px;margin:2em auto;
padding:0 1em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #ccc;padding:.25em .55em;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f3f3f3}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.7em;overflow-x:auto;position:relative}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.92em}
.copy{position:absolute;top:.4em;right:.4em;font-size:.8em;cursor:pointer}
#verdict{border:2px solid #2a6;padding:.2em 1em 1em;border-radius:6px;background:#f7fcf8}
figure{margin:1.5em 0}figure svg{max-width:100%;height:auto}
.top{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1.2em;align-items:start}
.top figure{margin:0}#verdict{font-size:.92em}
@media (max-width:900px){.top{grid-template-columns:1fr}}
"""

SCRIPT = """
document.querySelectorAll('button.copy').forEach(function (button) {
  button.addEventListener('click', function () {
    var text = button.parentElement.querySelector('code').innerText;
    function done() { button.textContent = 'Copied'; button.dataset.copied = text; }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(); });
    } else { fallback(); }
    function fallback() {
      var area = document.createElement('textarea');
      area.value = text; document.body.appendChild(area); area.select();
      try { document.execCommand('copy'); done(); } finally { area.remove(); }
    }
  });
});
"""


def _inline(text: str) -> str:
    """``code``, **bold** and *emphasis* within a line (everything else escaped)."""
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for part in parts:
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        escaped = html.escape(part)
        escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
        escaped = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", escaped)
        out.append(escaped)
    return "".join(out)


def _table(rows: list[str]) -> str:
    cells = [[c.strip() for c in row.strip().strip("|").split("|")] for row in rows]
    head, body = cells[0], [r for r in cells[2:]]
    text = "<table><thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in head)
    text += "</tr></thead><tbody>"
    for row in body:
        text += "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>"
    return text + "</tbody></table>"


def markdown_to_html(text: str) -> str:
    """The subset of Markdown our summaries use: headings, paragraphs, bullets, tables and
    fenced code (a ``sh`` block gets a copy button: it is what a team pastes)."""
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            language = line[3:].strip()
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            code = html.escape("\n".join(lines[i + 1 : j]))
            button = '<button class="copy" type="button">Copy</button>' if language == "sh" else ""
            out.append(f"<pre>{button}<code>{code}</code></pre>")
            i = j + 1
        elif MARK.match(line):
            out.append(line)  # render() puts the figures here
            i += 1
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{_inline(line[level:].strip())}</h{level}>")
            i += 1
        elif line.startswith("|"):
            j = i
            while j < len(lines) and lines[j].startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                item = lines[i][2:]
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip():
                    item += " " + lines[i].strip()
                    i += 1
                items.append(f"<li>{_inline(item)}</li>")
            out.append("<ul>" + "".join(items) + "</ul>")
        elif not line.strip():
            i += 1
        else:
            paragraph = [line]
            i += 1
            while (
                i < len(lines)
                and lines[i].strip()
                and not lines[i].startswith(("#", "|", "- ", "```", "<!-- figures:"))
            ):
                paragraph.append(lines[i])
                i += 1
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    return "\n".join(out)


def _verdict_first(body: str, beside: str = "") -> str:
    """The verdict (its heading to its caveats paragraph), wrapped to stand out, right under
    the title, with ``beside`` (the memory figure) next to it: both on the first screen."""
    caveats = re.escape(f"<p>{html.escape(CAVEATS)}")
    found = re.search(rf"<h2>Verdict</h2>.*?(?:{caveats}.*?</p>|(?=<h2>)|\Z)", body, re.S)
    if not found:
        return body
    verdict = f'<section id="verdict">{found.group(0)}</section>'
    top = f'<div class="top">{verdict}\n{beside}</div>' if beside else verdict
    rest = body[: found.start()] + body[found.end() :]
    title_end = rest.find("</h1>")
    at = title_end + len("</h1>") if title_end >= 0 else 0
    return rest[:at] + "\n" + top + "\n" + rest[at:]


def _svgs(folder: Path, stem: str) -> list[Path]:
    pattern = f"{stem}*.svg" if stem.endswith("-") else f"*{stem}.svg"
    return sorted(folder.glob(pattern))


def _figures(paths: list[Path]) -> str:
    figures = []
    for path in paths:
        svg = path.read_text(errors="replace")
        svg = svg[svg.find("<svg") :]  # no XML declaration or DOCTYPE inside HTML
        figures.append(
            f'<figure data-file="{html.escape(path.name)}">{svg}'
            f"<figcaption>{html.escape(path.name)}</figcaption></figure>"
        )
    return "\n".join(figures)


def render(summary_md: str, folder: Path, title: str) -> str:
    """The page: the verdict first with the memory figure beside it (both on the first
    screen), then the rest of summary.md's text (floors, price, the container, layers and
    diagnosis, the processes, the settings and provenance), each figure where the summary
    marks it; a figure no mark placed follows at the end, each once."""
    shown: set[Path] = set()

    def place(stems: list[str]) -> str:
        paths = [p for stem in stems for p in _svgs(folder, stem) if p not in shown]
        shown.update(paths)
        return _figures(list(dict.fromkeys(paths)))

    memory = place(["memory"])
    body = MARK.sub(lambda m: place(m.group(1).split()), markdown_to_html(summary_md))
    body = _verdict_first(body, memory)
    rest = place([*FIGURES, *(p.stem for p in sorted(folder.glob("*.svg")))])
    if rest:
        body += "\n<h2>More figures</h2>\n" + rest
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title>"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{STYLE}</style></head><body>\n{body}\n<script>{SCRIPT}</script></body></html>\n"
    )


def write(folder: Path, summary_md: str, title: str) -> Path:
    path = Path(folder) / "report.html"
    path.write_text(render(summary_md, Path(folder), title), encoding="utf-8")
    return path
