"""semhash.model: fitting featurizer + hasher together, and the saved model directory."""
from __future__ import annotations

import json

import numpy as np
import pytest

from semhash.codes import to_hex
from semhash.corpus import Batch, Corpus
from semhash.errors import ModelError
from semhash.hashers.ae import AutoencoderHasher
from semhash.hashers.train import TrainConfig
from semhash.model import MANIFEST, MODEL_FORMAT, Model, code_records


def hasher(bits=16, epochs=3, seed=0) -> AutoencoderHasher:
    return AutoencoderHasher(bits=bits, hidden=[32],
                             train_config=TrainConfig(epochs=epochs, batch_size=16, seed=seed, device="cpu"))


@pytest.fixture(scope="module")
def text_batch(topic_docs):
    docs = topic_docs(60, seed=2)
    return Batch(ids=[d["id"] for d in docs], texts=[d["text"] for d in docs],
                 labels=[(d["label"],) for d in docs], payloads=[{} for _ in docs])


@pytest.fixture(scope="module")
def vector_batch():
    x = np.random.default_rng(0).normal(size=(80, 12)).astype(np.float32)
    return Batch(ids=[str(i) for i in range(80)], vectors=x, labels=[()] * 80, payloads=[{}] * 80)


@pytest.fixture(scope="module")
def text_model(text_batch):
    return Model.fit(text_batch, hasher(), {"max_features": 100}, progress=False)


@pytest.fixture
def saved(text_model, tmp_path):
    return text_model.save(tmp_path / "model")


def test_fit_on_texts(text_model, text_batch):
    assert text_model.kind == "text" and text_model.bits == 16
    assert text_model.info["trained_on"] == 60
    assert text_model.featurizer.dim == 30
    codes = text_model.encode(text_batch)
    assert codes.shape == (60, 2) and codes.dtype == np.uint8
    logits = text_model.logits(text_batch)
    assert logits.shape == (60, 16)
    assert np.array_equal(np.packbits(logits > 0, axis=1), codes)
    assert text_model.features(text_batch).shape == (60, 30)


def test_fit_on_vectors(vector_batch):
    m = Model.fit(vector_batch, hasher(bits=8), {"standardize": True}, progress=False)
    assert m.kind == "vector" and m.bits == 8
    assert m.featurizer.standardize and m.featurizer.output_type == "real"
    assert m.hasher.model.cfg.output_type == "real" and m.hasher.model.cfg.input_dim == 12
    assert m.encode(vector_batch).shape == (80, 1)


def test_save_load_identical_codes(saved, text_model, text_batch):
    assert saved.is_dir()
    assert sorted(p.name for p in saved.iterdir()) == ["featurizer", "hasher", MANIFEST]
    loaded = Model.load(saved)
    assert np.array_equal(loaded.encode(text_batch), text_model.encode(text_batch))
    assert np.array_equal(loaded.logits(text_batch), text_model.logits(text_batch))
    assert loaded.kind == "text" and loaded.bits == 16
    assert loaded.checksum == text_model.checksum and len(loaded.checksum) == 64
    info = json.loads((saved / MANIFEST).read_text())
    assert info["format"] == MODEL_FORMAT
    assert (info["kind"], info["bits"], info["feature_dim"], info["output_type"]) == ("text", 16, 30, "distribution")
    assert info["hasher"]["name"] == "ae" and info["trained_on"] == 60
    assert info["history"]["epochs_run"] == 3
    assert {"python", "semhash", "torch", "numpy"} <= set(info["versions"])


def test_save_replaces_a_model_only_with_overwrite(text_model, tmp_path):
    target = tmp_path / "model"
    target.mkdir()  # an empty directory may be used: nothing is lost
    text_model.save(target)
    manifest = (target / MANIFEST).read_bytes()
    with pytest.raises(ModelError) as e:
        text_model.save(target)
    assert str(e.value) == (f"{target} is an existing semhash model; replace it with --force (overwrite=True in "
                            "Python) or choose another path")
    assert (target / MANIFEST).read_bytes() == manifest
    text_model.save(target, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary or .old siblings left
    Model.load(target)


def test_loaded_model_saves_again(saved, text_batch, tmp_path):
    loaded = Model.load(saved)
    again = loaded.save(tmp_path / "copy")
    assert np.array_equal(Model.load(again).encode(text_batch), loaded.encode(text_batch))


def test_count_weighted_model_round_trip(text_batch, tmp_path):
    m = Model.fit(text_batch, hasher(epochs=1), {"weighting": "count"}, progress=False)
    loaded = Model.load(m.save(tmp_path / "m"))
    assert loaded.featurizer.dim == m.featurizer.dim  # known right after load, before any transform
    assert np.array_equal(loaded.encode(text_batch), m.encode(text_batch))


@pytest.mark.parametrize("victim", ["featurizer/featurizer.json", "featurizer/idf.npy", "hasher/model.pt"])
def test_tampering_is_detected(saved, victim):
    p = saved / victim
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x01
    p.write_bytes(bytes(data))
    with pytest.raises(ModelError) as e:
        Model.load(saved)
    assert "checksum" in str(e.value) and str(saved) in str(e.value)


def test_extra_or_missing_file_is_detected(saved):
    (saved / "hasher" / "extra.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match="checksum"):
        Model.load(saved)
    (saved / "hasher" / "extra.bin").unlink()
    Model.load(saved)
    (saved / "featurizer" / "idf.npy").unlink()
    with pytest.raises(ModelError, match="checksum"):
        Model.load(saved)


def test_newer_format_is_refused(saved):
    info = json.loads((saved / MANIFEST).read_text())
    info["format"] = MODEL_FORMAT + 1
    (saved / MANIFEST).write_text(json.dumps(info))
    with pytest.raises(ModelError) as e:
        Model.load(saved)
    assert str(e.value) == (f"{saved} was written by a newer semhash (model format {MODEL_FORMAT + 1}); "
                            "upgrade semhash to read it")


def test_corrupt_manifest(saved):
    (saved / MANIFEST).write_text("{not json")
    with pytest.raises(ModelError, match="is corrupt"):
        Model.load(saved)


@pytest.mark.parametrize("change,why", [
    (lambda m: [m], "a JSON list, not an object"),
    (lambda m: None, "a JSON NoneType, not an object"),
    (lambda m: {**m, "hasher": "ae"}, "field 'hasher': \"ae\""),
    (lambda m: {**m, "hasher": {"name": None}}, "field 'hasher' has no name"),
    (lambda m: {**m, "format": True}, "field 'format': true"),
    (lambda m: {k: v for k, v in m.items() if k != "checksum"}, "field 'checksum': missing"),
])
def test_a_damaged_manifest_names_the_field(saved, change, why):
    path = saved / MANIFEST
    path.write_text(json.dumps(change(json.loads(path.read_text()))))
    with pytest.raises(ModelError) as e:
        Model.load(saved)
    assert str(e.value) == f"{path} is corrupt ({why}); the model is damaged: train it again"


@pytest.mark.parametrize("make", ["empty_dir", "missing", "file"])
def test_not_a_model_dir(tmp_path, make):
    d = tmp_path / "thing"
    if make == "empty_dir":
        d.mkdir()
        (d / "notes.txt").write_text("hi")
    elif make == "file":
        d.write_text("a file")
    with pytest.raises(ModelError) as e:
        Model.load(d)
    assert str(e.value) == (f"{d} is not a semhash model directory (no manifest.json); "
                            "train one with `semhash train CORPUS -o DIR`")


def test_check_kind(text_model, vector_batch, text_batch):
    text_model.check_kind(text_batch)
    with pytest.raises(ModelError) as e:
        text_model.check_kind(vector_batch, "queries.npy")
    assert str(e.value) == "queries.npy holds vectors but the model was trained on texts"
    with pytest.raises(ModelError, match="trained on texts, but the input holds vectors"):
        text_model.encode(vector_batch)


def test_encode_corpus_and_code_records(text_model, text_batch, tmp_path, write_jsonl):
    p = write_jsonl(tmp_path / "c.jsonl", [{"id": i, "text": t} for i, t in zip(text_batch.ids, text_batch.texts)])
    pairs = list(text_model.encode_corpus(Corpus(p, batch_size=25)))
    assert [len(b) for b, _ in pairs] == [25, 25, 10]
    codes = np.concatenate([c for _, c in pairs])
    assert np.array_equal(codes, text_model.encode(text_batch))
    recs = [r for b, c in pairs for r in code_records(b, c)]
    assert recs[0] == {"id": text_batch.ids[0], "code": to_hex(codes[:1])[0]}
    assert [r["id"] for r in recs] == text_batch.ids
    assert all(len(r["code"]) == 4 for r in recs)


@pytest.mark.parametrize("part", ["train", "featurizer"])
def test_model_files_with_an_extra_or_null_key_are_damage_not_a_crash(saved, part):
    """A model file edited (and its manifest checksum updated to match) with an unknown or null key."""
    import torch

    from semhash.fsutil import directory_checksum

    if part == "train":
        path = saved / "hasher" / "model.pt"
        ck = torch.load(path, weights_only=True)
        ck["train"]["surprise"] = 1
        torch.save(ck, path)
    else:
        path = next((saved / "featurizer").glob("*.json"))
        state = json.loads(path.read_text())
        state[next(k for k in state if k != "type")] = None
        path.write_text(json.dumps(state))
    info = json.loads((saved / MANIFEST).read_text())
    info["checksum"] = directory_checksum(saved, skip=(MANIFEST,))
    (saved / MANIFEST).write_text(json.dumps(info))
    with pytest.raises(ModelError, match="cannot load the"):
        Model.load(saved)
