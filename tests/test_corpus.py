"""semhash.corpus: every reader on good input, exact error messages on bad input, batching."""
from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

from semhash.corpus import Batch, Corpus, detect_format, records_from_strings
from semhash.errors import CorpusError


def error_of(path, **kw) -> CorpusError:
    with pytest.raises(CorpusError) as e:
        Corpus(path, **kw).read_all()
    return e.value


# --- good input --------------------------------------------------------------------------------

def test_jsonl_texts_with_labels_and_payload(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "c.jsonl", [
        {"id": "a", "text": "first doc", "label": "x", "year": 2001},
        {"id": 7, "text": "second doc", "labels": ["p", "q"], "meta": {"k": [1, 2]}},
        {"text": "third doc, no id"},
        {"id": "d", "text": "fourth", "label": 5, "label2": "kept"},
    ])
    b = Corpus(p).read_all()
    assert b.kind == "text" and b.vectors is None
    assert b.ids == ["a", "7", "3", "d"]  # integer id as a string; missing id = line number
    assert b.texts == ["first doc", "second doc", "third doc, no id", "fourth"]
    assert b.labels == [("x",), ("p", "q"), (), ("5",)]
    assert b.payloads == [{"year": 2001}, {"meta": {"k": [1, 2]}}, {}, {"label2": "kept"}]


def test_jsonl_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    p = tmp_path / "c.ndjson"
    p.write_text('{"text": "a"}\n\n   \n{"text": "b"}\n')
    b = Corpus(p).read_all()
    assert b.ids == ["1", "4"]
    assert b.texts == ["a", "b"]


def test_jsonl_vectors(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "v.jsonl", [
        {"id": "a", "vector": [0.5, 1, -2.25], "label": "l"},
        {"id": "b", "vector": [1e3, 0, 3]},
    ])
    b = Corpus(p).read_all()
    assert b.kind == "vector" and b.texts is None
    assert b.vectors.dtype == np.float32 and b.vectors.shape == (2, 3)
    assert np.array_equal(b.vectors, np.array([[0.5, 1, -2.25], [1000, 0, 3]], dtype=np.float32))
    assert b.labels == [("l",), ()]


def test_csv_with_header_and_payload(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text('id,text,label,source\nr1,"hello, world",greet,web\nr2,"two\nlines",,book\n,no id here,x,\n')
    b = Corpus(p).read_all()
    assert b.kind == "text"
    assert b.ids == ["r1", "r2", "5"]  # an empty id is the line number (the quoted newline counts)
    assert b.texts == ["hello, world", "two\nlines", "no id here"]
    assert b.labels == [("greet",), (), ("x",)]  # an empty label is no label
    assert b.payloads == [{"source": "web"}, {"source": "book"}, {"source": ""}]


def test_tsv_with_header_and_payload(tmp_path):
    p = tmp_path / "c.tsv"
    p.write_text("text\tscore\tid\nalpha beta\t0.5\tx\ngamma, delta\t1.5\ty\n")
    b = Corpus(p).read_all()
    assert b.ids == ["x", "y"]
    assert b.texts == ["alpha beta", "gamma, delta"]
    assert b.payloads == [{"score": "0.5"}, {"score": "1.5"}]
    assert b.labels == [(), ()]


@pytest.mark.parametrize("name,content", [
    ("c.csv", "text,label\nhello world,a\n"),
    ("c.jsonl", '{"text": "hello world", "label": "a"}\n'),
    ("c.txt", '{"text": "hello world", "label": "a"}\n'),  # sniffed as JSON lines despite the BOM
])
def test_utf8_byte_order_mark_is_ignored(tmp_path, name, content):
    """Excel and some Windows tools start UTF-8 files with a BOM; it must not become part of the first field."""
    p = tmp_path / name
    p.write_bytes(b"\xef\xbb\xbf" + content.encode())
    b = Corpus(p).read_all()
    assert b.texts == ["hello world"]
    assert b.labels == [("a",)]


def test_plain_text_lines(tmp_path):
    p = tmp_path / "docs.txt"
    p.write_text("first line\n\nthird line\n   \nfifth, last\r\n")
    b = Corpus(p).read_all()
    assert b.ids == ["1", "3", "5"]
    assert b.texts == ["first line", "third line", "fifth, last"]
    assert b.labels == [(), (), ()]


def test_unknown_extension_is_sniffed(tmp_path):
    (tmp_path / "a.data").write_text('{"id": "j", "text": "json here"}\n')
    (tmp_path / "b.data").write_text("just text\n")
    assert Corpus(tmp_path / "a.data").read_all().ids == ["j"]
    assert Corpus(tmp_path / "b.data").read_all().texts == ["just text"]


def test_directory_of_txt_files(tmp_path):
    root = tmp_path / "news"
    (root / "sci.space").mkdir(parents=True)
    (root / "rec.autos").mkdir()
    (root / "sci.space" / "a.txt").write_text("rockets and orbits")
    (root / "sci.space" / "b.txt").write_text("the moon")
    (root / "rec.autos" / "1001").write_text("engines")  # 20-Newsgroups files have no extension
    (root / "top.txt").write_text("no sub-folder")
    (root / "rec.autos" / "notes.md").write_text("not a .txt file")
    b = Corpus(root).read_all()
    assert b.ids == ["rec.autos/1001", "sci.space/a.txt", "sci.space/b.txt", "top.txt"]
    assert b.texts == ["engines", "rockets and orbits", "the moon", "no sub-folder"]
    assert b.labels == [("rec.autos",), ("sci.space",), ("sci.space",), ()]


def test_npy(tmp_path):
    x = np.random.default_rng(0).normal(size=(7, 5))
    np.save(tmp_path / "x.npy", x)
    b = Corpus(tmp_path / "x.npy").read_all()
    assert b.kind == "vector"
    assert b.ids == [str(i) for i in range(7)]
    assert b.vectors.dtype == np.float32
    assert np.array_equal(b.vectors, x.astype(np.float32))
    assert b.labels == [()] * 7


def test_npz_with_ids_and_labels(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.savez(tmp_path / "x.npz", vectors=x, ids=np.array(["w", "x", "y", "z"]), labels=np.array([3, 1, 3, 2]))
    b = Corpus(tmp_path / "x.npz").read_all()
    assert b.ids == ["w", "x", "y", "z"]
    assert b.labels == [("3",), ("1",), ("3",), ("2",)]
    assert np.array_equal(b.vectors, x)


def test_npz_single_unnamed_array(tmp_path):
    np.savez(tmp_path / "x.npz", np.ones((2, 3)))
    assert Corpus(tmp_path / "x.npz").read_all().vectors.shape == (2, 3)


def test_stdin_jsonl(monkeypatch):
    lines = [json.dumps({"id": f"s{i}", "text": f"doc {i}"}) for i in range(3)]
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n".join(lines) + "\n"))
    c = Corpus("-")
    assert c.format == "stdin"
    assert c.validate() == 3
    b = c.read_all()  # a second pass over stdin reuses what was read
    assert b.ids == ["s0", "s1", "s2"]
    assert b.texts == ["doc 0", "doc 1", "doc 2"]


def test_stdin_plain_lines(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("alpha\n\ngamma\n"))
    b = Corpus("-").read_all()
    assert b.ids == ["1", "3"]
    assert b.texts == ["alpha", "gamma"]


def test_stdin_crlf_and_missing_final_newline(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("alpha\r\n\r\ngamma"))
    b = Corpus("-").read_all()
    assert b.ids == ["1", "3"]
    assert b.texts == ["alpha", "gamma"]


def test_stdin_errors_name_the_line(monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO('{"text": "a"}\r\n\n{"text": "abc'))
    with pytest.raises(CorpusError) as e:
        Corpus("-").read_all()
    assert str(e.value) == "-, line 3: invalid JSON (Unterminated string starting at column 10)"


def test_stdin_reads_like_a_file(monkeypatch, tmp_path):
    """Only \\n, \\r and \\r\\n end lines: JSON strings may hold U+2028 / U+0085 unescaped."""
    text = "".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n"
                   for i, t in enumerate(["line\u2028separator", "next\x85line", "para\u2029end"]))
    p = tmp_path / "c.jsonl"
    p.write_text(text, encoding="utf-8")
    from_file = Corpus(p).read_all()
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    from_stdin = Corpus("-").read_all()
    assert from_stdin.texts == from_file.texts == ["line\u2028separator", "next\x85line", "para\u2029end"]
    assert from_stdin.ids == from_file.ids == ["0", "1", "2"]


def test_detect_format(tmp_path):
    assert detect_format("-") == "stdin"
    assert detect_format(str(tmp_path)) == "dir"
    for name, fmt in [("a.jsonl", "jsonl"), ("a.JSON", "jsonl"), ("a.ndjson", "jsonl"), ("a.csv", "csv"),
                      ("a.tsv", "tsv"), ("a.npy", "npy"), ("a.npz", "npz"), ("a.txt", "sniff")]:
        assert detect_format(str(tmp_path / name)) == fmt


# --- batching --------------------------------------------------------------------------------

def test_batches_of_ten(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": f"r{i}", "text": f"text {i}", "n": i} for i in range(25)])
    c = Corpus(p, batch_size=10)
    batches = list(c.batches())
    assert [len(b) for b in batches] == [10, 10, 5]
    assert batches[1].ids[0] == "r10" and batches[2].ids[-1] == "r24"
    whole = c.read_all()
    assert whole.ids == [f"r{i}" for i in range(25)]
    assert whole.texts == [t for b in batches for t in b.texts]
    assert [p["n"] for p in whole.payloads] == list(range(25))
    assert len(whole.labels) == 25
    assert c.validate() == 25


def test_array_batches_of_ten(tmp_path):
    x = np.random.default_rng(1).random((25, 4))
    np.save(tmp_path / "x.npy", x)
    c = Corpus(tmp_path / "x.npy", batch_size=10)
    assert [len(b) for b in c.batches()] == [10, 10, 5]
    whole = c.read_all()
    assert whole.ids == [str(i) for i in range(25)]
    assert np.array_equal(whole.vectors, x.astype(np.float32))


def test_vector_batches_concat(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "v.jsonl", [{"vector": [i, i + 1.0]} for i in range(25)])
    whole = Corpus(p, batch_size=10).read_all()
    assert whole.vectors.shape == (25, 2)
    assert whole.vectors[:, 0].tolist() == list(range(25))


def test_concat_of_nothing_is_empty_text_batch():
    b = Batch.concat([])
    assert len(b) == 0 and b.kind == "text"


def test_records_from_strings():
    t = records_from_strings(["a b", "c"])
    assert t.kind == "text" and t.ids == ["0", "1"] and t.texts == ["a b", "c"]
    v = records_from_strings([[1, 2], [3, 4]])
    assert v.kind == "vector" and v.vectors.shape == (2, 2) and v.vectors.dtype == np.float32
    with pytest.raises(CorpusError, match="NaN or infinite"):
        records_from_strings(np.array([[1.0, np.nan]]))


# --- bad input: exact messages ---------------------------------------------------------------

def test_bad_json_on_line_17(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": i, "text": f"doc {i}"} for i in range(16)])
    with open(p, "a") as fh:
        fh.write("not json\n")
        fh.write('{"id": "after", "text": "never read"}\n')
    e = error_of(p)
    assert str(e) == f"{p}, line 17: invalid JSON (Expecting value at column 1)"
    assert (e.path, e.line) == (str(p), 17)


def test_bad_json_in_a_later_batch(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": i, "text": f"doc {i}"} for i in range(16)])
    with open(p, "a") as fh:
        fh.write('{"id": "x", "text": "unterminated}\n')
    with pytest.raises(CorpusError) as e:
        for _ in Corpus(p, batch_size=5).batches():
            pass
    # json's message ends in "at"; the reader must not say "at at column"
    assert str(e.value) == f"{p}, line 17: invalid JSON (Invalid control character at column 35)"


def test_json_that_is_not_an_object(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "ok"}\n[1, 2]\n')
    assert str(error_of(p)) == f"{p}, line 2: expected a JSON object, got list"


def test_missing_text_field(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "title": "no text"}\n')
    assert str(error_of(p)) == (f"{p}, line 2: record has neither a 'text' nor a 'vector' field "
                                "(fields: id, title)")


def test_vector_of_wrong_width(tmp_path):
    p = tmp_path / "v.jsonl"
    p.write_text('{"vector": [1, 2, 3]}\n{"vector": [4, 5, 6]}\n{"vector": [7, 8]}\n')
    assert str(error_of(p)) == f"{p}, line 3: vector has 2 values, expected 3 (the width of line 1)"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_in_a_vector(tmp_path, literal):
    p = tmp_path / "v.jsonl"
    p.write_text(f'{{"vector": [1, 2]}}\n{{"vector": [1, {literal}]}}\n')  # Python's json accepts these
    assert str(error_of(p)) == f"{p}, line 2: vector contains NaN or infinite values"


@pytest.mark.parametrize("vec,msg", [
    ("[]", "'vector' must be a non-empty list of numbers"),
    ('"1 2"', "'vector' must be a non-empty list of numbers"),
    ('[1, "2"]', "'vector' must contain only numbers"),
    ("[1, true]", "'vector' must contain only numbers"),
])
def test_bad_vector_values(tmp_path, vec, msg):
    p = tmp_path / "v.jsonl"
    p.write_text(f'{{"vector": {vec}}}\n')
    assert str(error_of(p)) == f"{p}, line 1: {msg}"


@pytest.mark.parametrize("content", ["", "\n\n   \n"])
def test_empty_file(tmp_path, content):
    p = tmp_path / "c.jsonl"
    p.write_text(content)
    e = error_of(p)
    assert str(e) == f"{p}: no records found (the file is empty)"
    assert e.line is None


def test_empty_csv_and_directory(tmp_path):
    (tmp_path / "c.csv").write_text("")
    assert str(error_of(tmp_path / "c.csv")) == f"{tmp_path / 'c.csv'}: no records found (the file is empty)"
    (tmp_path / "d").mkdir()
    assert str(error_of(tmp_path / "d")) == f"{tmp_path / 'd'}: no records found (the file is empty)"


def test_duplicate_id(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n\n{"id": "a", "text": "z"}\n')
    assert str(error_of(p)) == f"{p}, line 4: duplicate id 'a' (first seen on line 1)"


def test_duplicate_id_across_batches(tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": i % 12, "text": "t"} for i in range(13)])
    assert str(error_of(p, batch_size=5)) == f"{p}, line 13: duplicate id '0' (first seen on line 1)"


def test_integer_and_string_ids_collide(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"id": 1, "text": "x"}\n{"id": "1", "text": "y"}\n')
    assert str(error_of(p)) == f"{p}, line 2: duplicate id '1' (first seen on line 1)"


@pytest.mark.parametrize("rid", ["true", "1.5", "null", "[1]"])
def test_bad_id_type(tmp_path, rid):
    p = tmp_path / "c.jsonl"
    p.write_text(f'{{"id": {rid}, "text": "x"}}\n')
    assert str(error_of(p)) == f"{p}, line 1: 'id' must be a string or an integer, got {rid}"


def test_mixed_text_and_vector_records(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('\n{"id": "a", "text": "x"}\n{"id": "b", "vector": [1, 2]}\n')
    assert str(error_of(p)) == (f"{p}, line 3: record has a 'vector' but the records before it (from line 2) "
                                "have a 'text'; a corpus holds one kind")


def test_text_must_be_a_string(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": 5}\n')
    assert str(error_of(p)) == f"{p}, line 1: 'text' must be a string, got int"


def test_bad_labels(tmp_path):
    p = tmp_path / "c.jsonl"
    p.write_text('{"text": "x", "labels": "a,b"}\n')
    assert str(error_of(p)) == f"{p}, line 1: 'labels' must be a list of strings"
    p.write_text('{"text": "x", "label": ["a"]}\n')
    assert str(error_of(p)) == f"{p}, line 1: 'label' must be a string or an integer"


def test_csv_without_text_column(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id,body\n1,hello\n")
    e = error_of(p)
    assert str(e) == f"{p}, line 1: the header has no 'text' column (columns: id, body)"
    assert e.line == 1


def test_csv_row_with_too_many_fields(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("id,text\na,fine\nb,too,many,fields\n")
    assert str(error_of(p)) == f"{p}, line 3: 4 fields, the header has 2"


def test_npy_with_nan_reports_row(tmp_path):
    x = np.ones((30, 4))
    x[13, 2] = np.nan
    np.save(tmp_path / "x.npy", x)
    e = error_of(tmp_path / "x.npy", batch_size=5)  # the row is counted across batches
    assert str(e) == f"{tmp_path / 'x.npy'}: row 13: vector contains NaN or infinite values"


@pytest.mark.parametrize("arr,msg", [
    (np.ones(5), "expected a non-empty 2-D array of vectors, got shape (5,)"),
    (np.ones((0, 3)), "expected a non-empty 2-D array of vectors, got shape (0, 3)"),
    (np.array([["a", "b"]]), "vectors must be numbers, got dtype <U1"),
])
def test_npy_bad_arrays(tmp_path, arr, msg):
    np.save(tmp_path / "x.npy", arr)
    assert str(error_of(tmp_path / "x.npy")) == f"{tmp_path / 'x.npy'}: {msg}"


def test_npz_errors(tmp_path):
    p = tmp_path / "x.npz"
    np.savez(p, a=np.ones((2, 2)), b=np.ones((2, 2)))
    assert str(error_of(p)) == f"{p}: no 'vectors' array (arrays: a, b)"
    np.savez(p, vectors=np.ones((3, 2)), ids=np.array(["a", "b"]))
    assert str(error_of(p)) == f"{p}: 'ids' has 2 entries but there are 3 vectors"
    np.savez(p, vectors=np.ones((3, 2)), ids=np.array(["a", "b", "a"]))
    assert str(error_of(p)) == f"{p}: 'ids' has duplicate entries"


def test_corrupt_npy(tmp_path):
    p = tmp_path / "x.npy"
    p.write_bytes(b"definitely not numpy")
    assert str(error_of(p)).startswith(f"{p}: cannot read the array file (")


def test_not_utf8(tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"caf\xe9\n")
    assert str(error_of(p)).startswith(f"{p}: not UTF-8 text (")


def test_nonexistent_path(tmp_path):
    p = tmp_path / "missing.jsonl"
    with pytest.raises(CorpusError) as e:
        Corpus(p)
    assert str(e.value) == f"{p}: no such file or directory"


# --- values the JSON parser lets through, refused with the line ------------------------------------------------
@pytest.mark.parametrize("line,message", [
    ('{"id": ' + "9" * 5000 + ', "text": "a"}',
     "a number of 5,000 digits; integers may have at most 19 (write a long id as a string)"),
    ('{"id": "a", "vector": [1, ' + "1" * 40 + ']}',
     "a number of 40 digits; integers may have at most 19 (write a long id as a string)"),
    ('{"id": "a", "text": "t", "x": ' + "[" * 5000 + "]" * 5000 + "}", "JSON nested too deeply (at most 32 levels)"),
    ('{"id": "a", "text": "t", "x": ' + "[" * 40 + "]" * 40 + "}", "JSON nested too deeply (at most 32 levels)"),
    ('{"id": "a\\udfff", "text": "t"}',
     "the string 'a\\udfff' holds a lone surrogate ('\\udfff'), which is not valid Unicode; fix the \\u escape"),
    ('{"id": "a", "text": "t", "k\\ud800": 1}',
     "the string 'k\\ud800' holds a lone surrogate ('\\ud800'), which is not valid Unicode; fix the \\u escape"),
    ('{"id": "a", "vector": [1e39, 0]}',
     "vector has a value beyond the float32 range (±3.403e+38); scale the vectors down"),
])
def test_json_values_beyond_the_limits_are_refused_with_the_line(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    first = '{"id": "ok", "vector": [0, 1]}' if '"vector"' in line else '{"id": "ok", "text": "fine"}'
    path.write_text(first + "\n" + line + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        Corpus(path).read_all()
    assert str(e.value) == f"{path}, line 2: {message}"


def test_escapes_of_valid_characters_still_load(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"id": "caf\\u00e9 \\ud83d\\ude00", "text": "x", "n": 1234567890123456789}\n', encoding="utf-8")
    b = Corpus(path).read_all()
    assert b.ids == ["café 😀"] and b.payloads == [{"n": 1234567890123456789}]


@pytest.mark.parametrize("make,message", [
    (lambda p: p.write_bytes(b"PK\x03\x04 not really a zip"), "cannot read the array file"),
    (lambda p: p.write_bytes(b""), "cannot read the array file"),
    (lambda p: np.savez(p, vectors=np.ones((3, 2)), ids=np.array("x")), "'ids' must be a 1-D array, got shape ()"),
    (lambda p: np.savez(p, vectors=np.ones((3, 2)), labels=np.ones((3, 2))),
     "'labels' must be a 1-D array, got shape (3, 2)"),
])
def test_damaged_or_odd_npz_files_are_refused(tmp_path, make, message):
    path = tmp_path / "a.npz"
    make(path)
    with pytest.raises(CorpusError) as e:
        Corpus(path).read_all()
    assert str(e.value).startswith(f"{path}: {message}")


def test_a_truncated_npz_is_refused(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, vectors=np.random.default_rng(0).normal(size=(500, 16)))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(CorpusError) as e:
        Corpus(path).read_all()
    assert str(e.value).startswith(f"{path}: cannot read the array file")


def test_an_empty_npy_is_refused(tmp_path):
    path = tmp_path / "a.npy"
    path.write_bytes(b"")
    with pytest.raises(CorpusError) as e:
        Corpus(path).read_all()
    assert str(e.value).startswith(f"{path}: cannot read the array file")


def test_in_memory_records_with_a_lone_surrogate_are_refused():
    from semhash.corpus import batch_from_dicts

    with pytest.raises(CorpusError) as e:
        batch_from_dicts([{"id": "a", "text": "fine"}, {"id": "b", "text": "x", "tag": "bad\udfff"}])
    assert str(e.value) == ("<records>, line 2: the string 'bad\\udfff' holds a lone surrogate ('\\udfff'), "
                            "which is not valid Unicode; fix the \\u escape")


# --- sampling (--train-sample) -------------------------------------------------------------------------------
def _numbered(tmp_path, n, name="c.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps({"id": f"v{i}", "vector": [float(i), 1.0], "label": str(i % 3)}) + "\n"
                            for i in range(n)))
    return path


def test_sample_is_seeded_uniform_in_corpus_order_and_counts_the_corpus(tmp_path):
    path = _numbered(tmp_path, 1000)
    batch, total = Corpus(path, batch_size=64).sample(100, seed=1)
    assert total == 1000 and len(batch) == 100
    rows = [int(i[1:]) for i in batch.ids]
    assert rows == sorted(rows) and len(set(rows)) == 100
    assert batch.vectors[:, 0].tolist() == rows and batch.labels == [(str(r % 3),) for r in rows]
    assert Corpus(path, batch_size=64).sample(100, seed=1)[0].ids == batch.ids  # same seed, same sample
    assert Corpus(path, batch_size=64).sample(100, seed=2)[0].ids != batch.ids
    deciles = np.zeros(10)
    for seed in range(200):  # every record is equally likely: 200 x 100 draws, 2,000 expected per decile
        for i in Corpus(path, batch_size=64).sample(100, seed=seed)[0].ids:
            deciles[int(i[1:]) // 100] += 1
    assert np.abs(deciles - 2000).max() < 200, deciles


def test_the_sampling_pass_shows_its_share_of_the_file_for_an_eta(tmp_path, monkeypatch):
    """A text file's sampling bar counts the file's size (so tqdm shows a share, a rate and an ETA) and the
    records read beside it; it ends full. Arrays count records against the row count of their header.
    stdin counts records."""
    import semhash.corpus as corpus_mod

    bars = []
    real = corpus_mod._progress
    monkeypatch.setattr(corpus_mod, "_progress", lambda on, what, **kw: bars.append(real(True, what, **kw)) or bars[-1])
    path = _numbered(tmp_path, 1000)
    Corpus(path, batch_size=64).sample(100, progress=True)
    bar = bars[-1]
    assert bar.total == path.stat().st_size and bar.n == bar.total and bar.unit == "B"
    assert bar.postfix == "1,000 records"
    np.save(tmp_path / "v.npy", np.ones((300, 4), np.float32))
    Corpus(tmp_path / "v.npy", batch_size=64).sample(10, progress=True)
    assert bars[-1].total == 300 and bars[-1].n == 300 and bars[-1].unit == " records"
    np.savez(tmp_path / "v.npz", vectors=np.ones((200, 4), np.float32))
    Corpus(tmp_path / "v.npz", batch_size=64).sample(10, progress=True)
    assert bars[-1].total == 200 and bars[-1].n == 200
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\nb\nc\n"))
    Corpus("-", batch_size=64).sample(10, progress=True)
    assert bars[-1].total is None and bars[-1].n == 3


@pytest.mark.parametrize("size", [0, 1000, 5000])
def test_sample_of_zero_or_of_the_whole_corpus_is_every_record(tmp_path, size):
    batch, total = Corpus(_numbered(tmp_path, 1000), batch_size=64).sample(size)
    assert total == 1000 and batch.ids == [f"v{i}" for i in range(1000)]


def test_sample_validates_every_record_and_then_the_corpus_is_not_read_again(tmp_path):
    path = _numbered(tmp_path, 50)
    with open(path, "a") as fh:
        fh.write('{"id": "late", "vector": [1.0]}\n')
    with pytest.raises(CorpusError, match="line 51: vector has 1 values, expected 2"):
        Corpus(path, batch_size=8).sample(5)
    path = _numbered(tmp_path, 50, "good.jsonl")
    corpus = Corpus(path, batch_size=8)
    corpus.sample(5)
    corpus.batches = None  # a second read would fail now: both are answered from the first pass
    assert corpus.validate() == 50 and corpus.first_batch().ids == [f"v{i}" for i in range(8)]
    path.write_text(path.read_text() + json.dumps({"id": "new", "vector": [1.0, 2.0]}) + "\n")
    del corpus.batches  # the file changed: it is read again
    assert corpus.validate() == 51


@pytest.mark.parametrize("order,dtype", [("C", "<f4"), ("F", "<f4"), ("C", ">f8"), ("C", "<i2")])
def test_npy_is_read_a_batch_at_a_time_exactly(tmp_path, order, dtype):
    x = np.asarray(np.random.default_rng(0).normal(size=(37, 5)) * 100, dtype=dtype, order=order)
    np.save(tmp_path / "x.npy", x)
    batches = list(Corpus(tmp_path / "x.npy", batch_size=8).batches())
    assert [len(b) for b in batches] == [8, 8, 8, 8, 5]
    assert np.array_equal(np.concatenate([b.vectors for b in batches]), x.astype(np.float32))


def test_a_truncated_npy_is_refused(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((100, 4), np.float32))
    data = (tmp_path / "x.npy").read_bytes()
    (tmp_path / "x.npy").write_bytes(data[:-10])
    with pytest.raises(CorpusError, match="the file is shorter than its header says"):
        Corpus(tmp_path / "x.npy").validate()
