#!/usr/bin/env python3
"""Build a labelled text corpus from Debian package descriptions.

Each output line is a JSON record::

    {"id": "<package name>", "text": "<short description>. <long description>",
     "label": "<Section>"}

The package name is kept only in ``id`` (it often gives the section away, e.g.
``python3-*`` or ``lib*-dev``).  Package stanzas come from ``apt-cache
dumpavail``; long descriptions come from the apt ``Translation-en`` index files
(matched by ``Description-md5``).  Those files exist only after::

    apt-get update -o Acquire::Languages=en

Run on a Debian/Ubuntu system::

    python scripts/make_debian_sample.py                      # data/debian-sample.jsonl, 3000 records
    python scripts/make_debian_sample.py --limit 0 -o /tmp/debian-all.jsonl   # full corpus

Only the standard library is used.  The parsing steps are importable
functions: ``parse_dumpavail``, ``load_translations``, ``build_records``.
"""
from __future__ import annotations

import argparse
import bz2
import collections
import glob
import gzip
import json
import lzma
import os
import random
import re
import shutil
import subprocess
import sys
from typing import Iterable, Iterator

TRANSLATION_GLOB = "/var/lib/apt/lists/*Translation-en*"
_WS = re.compile(r"\s+")


def iter_stanzas(text: str) -> Iterator[dict[str, str]]:
    """Yield deb822 stanzas as ``{field: value}``; continuation lines are kept
    verbatim (with their leading space) after a newline."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, key = {}, None
        elif line[0] in " \t":
            if key is not None:
                fields[key] += "\n" + line
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    if fields:
        yield fields


def clean_long_description(lines: Iterable[str]) -> str:
    """Strip the leading space of continuation lines, treat " ." lines as
    paragraph breaks and collapse all whitespace to single spaces."""
    paragraphs: list[str] = []
    current: list[str] = []
    for line in lines:
        line = line[1:] if line[:1] in (" ", "\t") else line
        if line.strip() == ".":
            paragraphs.append(" ".join(current))
            current = []
        else:
            current.append(line)
    paragraphs.append(" ".join(current))
    return " ".join(_WS.sub(" ", p).strip() for p in paragraphs if p.strip())


def _split_description(value: str) -> tuple[str, str]:
    """Split a Description field into (short, cleaned long)."""
    short, _, rest = value.partition("\n")
    return _WS.sub(" ", short).strip(), clean_long_description(rest.split("\n")) if rest else ""


def parse_dumpavail(text: str) -> list[dict]:
    """Parse ``apt-cache dumpavail`` output into dicts with keys
    package, section, short, long (may be ""), md5 (may be "")."""
    out = []
    for st in iter_stanzas(text):
        if "Package" not in st:
            continue
        short, long = _split_description(st.get("Description", ""))
        out.append({
            "package": st["Package"],
            "section": st.get("Section", "").rsplit("/", 1)[-1],  # non-free/libs -> libs
            "short": short,
            "long": long,
            "md5": st.get("Description-md5", ""),
        })
    return out


def read_index_file(path: str) -> str:
    """Return the text of an apt list file, whatever its compression."""
    ext = os.path.splitext(path)[1]
    if ext in (".lz4", ".zst"):  # not in the stdlib: let apt (or the CLI tool) decompress
        helper, tool = "/usr/lib/apt/apt-helper", {".lz4": "lz4", ".zst": "zstd"}[ext]
        if os.path.exists(helper):
            cmd = [helper, "cat-file", path]
        elif shutil.which(tool):
            cmd = [tool, "-dc", path]
        else:
            raise RuntimeError(f"cannot decompress {path}: need {helper} or {tool}")
        return subprocess.run(cmd, check=True, capture_output=True).stdout.decode("utf-8", "replace")
    opener = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}.get(ext, open)
    with opener(path, "rt", encoding="utf-8", errors="replace") as f:
        return f.read()


def load_translations(paths: Iterable[str]) -> dict[str, str]:
    """Map Description-md5 -> cleaned long description from Translation-en files."""
    table: dict[str, str] = {}
    for path in paths:
        for st in iter_stanzas(read_index_file(path)):
            md5, desc = st.get("Description-md5"), st.get("Description-en")
            if md5 and desc and md5 not in table:
                table[md5] = _split_description(desc)[1]
    return table


def make_text(short: str, long: str) -> str:
    """"<short>. <long>" (no doubled full stop), whitespace collapsed."""
    short, long = _WS.sub(" ", short).strip(), _WS.sub(" ", long).strip()
    if not long:
        return short
    return short + (" " if short.endswith((".", "!", "?", ":")) else ". ") + long


def build_records(packages: list[dict], translations: dict[str, str],
                  stats: dict | None = None) -> list[dict]:
    """Join packages with translations; dedupe by name (keep first), then drop
    records whose text exactly repeats an earlier record's text."""
    stats = stats if stats is not None else {}
    seen_names: set[str] = set()
    seen_texts: set[str] = set()
    records = []
    stats.update(read=len(packages), dup_names=0, dup_texts=0, no_section=0, no_translation=0)
    for p in packages:
        if p["package"] in seen_names:
            stats["dup_names"] += 1
            continue
        seen_names.add(p["package"])
        if not p["section"]:
            stats["no_section"] += 1
            continue
        long = translations.get(p["md5"])
        if long is None:
            stats["no_translation"] += 1
            long = p["long"]
        text = make_text(p["short"], long)
        if text in seen_texts:
            stats["dup_texts"] += 1
            continue
        seen_texts.add(text)
        records.append({"id": p["package"], "text": text, "label": p["section"]})
    return records


def select(records: list[dict], limit: int, seed: int, min_section_size: int = 0) -> list[dict]:
    """Drop sections smaller than min_section_size (counted on all records),
    then, if limit > 0, take a seeded sample of the name-sorted records."""
    if min_section_size > 0:
        counts = collections.Counter(r["label"] for r in records)
        records = [r for r in records if counts[r["label"]] >= min_section_size]
    records = sorted(records, key=lambda r: r["id"])
    if 0 < limit < len(records):
        records = random.Random(seed).sample(records, limit)
    return records


def dumpavail() -> str:
    if not shutil.which("apt-cache"):
        sys.exit("apt-cache not found: this script needs a Debian/Ubuntu system")
    res = subprocess.run(["apt-cache", "dumpavail"], capture_output=True)
    if res.returncode != 0:
        sys.exit(f"apt-cache dumpavail failed: {res.stderr.decode(errors='replace').strip()}")
    return res.stdout.decode("utf-8", "replace")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--out", default="data/debian-sample.jsonl", help="output JSONL path")
    ap.add_argument("--limit", type=int, default=3000, help="records to sample (0 = all)")
    ap.add_argument("--seed", type=int, default=0, help="sampling seed")
    ap.add_argument("--min-section-size", type=int, default=0,
                    help="drop sections with fewer records than this (in the full corpus)")
    ap.add_argument("--max-chars", type=int, default=0, help="truncate texts to this length (0 = no limit)")
    ap.add_argument("--translations", default=TRANSLATION_GLOB, help="glob of Translation-en files")
    args = ap.parse_args(argv)

    paths = sorted(p for p in glob.glob(args.translations) if not p.endswith(".diff"))
    if not paths:
        print(f"warning: no files match {args.translations}; run "
              "'apt-get update -o Acquire::Languages=en' to get long descriptions", file=sys.stderr)
    stats: dict = {}
    records = build_records(parse_dumpavail(dumpavail()), load_translations(paths), stats)
    total = len(records)
    records = select(records, args.limit, args.seed, args.min_section_size)
    if args.max_chars > 0:
        for r in records:
            if len(r["text"]) > args.max_chars:
                r["text"] = r["text"][: args.max_chars - 3].rstrip() + "..."

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    n_sections = len({r["label"] for r in records})
    print(f"read {stats['read']} package stanzas ({len(paths)} translation files); dropped "
          f"{stats['dup_names']} duplicate names, {stats['dup_texts']} duplicate texts, "
          f"{stats['no_section']} without section; {stats['no_translation']} without translation\n"
          f"corpus: {total} records; wrote {len(records)} records in {n_sections} sections "
          f"to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
