"""Deterministic request bodies: fake person records, sized to a target.

The committed ``plans/*.yml`` are this module's default output (a test checks
it), so anyone can regenerate them or make other sizes with
``stair-stepper plans generate``. Bodies are ASCII, vary from record to record
(so no allocator gets an easy ride from identical strings), never contain
``{{`` (drill would treat it as a template) and are inlined in the YAML,
because drill 0.8.3 has no ``body: {file: …}``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from stair_stepper.errors import UserError
from stair_stepper.validate import byte_size

DEFAULT_SEED = 20240601
#: tag -> target body size in bytes (the whole JSON body, as sent)
DEFAULT_SIZES: dict[str, int] = {
    "tiny": 31_000,
    "small": 306_000,
    "medium": 605_000,
    "large": 1_970_000,
}

_FIRST = (
    "Ada Alan Grace Linus Barbara Dennis Margaret Ken Radia Edsger Frances Donald Hedy John "
    "Katherine Niklaus Sophie Tim Vint Whitfield Annie Bjarne Carol Guido Jean Leslie Mary "
    "Rob Shafi Yukihiro"
).split()
_LAST = (
    "Lovelace Turing Hopper Torvalds Liskov Ritchie Hamilton Thompson Perlman Dijkstra Allen "
    "Knuth Lamarr Backus Johnson Wirth Wilson Berners-Lee Cerf Diffie Easley Stroustrup Shaw "
    "Rossum Sammet Lamport Keller Pike Goldwasser Matsumoto"
).split()
_COMPANIES = (
    "ZILLACON QUONATA ISOSURE ENERSOL GEEKOLOGY PORTALIS COMVEYOR TELEQUIET MAGNEMO "
    "ORBAXTER SPLINX NETPLAX KIDGREASE ZENTIME ACCUPHARM DATAGEN"
).split()
_STREETS = "Main Oak Pine Maple Cedar Elm Lake Hill Sunset River Park Willow".split()
_CITIES = "Springfield Riverside Fairview Madison Georgetown Arlington Salem Clinton".split()
_STATES = "Ohio Texas Utah Maine Iowa Oregon Nevada Vermont Kansas Alaska".split()
_WORDS = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt "
    "ut labore et dolore magna aliqua enim ad minim veniam quis nostrud exercitation ullamco "
    "laboris nisi aliquip ex ea commodo consequat duis aute irure in reprehenderit voluptate "
    "velit esse cillum fugiat nulla pariatur excepteur sint occaecat cupidatat non proident"
).split()
_EYES = ("blue", "brown", "green", "grey", "hazel")
_FRUIT = ("apple", "banana", "strawberry", "mango", "cherry", "kiwi")


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(_WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def person(rng: random.Random, index: int) -> dict:
    """One record shaped like a typical generated test person."""
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    company = rng.choice(_COMPANIES)
    return {
        "_id": _hex(rng, 24),
        "index": index,
        "guid": f"{_hex(rng, 8)}-{_hex(rng, 4)}-4{_hex(rng, 3)}-{_hex(rng, 4)}-{_hex(rng, 12)}",
        "isActive": rng.random() < 0.5,
        "balance": f"${rng.randint(1000, 3999)},{rng.randint(0, 999):03d}.{rng.randint(0, 99):02d}",
        "picture": f"http://placehold.it/{rng.choice((32, 48, 64))}x{rng.choice((32, 48, 64))}",
        "age": rng.randint(18, 80),
        "eyeColor": rng.choice(_EYES),
        "name": f"{first} {last}",
        "gender": rng.choice(("female", "male")),
        "company": company,
        "email": f"{first.lower()}.{last.lower()}@{company.lower()}.com",
        "phone": f"+1 ({rng.randint(800, 999)}) {rng.randint(100, 999)}-{rng.randint(1000, 9999)}",
        "address": f"{rng.randint(100, 999)} {rng.choice(_STREETS)} Street, "
        f"{rng.choice(_CITIES)}, {rng.choice(_STATES)}, {rng.randint(1000, 9999)}",
        "about": _sentence(rng, rng.randint(30, 60)),
        "registered": f"20{rng.randint(14, 23):02d}-{rng.randint(1, 12):02d}-"
        f"{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:"
        f"{rng.randint(0, 59):02d} -0{rng.randint(1, 9)}:00",
        "latitude": round(rng.uniform(-90, 90), 6),
        "longitude": round(rng.uniform(-180, 180), 6),
        "tags": [rng.choice(_WORDS) for _ in range(7)],
        "friends": [
            {"id": i, "name": f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"} for i in range(3)
        ],
        "greeting": f"Hello, {first} {last}! You have {rng.randint(1, 10)} unread messages.",
        "favoriteFruit": rng.choice(_FRUIT),
    }


def _encode(records: list[dict]) -> str:
    return json.dumps(
        {"eventType": "mem-test", "payload": {"body": records}}, separators=(",", ":")
    )


def make_body(target_bytes: int, seed: int = DEFAULT_SEED) -> str:
    """A compact JSON body of (nearly exactly) ``target_bytes`` bytes.

    Records are added while the body stays under the target; the last
    record's ``about`` text is then padded with words to land on the target
    to within a few bytes.
    """
    if target_bytes < 1000:
        raise UserError(f"a body size must be at least 1000 bytes, got {target_bytes}.")
    rng = random.Random(seed)
    records: list[dict] = []
    size = len(_encode(records))
    while True:
        record = person(rng, len(records))
        grown = size + len(json.dumps(record, separators=(",", ":"))) + (1 if records else 0)
        if grown > target_bytes:
            break
        records.append(record)
        size = grown
    if not records:
        records.append(person(rng, 0))
    pad_rng = random.Random(seed + 1)
    last = records[-1]
    while True:
        word = " " + pad_rng.choice(_WORDS)
        if len(_encode(records)) + len(word) > target_bytes:
            break
        last["about"] += word
    return _encode(records)


def plan_yaml(tag: str, body: str) -> str:
    """One drill plan file: a list with one request item, the body inline."""
    if "{{" in body:  # cannot happen with our generator; guards hand-made sizes
        raise UserError("a body must not contain '{{' (drill reads it as a template).")
    quoted = "'" + body.replace("'", "''") + "'"
    return (
        f"# Generated by `stair-stepper plans generate`; body: {len(body)} bytes.\n"
        f"- name: {tag}\n"
        f"  tags: [{tag}]\n"
        f"  request:\n"
        f"    url: /widgets\n"
        f"    method: POST\n"
        f"    headers:\n"
        f"      Content-Type: application/json\n"
        f"    body: {quoted}\n"
    )


def parse_sizes(specs: list[str] | None) -> dict[str, int]:
    """``--size tag=bytes`` flags on top of the defaults (``tag=`` alone is not allowed)."""
    sizes = dict(DEFAULT_SIZES)
    for spec in specs or []:
        tag, sep, raw = spec.partition("=")
        try:
            value = byte_size("--size", raw) if sep and tag.strip() else None
        except UserError:
            value = None
        if value is None:
            raise UserError(f"--size wants TAG=BYTES (at least 1000, e.g. huge=5mb), got {spec!r}.")
        sizes[tag.strip()] = value
    return sizes


def generate(out: Path, sizes: dict[str, int], seed: int | None = None) -> list[Path]:
    """Write one plan file per tag into ``out``; returns the paths written."""
    seed = DEFAULT_SEED if seed is None else seed
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {out}: {exc.strerror}.") from None
    written = []
    for tag, target in sizes.items():
        path = out / f"{tag}.yml"
        path.write_text(plan_yaml(tag, make_body(target, seed)), encoding="ascii")
        written.append(path)
    return written


def add_arguments(p) -> None:
    """``plans generate``'s flags."""
    from stair_stepper.validate import flag, non_negative_int

    actions = p.add_subparsers(dest="plans_command", required=True, metavar="ACTION")
    g = actions.add_parser("generate", help="write plans/<tag>.yml with deterministic bodies")
    g.add_argument("--out", default="plans", help="folder to write (default plans/)")
    g.add_argument("--seed", type=flag(non_negative_int), help="random seed (default: fixed)")
    g.add_argument(
        "--size",
        action="append",
        metavar="TAG=BYTES",
        help="add or resize a tag, e.g. huge=5mb (repeatable)",
    )
    g.add_argument("--only", metavar="TAGS", help="write only these tags (comma-separated)")


def run_args(args) -> int:
    sizes = parse_sizes(args.size)
    if args.only:
        sizes = {tag: n for tag, n in sizes.items() if tag in args.only.split(",")}
    for path in generate(Path(args.out), sizes, args.seed):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0
