"""Readers for corpora and query files, with validation and line numbers in every error.

Formats (chosen by extension, or sniffed for stdin and unknown extensions):
- JSON lines (.jsonl, .ndjson, .json): one object per line with `id`, `text` or `vector`, optional
  `label` (a string) or `labels` (a list); every other field is the item's payload.
- CSV (.csv) and TSV (.tsv) with a header row: a `text` column, optional `id` and `label`;
  other columns are payload.
- plain text (.txt and anything else): one document per non-blank line, id = line number.
- a directory of .txt files: id = relative path, label = the first sub-folder (20-Newsgroups layout).
- .npy (a 2-D array of vectors, id = row number) and .npz (`vectors`, optional `ids`, `labels`).

Records stream in batches, so a corpus never has to fit in memory twice.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from .errors import CorpusError

RESERVED = ("id", "text", "vector", "label", "labels")
MAX_INT_DIGITS = 19      # JSON integers: at most 19 digits (an id or a payload number; int64 holds them)
MAX_DEPTH = 32           # JSON nesting of a record (objects and lists inside one another)
FLOAT32_MAX = float(np.finfo(np.float32).max)
_NUMBER_TYPES = {int, float}  # bool is neither: type(True) is bool
JSONL_EXT = {".jsonl", ".ndjson", ".json"}


@dataclass
class Batch:
    """A run of records of one kind: texts or vectors, never both."""

    ids: list[str]
    texts: list[str] | None = None
    vectors: np.ndarray | None = None  # (n, dim) float32
    labels: list[tuple[str, ...]] = field(default_factory=list)
    payloads: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kind(self) -> str:
        return "vector" if self.vectors is not None else "text"

    @staticmethod
    def concat(batches: list["Batch"]) -> "Batch":
        """Join batches of the same kind into one."""
        if not batches:
            return Batch(ids=[], texts=[])
        out = Batch(ids=[], labels=[], payloads=[])
        for b in batches:
            out.ids += b.ids
            out.labels += b.labels
            out.payloads += b.payloads
        if batches[0].vectors is not None:
            out.vectors = np.concatenate([b.vectors for b in batches], axis=0)
        else:
            out.texts = [t for b in batches for t in b.texts]
        return out


def detect_format(path: str) -> str:
    """The reader for a path: jsonl, csv, tsv, lines, dir, npy, npz (stdin is sniffed later)."""
    if path == "-":
        return "stdin"
    p = Path(path)
    if p.is_dir():
        return "dir"
    ext = p.suffix.lower()
    if ext in JSONL_EXT:
        return "jsonl"
    if ext in (".csv", ".tsv", ".npy", ".npz"):
        return ext[1:]
    return "sniff"


class Corpus:
    """A corpus or query file on disk (or stdin), read in batches of `batch_size` records."""

    def __init__(self, path: str | os.PathLike, batch_size: int = 8192):
        self.path = str(path)
        self.batch_size = batch_size
        self.format = detect_format(self.path)
        if self.format != "stdin" and not Path(self.path).exists():
            raise CorpusError("no such file or directory", self.path)
        self._stdin_lines: list[str] | None = None
        self._validated: tuple[int, tuple[int, int] | None] | None = None  # (record count, _stamp())
        self._first: Batch | None = None  # the first batch of the last full read
        self._chars = 0  # characters of a text file read so far by the current pass (for progress)
        self._rows = None  # an array file's row count, known from its header once a pass has begun

    def batches(self) -> Iterator[Batch]:
        """Yield validated batches; raise CorpusError (with the line) at the first bad record."""
        fmt = self.format
        if fmt in ("npy", "npz"):
            yield from self._array_batches()
            return
        if fmt == "dir":
            yield from _chunk(self._dir_records(), self.batch_size, self.path)
            return
        if fmt == "stdin":
            if self._stdin_lines is None:  # stdin can only be read once; keep it for a second pass
                # split as a file opened with newline="" is: only \n, \r, \r\n end a line (str.splitlines
                # would also split inside JSON strings holding U+2028, U+0085, ...)
                self._stdin_lines = io.StringIO(sys.stdin.read(), newline="").readlines()
            lines: Iterable[str] = self._stdin_lines
            fmt = _sniff(self._stdin_lines)
            yield from _chunk(self._line_records(fmt, lines), self.batch_size, self.path)
            return
        try:
            # utf-8-sig: UTF-8 that drops a leading byte-order mark (as Excel writes CSV), or "\ufefftext"
            with open(self.path, encoding="utf-8-sig", newline="") as fh:
                if fmt == "sniff":
                    head = fh.read(4096)
                    fh.seek(0)
                    fmt = _sniff(head.splitlines())
                self._chars = 0
                yield from _chunk(self._line_records(fmt, self._counted(fh)), self.batch_size, self.path)
        except UnicodeDecodeError as e:
            raise CorpusError(f"not UTF-8 text ({e.reason} at byte {e.start}); convert the file to UTF-8",
                              self.path) from None

    def _counted(self, lines: Iterable[str]) -> Iterator[str]:
        for line in lines:
            self._chars += len(line)
            yield line

    def read_all(self) -> Batch:
        """The whole corpus as one batch."""
        return Batch.concat(list(self.batches()))

    def validate(self) -> int:
        """Read the corpus once, raising at the first bad record; return the record count. A corpus that
        this object has read to its end already, unchanged since (size and modification time), is not
        read again."""
        if self._validated is not None and self._validated[1] == self._stamp():
            return self._validated[0]
        stamp, total = self._stamp(), 0
        if self.format in ("npy", "npz"):
            total = sum(self._array_batches(check_only=True))
        else:
            for batch in self.batches():
                self._first = batch if total == 0 else self._first
                total += len(batch)
        self._validated = (total, stamp)
        return total

    def first_batch(self) -> Batch:
        """The corpus's first batch (kept from the last full read, if the corpus is unchanged since)."""
        if self._validated is not None and self._validated[1] == self._stamp() and self._first is not None:
            return self._first
        batches = self.batches()
        try:
            return next(batches)
        finally:
            batches.close()

    def sample(self, size: int, seed: int = 0, progress: bool = False) -> tuple[Batch, int]:
        """(A seeded uniform sample of `size` records, in corpus order; the corpus's record count), from
        one pass that validates every record and keeps at most `size` in memory (reservoir sampling).
        `size` 0, or at least the record count: every record."""
        if size < 0:
            raise CorpusError(f"the sample size must be 0 (every record) or more, got {size}", self.path)
        stamp = self._stamp()
        reservoir = _Reservoir(size, seed)
        # a text file's bar counts its size (characters read against bytes: near enough for the ETA of
        # mostly-ASCII text) and shows the records beside; an array's counts records against the row count
        # of its header; stdin and directories count records
        by_size = stamp is not None and self.format not in ("npy", "npz", "stdin")
        bar = _progress(progress, "reading", total=stamp[0] if by_size else None, unit="B" if by_size else " records")
        for batch in self.batches():
            self._first = batch if reservoir.seen == 0 else self._first
            reservoir.add(batch)
            if bar.total is None and self._rows is not None:  # an array's header tells its row count
                bar.total = self._rows
            if by_size:
                bar.update(min(self._chars, bar.total) - bar.n)
                bar.set_postfix_str(f"{reservoir.seen:,} records", refresh=False)
            else:
                bar.update(len(batch))
        if by_size:
            bar.update(bar.total - bar.n)
        bar.close()
        self._validated = (reservoir.seen, stamp)
        return reservoir.batch(), reservoir.seen

    def _stamp(self) -> tuple[int, int] | None:
        """What tells that the corpus changed: a file's (size, mtime); None where that cannot be told
        (a directory; stdin, which is kept in memory, is stamped by its line count)."""
        if self.format == "stdin":
            return (len(self._stdin_lines), 0) if self._stdin_lines is not None else None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return None if self.format == "dir" else (st.st_size, st.st_mtime_ns)

    # --- line-based formats -------------------------------------------------------------
    def _line_records(self, fmt: str, lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
        if fmt == "jsonl":
            yield from self._jsonl(lines)
        elif fmt in ("csv", "tsv"):
            yield from self._csv(lines, "," if fmt == "csv" else "\t")
        else:
            for lineno, line in enumerate(lines, 1):
                text = line.rstrip("\r\n")
                if text.strip():
                    yield lineno, {"id": str(lineno), "text": text}

    def _jsonl(self, lines: Iterable[str]) -> Iterator[tuple[int, dict]]:
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if line.count("[") + line.count("{") > MAX_DEPTH and _nesting(line) > MAX_DEPTH:
                # refused before parsing: the parser's RecursionError can leave noise on stderr
                raise CorpusError(f"JSON nested too deeply (at most {MAX_DEPTH} levels)", self.path, lineno)
            try:
                obj = json.loads(line, parse_int=_bounded_int)
            except json.JSONDecodeError as e:
                msg = e.msg.removesuffix(" at")  # e.g. "Invalid control character at": no "at at column"
                raise CorpusError(f"invalid JSON ({msg} at column {e.colno})", self.path, lineno) from None
            except _TooLong as e:
                raise CorpusError(f"a number of {e.args[0]:,} digits; integers may have at most {MAX_INT_DIGITS} "
                                  f"(write a long id as a string)", self.path, lineno) from None
            except RecursionError:
                raise CorpusError(f"JSON nested too deeply (at most {MAX_DEPTH} levels)", self.path, lineno) from None
            if not isinstance(obj, dict):
                raise CorpusError(f"expected a JSON object, got {type(obj).__name__}", self.path, lineno)
            if "\\u" in line or line.count("[") + line.count("{") > MAX_DEPTH:
                problem = _json_problem(obj)  # escapes may hide lone surrogates; brackets, deep nesting
                if problem:
                    raise CorpusError(problem, self.path, lineno)
            if "id" not in obj:
                obj["id"] = str(lineno)
            yield lineno, obj

    def _csv(self, lines: Iterable[str], delimiter: str) -> Iterator[tuple[int, dict]]:
        reader = csv.DictReader(lines, delimiter=delimiter)
        try:
            header = reader.fieldnames
        except csv.Error as e:
            raise CorpusError(f"bad header row ({e})", self.path, 1) from None
        if not header:
            return
        if "text" not in header:
            raise CorpusError(f"the header has no 'text' column (columns: {', '.join(header)})", self.path, 1)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as e:
                raise CorpusError(f"bad CSV ({e})", self.path, reader.line_num) from None
            if None in row:
                raise CorpusError(f"{len(header) + len(row[None])} fields, the header has {len(header)}",
                                  self.path, reader.line_num)
            if row.get("id") in (None, ""):
                row["id"] = str(reader.line_num)
            if row.get("label") == "":
                del row["label"]
            yield reader.line_num, dict(row)

    # --- directory of .txt files --------------------------------------------------------
    def _dir_records(self) -> Iterator[tuple[int, dict]]:
        root = Path(self.path)
        files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in (".txt", ""))
        for n, p in enumerate(files, 1):
            rel = p.relative_to(root)
            rec = {"id": rel.as_posix(), "text": p.read_text(encoding="utf-8", errors="replace")}
            if len(rel.parts) > 1:
                rec["label"] = rel.parts[0]
            yield n, rec

    # --- arrays -------------------------------------------------------------------------
    def _array_batches(self, check_only: bool = False) -> Iterator[Batch | int]:
        """The batches of an .npy/.npz file; with `check_only`, only each batch's size once its rows are
        checked (no ids, labels or payloads built: the validating pass)."""
        ids, labels = None, None
        try:
            if self.format == "npy":
                vectors = _NpyRows(self.path)
            else:
                data = np.load(self.path, allow_pickle=False)
                keys = list(data.keys())
                vkey = next((k for k in ("vectors", "X", "x", "data", "embeddings") if k in keys),
                            keys[0] if len(keys) == 1 else None)
                if vkey is None:
                    raise CorpusError(f"no 'vectors' array (arrays: {', '.join(keys)})", self.path)
                vectors = data[vkey]
                ids = data["ids"] if "ids" in keys else None
                labels = data["labels"] if "labels" in keys else None
            for name, arr in (("ids", ids), ("labels", labels)):
                if arr is not None and arr.ndim != 1:
                    raise CorpusError(f"'{name}' must be a 1-D array, got shape {arr.shape}", self.path)
        except CorpusError:
            raise
        except Exception as e:  # damaged bytes reach numpy's zip, zlib and header parsers, which raise anything
            reason = str(e) or type(e).__name__
            raise CorpusError(f"cannot read the array file ({reason}); is it a complete .npy/.npz file?",
                              self.path) from None
        if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
            raise CorpusError(f"expected a non-empty 2-D array of vectors, got shape {vectors.shape}", self.path)
        if not np.issubdtype(vectors.dtype, np.number):
            raise CorpusError(f"vectors must be numbers, got dtype {vectors.dtype}", self.path)
        n = self._rows = vectors.shape[0]
        for name, arr in (("ids", ids), ("labels", labels)):
            if arr is not None and len(arr) != n:
                raise CorpusError(f"'{name}' has {len(arr)} entries but there are {n} vectors", self.path)
        if ids is not None and len(set(ids.tolist())) != n:
            raise CorpusError("'ids' has duplicate entries", self.path)
        for start in range(0, n, self.batch_size):
            stop = min(n, start + self.batch_size)
            chunk = vectors[start:stop]  # the checking pass reads it in place; a batch gets its own copy
            v = np.asarray(chunk, dtype=np.float32) if check_only else np.array(chunk, dtype=np.float32)
            bad = ~np.isfinite(v).all(axis=1)
            if bad.any():
                row = start + int(np.argmax(bad))
                raise CorpusError(f"row {row}: vector contains NaN or infinite values", self.path)
            if check_only:
                yield stop - start
                continue
            b_ids = [str(i) for i in (ids[start:stop].tolist() if ids is not None else range(start, stop))]
            b_labels = ([(str(x),) for x in labels[start:stop].tolist()] if labels is not None
                        else [()] * (stop - start))
            yield Batch(ids=b_ids, vectors=v, labels=b_labels, payloads=[{} for _ in b_ids])


class _NpyRows:
    """The rows of a 2-D .npy file, read a slice at a time with plain reads: a pass over it holds one
    batch in memory (a memory map would keep every page it touched resident, as the file's size in RSS).
    Fortran-ordered files are memory-mapped instead."""

    def __init__(self, path: str):
        self.path = path
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            shape, fortran, dtype = (np.lib.format.read_array_header_1_0(fh) if version == (1, 0)
                                     else np.lib.format.read_array_header_2_0(fh))
            self.offset = fh.tell()
            size = os.fstat(fh.fileno()).st_size
        if dtype.hasobject:
            raise ValueError("the array holds Python objects, not numbers")
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)
        self._map = np.load(path, mmap_mode="r", allow_pickle=False) if fortran else None
        if not fortran and size < self.offset + int(np.prod(shape)) * dtype.itemsize:
            raise ValueError("the file is shorter than its header says")

    def __getitem__(self, rows: slice) -> np.ndarray:
        """Rows `start:stop`, mapped for this read alone (read-only; unmapped once the caller drops them,
        so what a pass touched does not stay resident)."""
        if self._map is not None:
            return np.array(self._map[rows])
        start, stop, _ = rows.indices(self.shape[0])
        width = int(np.prod(self.shape[1:]))
        if stop <= start:
            return np.zeros((0,) + tuple(self.shape[1:]), self.dtype)
        return np.memmap(self.path, dtype=self.dtype, mode="r", shape=(stop - start,) + tuple(self.shape[1:]),
                         offset=self.offset + start * width * self.dtype.itemsize)


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def _nesting(line: str) -> int:
    """How deeply a JSON text nests lists and objects (its strings skipped), without parsing it."""
    depth = deepest = 0
    for ch in _BRACKETS.findall(_JSON_STRING.sub("", line)):
        depth += 1 if ch in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


class _TooLong(Exception):
    """A JSON integer with more digits than MAX_INT_DIGITS (args[0]: how many)."""


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _TooLong(digits)
    return int(text)


def _json_problem(obj, depth: int = 0) -> str | None:
    """What is wrong with a parsed JSON value that the parser lets through: nesting beyond MAX_DEPTH, or a
    string (or key) holding a lone surrogate, which is not valid Unicode and no store can keep."""
    if depth > MAX_DEPTH:
        return f"JSON nested too deeply (at most {MAX_DEPTH} levels)"
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError as e:
            return (f"the string {obj[:40]!r} holds a lone surrogate ({e.object[e.start]!r}), which is not valid "
                    f"Unicode; fix the \\u escape")
        return None
    if isinstance(obj, list) and set(map(type, obj)) <= _NUMBER_TYPES:
        return None  # a vector: numbers hold no strings (and recursing into each costs 0.5 ms a 784-d row)
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        problem = _json_problem(key, depth + 1) if isinstance(key, str) else None
        problem = problem or _json_problem(value, depth + 1)
        if problem:
            return problem
    return None


class _Builder:
    """Turns raw records into validated batches, checking kind, width, values and unique ids."""

    def __init__(self, path: str):
        self.path = path
        self.kind: str | None = None
        self.dim: int | None = None
        self.first_line = 0
        self.seen: dict[str, int] = {}
        self.reset()

    def reset(self) -> None:
        self.ids: list[str] = []
        self.texts: list[str] = []
        self.vectors: list[list[float]] = []
        self.labels: list[tuple[str, ...]] = []
        self.payloads: list[dict] = []

    def add(self, lineno: int, rec: dict) -> None:
        err = lambda msg: CorpusError(msg, self.path, lineno)  # noqa: E731
        kind = "vector" if "vector" in rec else "text" if "text" in rec else None
        if kind is None:
            fields = ", ".join(sorted(rec)) or "none"
            raise err(f"record has neither a 'text' nor a 'vector' field (fields: {fields})")
        if self.kind is None:
            self.kind, self.first_line = kind, lineno
        elif kind != self.kind:
            raise err(f"record has a '{kind}' but the records before it (from line {self.first_line}) "
                      f"have a '{self.kind}'; a corpus holds one kind")
        rid = rec["id"]
        if not isinstance(rid, (str, int)) or isinstance(rid, bool):
            raise err(f"'id' must be a string or an integer, got {json.dumps(rid)}")
        rid = str(rid)
        if "\x00" in rid:
            raise err(f"'id' {rid[:40]!r} holds a NUL character (\\u0000), which PostgreSQL cannot store; "
                      f"remove it")
        if rid in self.seen:
            raise err(f"duplicate id {rid!r} (first seen on line {self.seen[rid]})")
        self.seen[rid] = lineno
        if kind == "text":
            text = rec["text"]
            if not isinstance(text, str):
                raise err(f"'text' must be a string, got {type(text).__name__}")
            self.texts.append(text)
        else:
            self.vectors.append(self._vector(rec["vector"], err))
        self.ids.append(rid)
        self.labels.append(self._labels(rec, err))
        self.payloads.append({k: v for k, v in rec.items() if k not in RESERVED})

    def _vector(self, vec, err) -> list[float]:
        if not isinstance(vec, list) or not vec:
            raise err("'vector' must be a non-empty list of numbers")
        if not set(map(type, vec)) <= _NUMBER_TYPES:  # whole-list checks in C: 784 values in ~20 µs
            raise err("'vector' must contain only numbers")
        try:
            values = np.asarray(vec, dtype=np.float64)
        except OverflowError:  # an integer beyond float64
            values = np.full(1, FLOAT32_MAX * 2)
        if not np.isfinite(values).all():  # only a float can be NaN or infinite here
            raise err("vector contains NaN or infinite values")
        if np.abs(values).max() > FLOAT32_MAX:
            raise err(f"vector has a value beyond the float32 range (±{FLOAT32_MAX:.4g}); scale the vectors down")
        if self.dim is None:
            self.dim = len(vec)
        elif len(vec) != self.dim:
            raise err(f"vector has {len(vec)} values, expected {self.dim} (the width of line {self.first_line})")
        return vec

    @staticmethod
    def _labels(rec: dict, err) -> tuple[str, ...]:
        if "labels" in rec:
            labels = rec["labels"]
            if not isinstance(labels, list) or not all(isinstance(x, (str, int)) for x in labels):
                raise err("'labels' must be a list of strings")
            return tuple(str(x) for x in labels)
        if "label" in rec and rec["label"] is not None:
            if not isinstance(rec["label"], (str, int)):
                raise err("'label' must be a string or an integer")
            return (str(rec["label"]),)
        return ()

    def flush(self) -> Batch:
        if self.kind == "vector":
            b = Batch(ids=self.ids, vectors=np.asarray(self.vectors, dtype=np.float32),
                      labels=self.labels, payloads=self.payloads)
        else:
            b = Batch(ids=self.ids, texts=self.texts, labels=self.labels, payloads=self.payloads)
        self.reset()
        return b


class _Reservoir:
    """A uniform random sample of `size` records of a stream of batches (Algorithm R, a batch at a time):
    record i (0-based) enters with probability size / (i + 1), in place of a uniformly chosen one."""

    def __init__(self, size: int, seed: int):
        self.size, self.seen = size, 0
        self.rng = np.random.default_rng(seed)
        self.kept: list[Batch] = []        # every record, while size is 0 or not yet reached
        self.order = np.zeros(0, np.int64)  # the stream position of each kept record
        self.pool: Batch | None = None      # once full: the sample, one slot per record

    def add(self, batch: Batch) -> None:
        n, start = len(batch), self.seen
        self.seen += n
        if self.pool is None:
            self.kept.append(batch)
            self.order = np.r_[self.order, np.arange(start, start + n)]
            if self.size and len(self.order) >= self.size:
                whole = Batch.concat(self.kept)
                self.kept = []
                self.pool = _take(whole, np.arange(self.size))
                rest = _take(whole, np.arange(self.size, len(whole)))
                first = start + n - len(rest)
                self.order = self.order[:self.size]
                if len(rest):
                    self._replace(rest, first)
            return
        self._replace(batch, start)

    def _replace(self, batch: Batch, start: int) -> None:
        pos = np.arange(start, start + len(batch))
        slot = (self.rng.random(len(batch)) * (pos + 1)).astype(np.int64)
        take = np.flatnonzero(slot < self.size)
        if not len(take):
            return
        # a slot chosen twice in this batch keeps the later record, as one record at a time would
        slots, last = np.unique(slot[take][::-1], return_index=True)
        rows = take[::-1][last]
        self.order[slots] = pos[rows]
        for s, r in zip(slots.tolist(), rows.tolist()):
            _put(self.pool, s, batch, r)

    def batch(self) -> Batch:
        """The sample, in the order of the stream."""
        whole = Batch.concat(self.kept) if self.pool is None else self.pool
        return _take(whole, np.argsort(self.order, kind="stable"))


def _take(batch: Batch, rows: np.ndarray) -> Batch:
    """The records of `batch` at `rows`, as a new batch."""
    r = rows.tolist()
    return Batch(ids=[batch.ids[i] for i in r],
                 texts=None if batch.texts is None else [batch.texts[i] for i in r],
                 vectors=None if batch.vectors is None else batch.vectors[rows],
                 labels=[batch.labels[i] for i in r] if batch.labels else [],
                 payloads=[batch.payloads[i] for i in r] if batch.payloads else [])


def _put(pool: Batch, slot: int, batch: Batch, row: int) -> None:
    pool.ids[slot] = batch.ids[row]
    if pool.texts is not None:
        pool.texts[slot] = batch.texts[row]
    else:
        pool.vectors[slot] = batch.vectors[row]
    if pool.labels:
        pool.labels[slot] = batch.labels[row]
    if pool.payloads:
        pool.payloads[slot] = batch.payloads[row]


def _progress(on: bool, what: str, total: int | None = None, unit: str = " records"):
    """A tqdm bar on stderr (disabled unless `on`): records and their rate, or with `total` a share, a rate
    and an ETA."""
    from tqdm import tqdm
    return tqdm(desc=what, total=total, unit=unit, unit_scale=True, leave=False, disable=not on, file=sys.stderr)


def _chunk(records: Iterable[tuple[int, dict]], size: int, path: str) -> Iterator[Batch]:
    builder = _Builder(path)
    total = 0
    for lineno, rec in records:
        builder.add(lineno, rec)
        total += 1
        if len(builder.ids) >= size:
            yield builder.flush()
    if total == 0:
        raise CorpusError("no records found (the file is empty)", path)
    if builder.ids:
        yield builder.flush()


def _sniff(lines: list[str]) -> str:
    first = next((ln for ln in lines if ln.strip()), "")
    return "jsonl" if first.lstrip().startswith("{") else "lines"


def records_from_strings(items: list[str] | list[list[float]] | np.ndarray) -> Batch:
    """A batch from in-memory queries: a list of strings, or vectors (list of lists / 2-D array)."""
    if isinstance(items, np.ndarray) or (items and not isinstance(items[0], str)):
        v = np.atleast_2d(np.asarray(items, dtype=np.float32))
        if not np.isfinite(v).all():
            raise CorpusError("query vectors contain NaN or infinite values")
        return Batch(ids=[str(i) for i in range(len(v))], vectors=v, labels=[()] * len(v),
                     payloads=[{} for _ in range(len(v))])
    return Batch(ids=[str(i) for i in range(len(items))], texts=list(items), labels=[()] * len(items),
                 payloads=[{} for _ in range(len(items))])


def batch_from_dicts(records: list[dict], source: str = "<records>") -> Batch:
    """Validate in-memory records (dicts as in a JSONL corpus; id defaults to the 1-based position)."""
    numbered = [(i, {"id": str(i), **r}) for i, r in enumerate(records, 1)]
    for i, rec in numbered:  # strings made in Python may hold lone surrogates, as JSON escapes may
        problem = _json_problem(rec)
        if problem:
            raise CorpusError(problem, source, i)
    return Batch.concat(list(_chunk(numbered, max(1, len(records)), source)))


__all__ = ["Batch", "Corpus", "batch_from_dicts", "detect_format", "records_from_strings"]
