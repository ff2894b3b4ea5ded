"""The rank hasher: ITQ fine-tuned by listwise distillation of the exact cosine neighbours."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from semhash.errors import ConfigError, ModelError
from semhash.evaluate import neighbour_recalls
from semhash.hashers import hasher_class
from semhash.hashers.baselines import ITQHasher
from semhash.hashers.distill import topk_loss
from semhash.hashers.ranking import RankHasher, candidates, nearest

FAST = dict(epochs=10, lr=1e-3, anchors=600, batch_size=64, threads=1, device="cpu")


@pytest.fixture(scope="module")
def data():
    """Points on a few smooth curves in 24 dimensions: neighbours are local, not just clusters."""
    rng = np.random.default_rng(0)
    t = rng.random((900, 1)) * 6
    basis = rng.normal(size=(4, 3, 24))
    which = rng.integers(0, 4, 900)
    X = np.einsum("nk,nkd->nd", np.c_[np.sin(t), np.cos(t), t / 3], basis[which]) + 0.3 * rng.normal(size=(900, 24))
    return X[:800].astype(np.float32), X[800:].astype(np.float32)


def _recall(h, db, q) -> dict:
    return neighbour_recalls(q, db, {0: (h.encode(q), h.encode(db))}, k=10, candidates=(None, 50),
                             weights={0: h.logits(q)})[0]


def test_fine_tuning_ranks_held_out_neighbours_better_than_itq(data):
    db, q = data
    itq = ITQHasher(bits=16, seed=0).fit(db)
    rank = RankHasher(bits=16, seed=0, **FAST).fit(db)
    before, after = _recall(itq, db, q), _recall(rank, db, q)
    assert after["asym codes"] > before["asym codes"] and after["asym rerank 50"] > before["asym rerank 50"]
    losses = rank.history["rank_loss"]
    assert len(losses) == 10 and losses[-1] < losses[0]
    # no epochs: exactly ITQ
    plain = RankHasher(bits=16, seed=0, **{**FAST, "epochs": 0}).fit(db)
    np.testing.assert_array_equal(plain.projection, itq.projection)


def test_the_soft_loss_also_beats_itq_and_differs_from_the_default_topk(data):
    db, q = data
    itq, soft = ITQHasher(bits=16, seed=0).fit(db), RankHasher(bits=16, seed=0, loss="soft", **FAST).fit(db)
    topk = RankHasher(bits=16, seed=0, **FAST).fit(db)  # the default loss
    assert _recall(soft, db, q)["asym rerank 50"] > _recall(itq, db, q)["asym rerank 50"]
    assert not np.array_equal(topk.projection, soft.projection) and topk.settings()["loss"] == "topk"
    losses = soft.history["rank_loss"]
    assert losses[-1] < losses[0]


def test_topk_loss_counts_positives_against_negatives_only():
    import torch

    score = torch.tensor([[5.0, 4.0, 0.0, 9.0, 1.0, 2.0]])  # 2 positives, rank 2 left out, negatives from 3
    want = np.mean([np.log(np.exp(p) + np.exp([9.0, 1.0, 2.0]).sum()) - p for p in (5.0, 4.0)])
    assert float(topk_loss(score, 2, 3)) == pytest.approx(want, rel=1e-6)
    moved = score.clone()
    moved[0, 2] = 100.0  # between the positives and the negatives: ignored
    assert float(topk_loss(moved, 2, 3)) == pytest.approx(want, rel=1e-6)
    better = score.clone()
    better[0, :2] += 3.0  # positives further ahead of the negatives: a lower loss
    assert float(topk_loss(better, 2, 3)) < want


def test_seeded_fit_is_deterministic_and_save_load_round_trips(data, tmp_path):
    db, q = data
    a = RankHasher(bits=8, seed=3, **FAST).fit(db)
    b = RankHasher(bits=8, seed=3, **FAST).fit(db)
    np.testing.assert_array_equal(a.projection, b.projection)
    a.save(tmp_path)
    loaded = hasher_class("rank").load(tmp_path)
    assert isinstance(loaded, RankHasher) and loaded.settings() == a.settings()
    np.testing.assert_array_equal(loaded.logits(q), a.logits(q))


def test_nearest_and_candidates():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 5)).astype(np.float32)
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    got = nearest(unit, np.array([0, 7, 59]), 10)
    for row, anchor in zip(got, (0, 7, 59)):
        sims = unit @ unit[anchor]
        sims[anchor] = -np.inf
        assert row.tolist() == np.argsort(-sims, kind="stable")[:10].tolist()
    c = candidates(got, 3, 4, 5, 60, rng)
    assert c.shape == (3, 12) and (c[:, :3] == got[:, :3]).all()
    assert all(set(c[i, 3:7]) <= set(got[i, 3:]) for i in range(3))


def test_refusals():
    with pytest.raises(ModelError, match="the rank hasher needs dense vectors"):
        RankHasher(bits=8, **FAST).fit(sp.random(50, 20, density=0.3, format="csr", random_state=0))
    with pytest.raises(ConfigError, match="rank hasher: epochs must be >= 0"):
        RankHasher(bits=8, epochs=-1)
    with pytest.raises(ConfigError, match="depth > near"):
        RankHasher(bits=8, near=50, depth=50)
    with pytest.raises(ConfigError, match="rank hasher: loss must be one of soft, topk, got 'hard'"):
        RankHasher(bits=8, loss="hard")


def test_cli_trains_indexes_and_queries_with_the_rank_hasher(tmp_path, vector_docs, topic_docs, write_jsonl):
    import json

    from helpers import run

    corpus = write_jsonl(tmp_path / "vectors.jsonl", vector_docs(120, dim=16))
    r = run("index", corpus, "--hasher", "rank", "--bits", "16", "--keep-features", "-q", "-o", tmp_path / "idx")
    assert r.exit_code == 0, r.output
    query = tmp_path / "q.jsonl"
    query.write_text(json.dumps({"id": "q", "vector": vector_docs(120, dim=16)[7]["vector"]}) + "\n")
    r = run("query", query, "-i", tmp_path / "idx", "-k", "3", "--rerank", "--asymmetric")
    assert r.exit_code == 0, r.output
    line = json.loads(r.stdout)
    assert line["strategy"] == "asym+rerank" and line["hits"][0]["id"] == "v7" and line["hits"][0]["score"] == 1.0
    texts = write_jsonl(tmp_path / "texts.jsonl", topic_docs(40))
    r = run("train", texts, "--hasher", "rank", "-q", "-o", tmp_path / "m")
    assert r.exit_code == 1 and not (tmp_path / "m").exists()
    assert r.stderr.startswith("Error: the rank hasher needs dense vectors (embeddings, images), not sparse TF-IDF")
