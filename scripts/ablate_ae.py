"""The autoencoder family, one option at a time, against the default autoencoder and ITQ: a markdown table.

    python scripts/ablate_ae.py                                   # Fashion-MNIST from ./fashion-mnist, 32 bits
    python scripts/ablate_ae.py --fm DIR --seeds 0,1,2 --variants baseline,denoising
    python scripts/ablate_ae.py --dataset debian --corpus data/debian.jsonl   # labels = section

Fashion-MNIST: database = the 60,000 training images (DIR/train.npz), queries = the 10,000 test images
(DIR/test.npz), semhash .npz corpora with pixels in [0, 1] (as scripts/bench_quality.py load_fmnist scales
them). Debian: a JSONL corpus labelled by section, 2,000 queries drawn from it (run_evaluation's seeded
split). Every run goes through semhash.evalrun.run_evaluation (methods ["ae"] or ["itq"], one code length,
one seed): mAP and P@100 ranked by Hamming distance, ties in index order. Each variant changes the
defaults in the one way listed in VARIANTS (strengths picked once, not tuned on the queries); every row is
the mean ± std over the seeds. Runs go seed by seed (every variant at seed 0, then at seed 1, ...), so
that a run cut short still covers every variant. Progress on stderr, one JSON line per run appended to
--log; a run already in the log (same dataset, bits, variant, options, seed, threads) is not run again, and
--table-only prints the table of what the log holds.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from semhash.corpus import Corpus
from semhash.evalrun import run_evaluation

# name -> the autoencoder options it changes (everything else at the defaults)
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "denoising": {"corruption": 0.2},                       # 20% of the input entries zeroed in training
    "sparse": {"sparsity": 1.0, "sparsity_target": 0.3},     # each unit's mean activation pulled toward 0.3
    "contractive": {"contractive": 0.03},                   # about 10% of the reconstruction loss at the start
    "variational": {"variational": 0.1, "noise": 0.0},      # Bernoulli codes take the place of the logit noise
    "deeper": {"hidden": [256, 256]},                       # two hidden layers of the default width
    "linear-decoder": {"decoder_hidden": []},                # the code decoded straight to the output (NASH, VDSH)
    # the text defaults before 2026-12-02 (mirrored decoder, every word rebuilt, batches to 256, 30 epochs);
    # on dense vectors (Fashion-MNIST) the same as the baseline
    "mirrored-decoder": {"decoder_hidden": [256], "target_words": 0, "batch_size": 256, "epochs": 30},
    # the walk for vectors before 2026-12-02: the plain 10-NN graph, 100 steps (texts: the default itself)
    "old-walk": {"shared_neighbors": 0, "n_neighbors": 10, "diffusion_time": 100},
    # the graph view before 2026-12-02 evening: 64 principal dimensions of the features themselves, unwhitened
    # (images and other vectors now take 128 half-whitened ones, of the pixels' roots for images; texts 32)
    "old-view": {"graph_dims": 64, "graph_power": 1.0, "graph_whiten": 0.0},
    # the defaults for other real vectors (sentence embeddings) before 2026-12-02: a 100-step walk in the plain
    # 64-dimensional view, which weighed as much as the diffusion coordinates in the targets
    "old-real": {"graph_dims": 64, "graph_whiten": 0.0, "diffusion_time": 100, "diffusion_mix": 1.0},
    "lr-3e-3": {"lr": 3e-3},
    "epochs-30": {"epochs": 30},                             # the default for vectors; texts take 10
    "epochs-15": {"epochs": 15},
    "lr-3e-3-epochs-15": {"lr": 3e-3, "epochs": 15},
}


def load(args) -> tuple:
    """(database, queries or None, query_count or None) for run_evaluation."""
    if args.dataset == "fm":
        db, q = Corpus(args.fm / "train.npz").read_all(), Corpus(args.fm / "test.npz").read_all()
        if db.vectors.max() > 1.0 or q.vectors.max() > 1.0:  # raw 0-255 pixels: scale as load_fmnist does
            db.vectors, q.vectors = db.vectors / np.float32(255.0), q.vectors / np.float32(255.0)
        return db, q, None
    if args.corpus is None:
        sys.exit("error: --dataset debian needs --corpus FILE (a JSONL corpus labelled by section)")
    return Corpus(args.corpus).read_all(), None, args.query_count


def one_run(method: str, options: dict, seed: int, data: tuple, args) -> dict:
    """Train and score one hasher; the figures of one table cell."""
    db, queries, query_count = data
    extra = {"neighbour_k": None} if "neighbour_k" in inspect.signature(run_evaluation).parameters else {}
    report = run_evaluation(db, queries, query_count=query_count, methods=[method], bits=[args.bits], seed=seed,
                            ae_options={**options, "threads": args.threads, "device": "cpu"},
                            knn_ceiling=False, **extra)
    r = report["results"][0]
    return {"map": r["metrics"]["map"], "p100": r["metrics"]["precision_at_100"], "seconds": r["train_seconds"],
            "epochs": (r.get("history") or {}).get("epochs_run")}


def logged(path: Path) -> dict:
    """The runs of the log, by their key."""
    runs = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                runs[key(row)] = row
    return runs


def key(row: dict) -> str:
    return json.dumps([row["dataset"], row["bits"], row["variant"], row["options"], row["seed"], row.get("threads")])


def mean_std(values: list[float], digits: int = 4) -> str:
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1) if len(values) > 1 else 0.0:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=["fm", "debian"], default="fm")
    ap.add_argument("--fm", type=Path, default=Path("fashion-mnist"), help="folder with train.npz and test.npz (scripts/prepare_fashion_mnist.py -o DIR)")
    ap.add_argument("--corpus", type=Path, help="debian: the JSONL corpus (labels = section)")
    ap.add_argument("--query-count", type=int, default=2000, help="debian: queries drawn from the corpus")
    ap.add_argument("--bits", type=int, default=32)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, of: {', '.join(VARIANTS)}")
    ap.add_argument("--no-itq", action="store_true", help="skip the ITQ row")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the figures depend on it: float sums)")
    ap.add_argument("--log", type=Path, default=Path("ablate_ae.jsonl"))
    ap.add_argument("--table-only", action="store_true", help="run nothing: the table of the runs in --log")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME:OPTION=VALUE,...",
                    help="a variant of one's own, e.g. n20:n_neighbors=20 (values read as JSON); repeatable")
    args = ap.parse_args()
    for spec in args.extra:
        name, _, opts = spec.partition(":")
        VARIANTS[name] = {k: json.loads(v) for k, v in (o.split("=", 1) for o in opts.split(",") if o)}
    seeds = [int(s) for s in args.seeds.split(",")]
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        sys.exit(f"error: unknown variant {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    rows = [(name, "ae", VARIANTS[name]) for name in names] + ([] if args.no_itq else [("itq", "itq", {})])
    done = logged(args.log)
    data = None
    for seed in seeds:
        for name, method, options in rows:
            line = {"dataset": args.dataset, "bits": args.bits, "variant": name, "options": options, "seed": seed,
                    "threads": args.threads}
            if args.table_only or key(line) in done:
                continue
            data = data or load(args)
            started = time.time()
            line.update(one_run(method, options, seed, data, args), wall_seconds=round(time.time() - started, 1))
            done[key(line)] = line
            print(json.dumps(line), file=sys.stderr, flush=True)
            with open(args.log, "a") as fh:
                fh.write(json.dumps(line) + "\n")
    print(f"\n{args.dataset}, {args.bits} bits, seeds {args.seeds}, {args.threads} torch thread(s)\n")
    print("| variant | options | seeds | mAP | P@100 | train s |")
    print("|---|---|---|---|---|---|")
    for name, _, options in rows:
        runs = [r for r in (done.get(key({"dataset": args.dataset, "bits": args.bits, "variant": name,
                                          "options": options, "seed": s, "threads": args.threads})) for s in seeds) if r]
        if not runs:
            continue
        opts = ", ".join(f"{k}={v}" for k, v in options.items()) or "(defaults)"
        print(f"| {name} | {opts} | {','.join(str(r['seed']) for r in runs)} | {mean_std([r['map'] for r in runs])} "
              f"| {mean_std([r['p100'] for r in runs])} | {mean_std([r['seconds'] for r in runs], 1)} |")


if __name__ == "__main__":
    main()
