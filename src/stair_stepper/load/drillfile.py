"""drill's benchmark file format: parse, include, select by tags, count.

Follows drill 0.8.3–0.9.0 (github.com/fcsonline/drill) so that one set of
files drives real drill and our own driver alike:

- ``include`` paths resolve relative to the including file, and an include
  item is expanded whatever its tags (tags inside the included file count);
- tag selection is drill's ``should_skip_item``, in its order;
- numbers as drill's ``config.rs`` reads them: ``iterations`` 1 and ``rampup`` 0
  by default, ``concurrency`` the iteration count by default; a numeric string
  counts, a negative or unreadable value falls back to the default (with drill's
  warning); ``concurrency`` may not exceed ``iterations``;
- URLs starting with ``/`` join ``base``; total requests = iterations × selected items.

Only what our workload needs is supported; any other drill action is an error
that names its key rather than something silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stair_stepper.errors import UserError

try:  # libyaml parses multi-megabyte inline bodies ~20× faster
    _Loader = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML without libyaml
    _Loader = yaml.SafeLoader

UNSUPPORTED_KEYS = (
    "assign",
    "assert",
    "exec",
    "delay",
    "with_items",
    "with_items_range",
    "with_items_from_csv",
    "with_items_from_file",
    "shuffle",
    "pick",
)
ITEM_KEYS = {"name", "tags", "request", "include"}
REQUEST_KEYS = {"url", "method", "headers", "body"}


@dataclass(frozen=True)
class RequestItem:
    name: str
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    tags: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Benchmark:
    path: Path
    base: str
    concurrency: int
    iterations: int
    rampup: int
    items: tuple[RequestItem, ...]
    warnings: tuple[str, ...] = ()  # what drill would print about the file's numbers

    def absolute_url(self, item: RequestItem, base: str | None = None) -> str:
        base = (base or self.base).rstrip("/")
        return base + item.url if item.url.startswith("/") else item.url

    def rampup_delay(self, iteration: int) -> int:
        """drill's integer rule: iteration i starts after (rampup / iterations) * i seconds."""
        return (self.rampup // self.iterations) * iteration

    def total_requests(self, items: tuple[RequestItem, ...] | None = None) -> int:
        return self.iterations * len(self.items if items is None else items)


def _load_yaml(path: Path):
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"plan file {path} does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read plan file {path}: {exc}.") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"{path} is not valid YAML{where}.") from None


def _tags(raw, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(t, str | int) for t in raw):
        raise UserError(f"{where}: 'tags' must be a list of words.")
    return tuple(str(t) for t in raw)


def _request(item: dict, where: str) -> RequestItem:
    req = item["request"]
    if not isinstance(req, dict) or "url" not in req:
        raise UserError(f"{where}: 'request' needs at least a 'url'.")
    extra = set(req) - REQUEST_KEYS
    if extra:
        raise UserError(f"{where}: request key {sorted(extra)[0]!r} is not supported.")
    body = req.get("body")
    if isinstance(body, dict):
        raise UserError(
            f"{where}: 'body: {{file: …}}' is not in drill 0.8.3; inline the body as a string."
        )
    if body is not None and not isinstance(body, str):
        raise UserError(f"{where}: 'body' must be a string.")
    if body is not None and "{{" in body:
        raise UserError(f"{where}: the body contains '{{{{', which drill reads as a template.")
    headers = req.get("headers") or {}
    if not isinstance(headers, dict):
        raise UserError(f"{where}: 'headers' must be a mapping.")
    return RequestItem(
        name=str(item.get("name") or req["url"]),
        url=str(req["url"]),
        method=str(req.get("method", "GET")).upper(),
        headers={str(k): str(v) for k, v in headers.items()},
        body=body,
        tags=_tags(item.get("tags"), where),
        source=where,
    )


def _expand(items, path: Path, seen: tuple[Path, ...]) -> list[RequestItem]:
    if not isinstance(items, list):
        raise UserError(f"{path}: expected a list of plan items.")
    out: list[RequestItem] = []
    for number, item in enumerate(items, 1):
        where = f"{path}, item {number}"
        if not isinstance(item, dict):
            raise UserError(f"{where}: a plan item must be a mapping.")
        for key in UNSUPPORTED_KEYS:
            if key in item:
                raise UserError(f"{where}: drill's {key!r} is not supported by stair-stepper.")
        unknown = set(item) - ITEM_KEYS
        if unknown:
            raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r}.")
        if "include" in item:
            target = (path.parent / str(item["include"])).resolve()
            if target in seen:
                raise UserError(f"{where}: {target} includes itself.")
            out.extend(_expand(_load_yaml(target), target, (*seen, target)))
        elif "request" in item:
            out.append(_request(item, where))
        else:
            raise UserError(f"{where}: an item needs 'request' or 'include'.")
    return out


# drill's defaults and how it reads a number (src/config.rs in 0.8.3 and 0.9.0):
# NITERATIONS = 1, NRAMPUP = 0, and concurrency defaults to the iteration count.
DRILL_DEFAULT_ITERATIONS = 1
DRILL_DEFAULT_RAMPUP = 0


def _drill_number(doc: dict, key: str, default: int, warnings: list[str]) -> int:
    """drill's ``read_i64_configuration``: an integer, or a string that parses as one; a
    negative value ("Invalid negative … value!") or anything else falls back to the default."""
    raw = doc.get(key)
    value: int | None = None
    if isinstance(raw, int) and not isinstance(raw, bool):
        value = raw
    elif isinstance(raw, str):
        try:
            value = int(raw) if raw.lstrip("+-").isdigit() else None
        except ValueError:
            value = None
        if value is None:
            warnings.append(f"Invalid {key} value! (drill uses {default})")
    if value is None:
        return default
    if value < 0:
        warnings.append(f"Invalid negative {key} value! (drill uses {default})")
        return default
    return value


def read_benchmark(
    path: str | Path,
    *,
    iterations: int | None = None,
    concurrency: int | None = None,
    base: str | None = None,
) -> Benchmark:
    """Read a benchmark file with its includes; flags override the file's numbers."""
    path = Path(path).resolve()
    doc = _load_yaml(path)
    if not isinstance(doc, dict) or "plan" not in doc:
        raise UserError(f"{path} has no 'plan': is it a drill benchmark file?")
    if iterations is not None:
        doc["iterations"] = iterations
    if concurrency is not None:
        doc["concurrency"] = concurrency
    warnings: list[str] = []
    iterations_ = _drill_number(doc, "iterations", DRILL_DEFAULT_ITERATIONS, warnings)
    bench = Benchmark(
        path=path,
        base=str(base or doc.get("base") or ""),
        concurrency=_drill_number(doc, "concurrency", iterations_, warnings),
        iterations=iterations_,
        rampup=_drill_number(doc, "rampup", DRILL_DEFAULT_RAMPUP, warnings),
        items=tuple(_expand(doc["plan"], path, (path,))),
        warnings=tuple(warnings),
    )
    # Where drill would run nothing or panic ("Worker threads cannot be set to 0"), refuse.
    for key in ("iterations", "concurrency"):
        if getattr(bench, key) == 0:
            raise UserError(f"{path}: '{key}' is 0; drill would run nothing or panic.")
    if bench.concurrency > bench.iterations:
        raise UserError(
            f"concurrency ({bench.concurrency}) is larger than iterations ({bench.iterations}); "
            "drill refuses that too."
        )
    if not bench.base and any(i.url.startswith("/") for i in bench.items):
        raise UserError(f"{path}: relative URLs need a 'base' (or --base).")
    return bench


def parse_tag_list(text: str | None) -> frozenset[str] | None:
    if text is None:
        return None
    return frozenset(t.strip() for t in text.split(",") if t.strip())


def should_skip(item_tags: tuple[str, ...], tags, skip_tags) -> bool:
    """drill's rule for one item, in drill's order."""
    have = set(item_tags)
    if not have:
        return tags is not None
    if skip_tags and have & skip_tags:
        return True
    if tags is not None:
        if "never" in have and "never" not in tags:
            return True
        if have & tags:
            return False
    if "always" in have:
        return False
    if "never" in have:
        return True
    return tags is not None


def select(
    bench: Benchmark, tags: str | None = None, skip_tags: str | None = None
) -> tuple[RequestItem, ...]:
    """The items one iteration runs, in plan order."""
    wanted, skipped = parse_tag_list(tags), parse_tag_list(skip_tags)
    if wanted is not None and skipped is not None and wanted & skipped:
        both = ", ".join(sorted(wanted & skipped))
        raise UserError(f"--tags and --skip-tags both name {both}; drill refuses that too.")
    chosen = tuple(i for i in bench.items if not should_skip(i.tags, wanted, skipped))
    if not chosen:
        raise UserError("no plan item matches these tags.")
    return chosen
