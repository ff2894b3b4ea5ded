"""The evaluation driver behind `semhash eval` and scripts/bench_quality.py: every method at every code length,
scored the same way on one labelled database and one set of labelled queries.

For each dataset the featurizer is fitted once, on the database only (TF-IDF vocabulary and IDF for texts,
width and scaling for vectors), and the database and queries are featurized with it. Then, for each method
(`ae`, `itq`, `pca`, `lsh`) and each code length: a fresh hasher is fitted on the database features (seeded;
the autoencoder with its defaults unless options are given), the database is encoded with `Hasher.encode`,
the queries with `Hasher.logits` (bit = logit > 0, so the queries' per-bit confidence is at hand), and
`evaluate.evaluate_hamming` ranks the whole database by Hamming distance for every query. Reported per run:
mAP and precision@k under the tie policies "index" and "average" (and "confidence", from the query logits),
precision and recall within Hamming radius 2, code diagnostics of the database codes, the precision@k curve
and the radius (precision-recall) curve, training and encoding seconds. Once per dataset: the float-feature
kNN precision@k ceiling (cosine similarity for texts, Euclidean distance for vectors) and the chance level
(a random ranking's expected mAP and precision@k).

Labels. A record's labels are a tuple (`label` or `labels` in the corpus); relevance is "same first label",
so a record labelled ["python", "devel"] counts as "python". Every record of the database and of the
queries must have one: an unlabelled corpus is refused with a CorpusError.

Queries. Either a separate labelled corpus, or `query_count` records taken from the database corpus by a
seeded draw (`split_queries`: numpy's default_rng(seed).choice without replacement, kept in corpus order);
the rest, in corpus order, is the database.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .codes import check_bits, pack
from .corpus import Batch
from .errors import ConfigError, CorpusError
from .evaluate import (code_diagnostics, evaluate_hamming, feature_knn_precision, neighbour_recalls, sign_codes,
                       tie_averaged_average_precision)
from .fsutil import atomic_file
from .hashers import HASHERS

DEFAULT_METHODS = ("ae", "itq", "pca", "lsh")  # rank (dense features only) on request
DEFAULT_BITS = (16, 32, 64)
CURVE_KS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)  # the precision@k curve's cut-offs
REPORT_FORMAT = 1
NEIGHBOUR_CANDIDATES = (None, 100, 1000)  # neighbour recall: the codes alone, then re-ranking their top 100, 1,000
PLOT_MISSING = "--plot needs matplotlib: pip install 'semhash[plot]'"

Log = Callable[[str], None]


# --- options ------------------------------------------------------------------------------------------------

def parse_methods(methods: str | Sequence[str]) -> tuple[str, ...]:
    """'ae,itq' or a sequence -> a tuple of known method names (order kept, duplicates dropped)."""
    names = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else [str(m).strip() for m in methods]
    names = [m for m in names if m]
    if not names:
        raise ConfigError(f"no method given; choose from: {', '.join(HASHERS)}")
    for m in names:
        if m not in HASHERS:
            raise ConfigError(f"unknown method {m!r}; choose from: {', '.join(HASHERS)}")
    return tuple(dict.fromkeys(names))


def parse_bits(bits: str | int | Sequence[int]) -> tuple[int, ...]:
    """'16,32,64' or ints -> a tuple of valid code lengths (positive multiples of 8, at most 1024)."""
    if isinstance(bits, str):
        items = [b.strip() for b in bits.split(",") if b.strip()]
        try:
            values = [int(b) for b in items]
        except ValueError:
            raise ConfigError(f"bits must be comma-separated multiples of 8 (e.g. 16,32,64), got {bits!r}") from None
    else:
        values = [bits] if isinstance(bits, (int, np.integer)) else list(bits)
    if not values:
        raise ConfigError("no code length given; e.g. --bits 16,32,64")
    return tuple(dict.fromkeys(check_bits(b) for b in values))


# --- data ---------------------------------------------------------------------------------------------------

def first_labels(batch: Batch, source: str = "the corpus") -> list[str]:
    """The first label of every record (the relevance label); refuses records without one."""
    labels = batch.labels if len(batch.labels) == len(batch) else [()] * len(batch)
    missing = [i for i, lab in enumerate(labels) if not lab]
    if missing:
        first = batch.ids[missing[0]] if missing[0] < len(batch.ids) else missing[0]
        raise CorpusError(f"{len(missing)} of {len(batch)} records have no label (the first: id {first!r}); "
                          f"evaluation needs a 'label' (or 'labels') on every record", source)
    return [lab[0] for lab in labels]


def take(batch: Batch, idx: Sequence[int] | np.ndarray) -> Batch:
    """The records of `batch` at positions `idx`, in that order."""
    idx = np.asarray(idx, dtype=np.int64)
    sel = idx.tolist()
    labels = [batch.labels[i] for i in sel] if len(batch.labels) == len(batch) else []
    payloads = [batch.payloads[i] for i in sel] if len(batch.payloads) == len(batch) else []
    return Batch(ids=[batch.ids[i] for i in sel],
                 texts=[batch.texts[i] for i in sel] if batch.texts is not None else None,
                 vectors=batch.vectors[idx] if batch.vectors is not None else None,
                 labels=labels, payloads=payloads)


def split_queries(data: Batch, query_count: int, seed: int = 0, source: str = "the corpus") -> tuple[Batch, Batch]:
    """(database, queries): `query_count` records drawn with numpy's default_rng(seed) without replacement
    (kept in corpus order) are the queries, the rest (in corpus order) the database."""
    n = len(data)
    if isinstance(query_count, bool) or not isinstance(query_count, (int, np.integer)) or query_count < 1:
        raise ConfigError(f"the query count must be a positive integer, got {query_count!r}")
    if query_count >= n:
        raise ConfigError(f"--query-count {query_count} is not smaller than the corpus ({n} records in {source}): "
                          f"leave some records for the database, or give separate queries with --queries FILE")
    picked = np.sort(np.random.default_rng(seed).choice(n, size=int(query_count), replace=False))
    rest = np.setdiff1d(np.arange(n), picked, assume_unique=True)
    return take(data, rest), take(data, picked)


def batch_from_arrays(vectors: np.ndarray, labels: Sequence, ids: Sequence[str] | None = None,
                      prefix: str = "") -> Batch:
    """A vector Batch from an array and one label per row (labels become 1-tuples of strings)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
    if vectors.ndim != 2 or len(labels) != len(vectors):
        raise ConfigError(f"need a 2-D array and one label per row; got {vectors.shape} and {len(labels)} labels")
    ids = [f"{prefix}{i}" for i in range(len(vectors))] if ids is None else [str(i) for i in ids]
    return Batch(ids=ids, vectors=vectors, labels=[(str(y),) for y in labels], payloads=[{} for _ in ids])


# --- hashers --------------------------------------------------------------------------------------------------

def make_hasher(method: str, bits: int, seed: int = 0, ae_options: dict | None = None):
    """A fresh hasher. Baselines get (bits, seed); the autoencoder gets its defaults, the seed, and any
    `ae_options`: training options (epochs, hidden, device, ...; semhash.hashers.options), further
    TrainConfig fields (balance, patience, ...) or autoencoder settings (dropout)."""
    from .hashers.options import TrainingOptions

    opts = {k: v for k, v in (ae_options or {}).items() if v is not None} if method == "ae" else {}
    known = {f.name for f in dataclasses.fields(TrainingOptions)}
    options = TrainingOptions.of(bits=bits, hasher=method, seed=seed,
                                 **{k: v for k, v in opts.items() if k in known and k not in ("bits", "hasher")})
    return options.make_hasher(**{k: v for k, v in opts.items() if k not in known})


# --- the run ---------------------------------------------------------------------------------------------------

def _curve_ks(k: int, n_db: int) -> tuple[int, ...]:
    return tuple(sorted({kk for kk in CURVE_KS if kk <= n_db} | {k}))


def chance_levels(query_labels: Sequence, db_labels: Sequence) -> dict:
    """A random ranking's expected mAP (exact, over queries with a relevant item) and precision@k
    (any k up to the database size: the mean share of relevant items)."""
    from .evaluate import encode_labels

    q, d = encode_labels(query_labels, db_labels, len(query_labels), len(db_labels))
    per_class = np.bincount(d, minlength=int(d.max()) + 1 if len(d) else 0)
    rel = np.where(q >= 0, per_class[np.maximum(q, 0)], 0).astype(np.float64)
    n = float(len(d))
    ap = tie_averaged_average_precision(np.full((len(q), 1), n), rel[:, None])
    return {"map": float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan"),
            "precision": float((rel / n).mean()) if len(q) else float("nan")}


def evaluate_method(method: str, bits: int, X_db, X_q, db_labels: Sequence, q_labels: Sequence, *, k: int = 100,
                    radius: int = 2, seed: int = 0, output_type: str = "real", ae_options: dict | None = None,
                    log: Log | None = None, progress: bool = False) -> dict:
    """Fit one hasher on the database features, encode, rank, score: (one result dict, see `run_evaluation`;
    the (query codes, database codes, query logits or None) it scored; the fitted hasher)."""
    hasher = make_hasher(method, bits, seed, ae_options)
    t0 = time.perf_counter()
    hasher.fit(X_db, output_type=output_type, progress=progress)
    t1 = time.perf_counter()
    db_codes = hasher.encode(X_db)
    t2 = time.perf_counter()
    try:
        q_logits = np.asarray(hasher.logits(X_q), dtype=np.float32)
        q_codes = pack(q_logits > 0)
    except NotImplementedError:  # a hasher without logits: no confidence tie policy
        q_logits, q_codes = None, hasher.encode(X_q)
    t3 = time.perf_counter()
    ks = _curve_ks(k, len(db_labels))
    ev = evaluate_hamming(q_codes, db_codes, q_labels, db_labels, k=ks, query_logits=q_logits)
    t4 = time.perf_counter()
    summary = ev.summary(radius)
    metrics = {key: v for key, v in summary.items()
               if not key.startswith("precision_at_") or key.split("_")[2] == str(k)}
    policies = ("index", "average") + (("confidence",) if q_logits is not None else ())
    names = {"index": "index", "average": "tie_avg", "confidence": "confidence"}
    curve = ev.radius_curve()
    result = {
        "method": method, "bits": bits,
        "train_seconds": round(t1 - t0, 3), "encode_seconds": round(t2 - t1, 3),
        "query_encode_seconds": round(t3 - t2, 3), "eval_seconds": round(t4 - t3, 3),
        "metrics": metrics,
        "diagnostics": code_diagnostics(db_codes),
        "curves": {
            "precision_at_k": {"k": list(ks), **{names[p]: [ev.precision(kk, p) for kk in ks] for p in policies}},
            "radius": {key: v.tolist() for key, v in curve.items()},
        },
        "hasher": hasher.describe(),
        "history": getattr(hasher, "history", {}) or {},
    }
    if log:
        log(f"  {method} {bits} bits: trained in {t1 - t0:.1f} s, encoded in {t2 - t1 + t3 - t2:.1f} s, "
            f"evaluated in {t4 - t3:.1f} s: mAP {metrics['map']:.4f}, P@{k} {metrics[f'precision_at_{k}']:.4f}")
    return result, (q_codes, db_codes, q_logits), hasher


def run_evaluation(database: Batch, queries: Batch | None = None, *, query_count: int | None = None,
                   methods: str | Sequence[str] = DEFAULT_METHODS, bits: str | Sequence[int] = DEFAULT_BITS,
                   k: int = 100, radius: int = 2, seed: int = 0, ae_options: dict | None = None,
                   feature_options: dict | None = None, knn_ceiling: bool = True, neighbour_k: int | None = 10,
                   name: str = "", fitted: dict | None = None,
                   source: str = "the corpus", query_source: str = "the query file",
                   log: Log | None = None, progress: bool = False) -> dict:
    """Evaluate every method at every code length on one dataset; returns the report (JSON-ready, NaN as None).

    database: a labelled Batch. queries: a labelled Batch of the same kind, or None with `query_count`
    (queries drawn from `database` by `split_queries(seed)`). feature_options: for the featurizer
    (max_features, standardize, ...). ae_options: see `make_hasher`. log: a function for progress lines;
    progress: show the autoencoder's own progress bar. neighbour_k: also score each code's neighbour
    recall, recall@neighbour_k of the exact cosine top-neighbour_k on the features (ranked by the codes
    alone, and re-ranking their top 100 and 1,000 by cosine; metrics recall_at_K, recall_at_K_rerank_100,
    recall_at_K_rerank_1000), and the same ranking by the asymmetric score of the codes against the
    queries' logits (semhash.asymmetric; recall_at_K_asym, recall_at_K_asym_rerank_N), with the sign of
    every centred feature dimension as the reference, its asymmetric ranking by the centred query
    vectors (dense features only: report key sign_reference); None skips it. Report keys: format, dataset, settings,
    featurize_seconds, feature_knn, chance, sign_reference, results (one dict per method x bits:
    method, bits, train_seconds, encode_seconds, query_encode_seconds, eval_seconds, metrics,
    diagnostics, curves, hasher, history). fitted: a dict that receives the fitted featurizer (key
    "featurizer") and every fitted hasher (key (method, bits)), for a caller that goes on to use them."""
    from .features import featurizer_for, fit_features

    methods, bits = parse_methods(methods), parse_bits(bits)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ConfigError(f"k must be a positive integer, got {k!r}")
    if radius < 0:
        raise ConfigError(f"radius must be >= 0, got {radius}")
    if len(database) == 0:
        raise CorpusError("no records to evaluate", source)
    first_labels(database, source)  # refuse an unlabelled corpus before splitting or fitting anything
    if queries is None:
        if query_count is None:
            raise ConfigError("give the queries, or a query count to draw them from the corpus")
        database, queries = split_queries(database, query_count, seed, source)
        query_from = "split"
    else:
        if query_count is not None:
            raise ConfigError("give either separate queries (--queries) or a query count (--query-count), not both")
        if len(queries) == 0:
            raise CorpusError("no query records", query_source)
        if queries.kind != database.kind:
            raise CorpusError(f"the queries are {queries.kind}s but the corpus holds {database.kind}s", query_source)
        query_from = "file"
    db_labels = first_labels(database, source)
    q_labels = first_labels(queries, query_source)

    say = log or (lambda _msg: None)
    say(f"Evaluating {', '.join(methods)} at {', '.join(map(str, bits))} bits: {len(database)} database "
        f"{database.kind}s, {len(queries)} queries ({'drawn from the corpus' if query_from == 'split' else 'separate'}), "
        f"{len(set(db_labels))} labels")
    t0 = time.perf_counter()
    featurizer = featurizer_for(database.kind, **(feature_options or {}))
    X_db, X_q = fit_features(featurizer, database), featurizer.transform(queries)
    featurize_seconds = time.perf_counter() - t0
    if fitted is not None:
        fitted["featurizer"] = featurizer
    say(f"Featurized in {featurize_seconds:.1f} s: {featurizer.dim} dimensions ({featurizer.output_type})")

    metric = "cosine" if database.kind == "text" else "euclidean"
    knn = None
    if knn_ceiling:
        t0 = time.perf_counter()
        p = feature_knn_precision(X_q, X_db, q_labels, db_labels, k=k, metric=metric)
        knn = {"k": k, "metric": metric, "precision": p, "seconds": round(time.perf_counter() - t0, 3)}
        say(f"Float-feature kNN ceiling ({metric}): P@{k} {p:.4f} in {knn['seconds']:.1f} s")
    chance = chance_levels(q_labels, db_labels)

    results, scored = [], []  # scored: each result's (query codes, database codes, query logits), for neighbour recall
    for method in methods:
        for b in bits:
            result, codes, hasher = evaluate_method(method, b, X_db, X_q, db_labels, q_labels, k=k, radius=radius,
                                                    seed=seed, output_type=featurizer.output_type,
                                                    ae_options=ae_options, log=log, progress=progress)
            if fitted is not None:
                fitted[(method, b)] = hasher
            results.append(result)
            scored.append(codes)
    sign_reference = None
    if neighbour_k:
        t0 = time.perf_counter()
        sets = {i: (qc, dc) for i, (qc, dc, _) in enumerate(scored)}
        weights = {i: w for i, (_, _, w) in enumerate(scored) if w is not None}
        dense = not sp.issparse(X_db)
        if dense:  # the binary quantization of vector databases; centred, so that pixels or counts split too
            centre = np.asarray(X_db, dtype=np.float32).mean(axis=0)
            weights["sign"] = np.asarray(X_q, np.float32) - centre
            sets["sign"] = (sign_codes(weights["sign"]), sign_codes(np.asarray(X_db, np.float32) - centre))
        recalls = neighbour_recalls(X_q, X_db, sets, k=neighbour_k, candidates=NEIGHBOUR_CANDIDATES,
                                    weights=weights)
        for i, res in enumerate(results):
            res["metrics"].update(_recall_metrics(recalls[i], neighbour_k))
        if dense:
            sign_reference = {"bits": int(sets["sign"][1].shape[1] * 8),
                              "metrics": _recall_metrics(recalls["sign"], neighbour_k)}
        say(f"Neighbour recall@{neighbour_k} of every code in {time.perf_counter() - t0:.1f} s")
    from .model import package_versions

    report = {
        "format": REPORT_FORMAT,
        "dataset": {"name": name or source, "kind": database.kind, "database": len(database),
                    "queries": len(queries), "queries_from": query_from, "labels": len(set(db_labels)),
                    "feature_dim": featurizer.dim, "output_type": featurizer.output_type},
        "settings": {"methods": list(methods), "bits": list(bits), "k": k, "radius": radius, "seed": seed,
                     "query_count": query_count, "label": "first label of each record", "neighbour_k": neighbour_k,
                     "ae_options": {kk: v for kk, v in (ae_options or {}).items() if v is not None},
                     "feature_options": dict(feature_options or {})},
        "featurize_seconds": round(featurize_seconds, 3),
        "feature_knn": knn,
        "chance": chance,
        "sign_reference": sign_reference,
        "results": results,
        "versions": package_versions(),
    }
    return jsonable(report)


def _recall_metrics(recall: dict, k: int) -> dict:
    """neighbour_recalls' {"codes", "rerank N", "asym codes", "asym rerank N"} as metrics: recall_at_K,
    recall_at_K_rerank_N, recall_at_K_asym, recall_at_K_asym_rerank_N."""
    def metric(name: str) -> str:
        words = name.split()
        asym = "_asym" if words[0] == "asym" else ""
        return f"recall_at_{k}{asym}" + ("" if words[-1] == "codes" else f"_rerank_{words[-1]}")
    return {metric(name): v for name, v in recall.items()}


def jsonable(obj):
    """Plain JSON types all the way down: numpy scalars and arrays to Python, NaN and infinities to None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# --- the table ---------------------------------------------------------------------------------------------

def table_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of the results table: one row per method x bits, then the float kNN ceiling and chance."""
    k, r = report["settings"]["k"], report["settings"]["radius"]
    nk = report["settings"].get("neighbour_k")
    header = ["method", "bits", "mAP", "mAP(avg)", f"P@{k}", f"P@{k}(avg)", f"r{r}-prec", f"r{r}-recall",
              "codes", "train-s"]
    recall_keys = [f"recall_at_{nk}{a}" + (f"_rerank_{n}" if n else "") for a in ("", "_asym")
                   for n in NEIGHBOUR_CANDIDATES] if nk else []
    header += [f"{a}@{nk}" + (f"/{n}" if n else "") for a in ("R", "A") for n in NEIGHBOUR_CANDIDATES] if nk else []
    dash = ["-"] * len(recall_keys)

    def num(v, digits=4):
        return "-" if v is None else f"{v:.{digits}f}"

    rows = []
    for res in report["results"]:
        m = res["metrics"]
        rows.append([res["method"], str(res["bits"]), num(m["map"]), num(m["map_tie_avg"]),
                     num(m[f"precision_at_{k}"]), num(m[f"precision_at_{k}_tie_avg"]),
                     num(m[f"radius{r}_precision"]), num(m[f"radius{r}_recall"]),
                     str(res["diagnostics"]["distinct_codes"]), num(res["train_seconds"], 1)]
                    + [num(m.get(key)) for key in recall_keys])
    if report.get("sign_reference") and recall_keys:
        sign = report["sign_reference"]
        rows.append(["sign", str(sign["bits"])] + ["-"] * 8 + [num(sign["metrics"].get(key)) for key in recall_keys])
    if report.get("feature_knn"):
        rows.append(["float-knn", "-", "-", "-", num(report["feature_knn"]["precision"]), "-", "-", "-", "-", "-"]
                    + dash)
    chance = report.get("chance") or {}
    rows.append(["random", "-", num(chance.get("map")), "-", num(chance.get("precision")), "-", "-", "-", "-", "-"]
                + dash)
    return header, rows


def format_table(report: dict, markdown: bool = False) -> str:
    """The results table as aligned text (the first column left-aligned, the others right-aligned), or as
    markdown."""
    header, rows = table_rows(report)
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(c) for c in col) for col in zip(header, *rows)]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return "\n".join([line(header)] + [line(row) for row in rows])


# --- the plot -----------------------------------------------------------------------------------------------

def check_plot_path(path: str | Path) -> Path:
    """The plot's path, once matplotlib is known to be importable and the file type supported."""
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise ConfigError(PLOT_MISSING) from None
    path = Path(path)
    kinds = FigureCanvasBase.get_supported_filetypes()
    ext = path.suffix.lower().lstrip(".")
    if ext not in kinds:
        raise ConfigError(f"--plot {path}: unknown image type {path.suffix or '(none)'!r}; "
                          f"use one of: {', '.join('.' + e for e in sorted(kinds))}")
    if not path.absolute().parent.is_dir():
        raise ConfigError(f"--plot {path}: the folder {path.absolute().parent} does not exist")
    return path


def plot_report(report: dict, path: str | Path, title: str | None = None, replace: bool = False) -> Path:
    """Draw the precision-recall curves (Hamming radius 0..bits) and the precision@k curves of every
    result into one image (any type matplotlib writes: .png, .pdf, .svg, ...). Needs matplotlib."""
    path = check_plot_path(path)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), layout="constrained")
    ax_pr, ax_pk = fig.subplots(1, 2)
    methods = list(dict.fromkeys(res["method"] for res in report["results"]))
    bits = sorted({res["bits"] for res in report["results"]})
    styles = ["-", "--", ":", "-."]
    colours = {m: f"C{i}" for i, m in enumerate(methods)}
    for res in report["results"]:
        style = dict(color=colours[res["method"]], linestyle=styles[bits.index(res["bits"]) % len(styles)],
                     label=f"{res['method']} {res['bits']} bits")
        rad = res["curves"]["radius"]
        ax_pr.plot([np.nan if v is None else v for v in rad["recall"]],
                   [np.nan if v is None else v for v in rad["precision"]], marker=".", **style)
        pk = res["curves"]["precision_at_k"]
        ax_pk.plot(pk["k"], [np.nan if v is None else v for v in pk["index"]], **style)
    k = report["settings"]["k"]
    if report.get("feature_knn") and report["feature_knn"].get("precision") is not None:
        ax_pk.plot([k], [report["feature_knn"]["precision"]], marker="*", markersize=12, color="black",
                   linestyle="none", label=f"float-feature kNN P@{k}")
    chance = (report.get("chance") or {}).get("precision")
    if chance is not None:
        for ax in (ax_pr, ax_pk):
            ax.axhline(chance, color="grey", linewidth=0.8, linestyle=":", label="chance")
    ax_pr.set(xlabel="recall", ylabel="precision (empty ball = 0)", xlim=(0, 1), ylim=(0, 1),
              title="Precision-recall within Hamming radius 0, 1, ...")
    ax_pk.set(xlabel="k (log scale)", ylabel="precision@k (ties by index)", xscale="log", ylim=(0, 1),
              title="Precision@k over the Hamming ranking")
    ax_pk.legend(fontsize="small")
    ds = report["dataset"]
    fig.suptitle(title or f"{ds['name']}: {ds['database']} database items, {ds['queries']} queries")
    try:
        with atomic_file(path, replace) as fh:
            fig.savefig(fh, format=path.suffix.lower().lstrip("."), dpi=100)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot write the plot {path} ({e})") from None
    return path
