"""A saved config must say everything that changes the computation (format_version 2, with an explicit
migration from the unversioned format); the device a model is loaded on is where its weights are."""

import json
import shutil

import pytest
import torch

from sparse_lens.model import HookedSparseTransformer, SparseTransformerConfig, list_pretrained
from sparse_lens.model.checkpoint import PRETRAINED_DIR
from sparse_lens.model.config import FORMAT_VERSION, REQUIRED_SAVED_FIELDS

from .conftest import make_model


@pytest.fixture
def shipped_copy(tmp_path):
    """A copy of python-sparse-tiny (config, weights, tokenizer) to corrupt."""
    out = tmp_path / "copy"
    out.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(PRETRAINED_DIR / "python-sparse-tiny" / name, out / name)
    return out


def edit_config(directory, change):
    path = directory / "config.json"
    cfg = json.loads(path.read_text())
    change(cfg)
    path.write_text(json.dumps(cfg))


def test_a_missing_field_is_an_error_naming_it(shipped_copy):
    edit_config(shipped_copy, lambda c: c.pop("activation_sparsity"))
    with pytest.raises(ValueError, match=r"config.json: missing field\(s\) \['activation_sparsity'\]"):
        HookedSparseTransformer.from_pretrained(shipped_copy)


@pytest.mark.parametrize("field", sorted(REQUIRED_SAVED_FIELDS))
def test_every_computation_field_is_required(tmp_path, field):
    make_model().save_pretrained(tmp_path / "m")
    edit_config(tmp_path / "m", lambda c: c.pop(field))
    with pytest.raises(ValueError, match=f"missing field.*{field}"):
        HookedSparseTransformer.from_pretrained(tmp_path / "m")


def test_unversioned_configs_migrate_and_newer_ones_are_refused(shipped_copy):
    model = HookedSparseTransformer.from_pretrained(shipped_copy)
    assert model.cfg.activation_sparsity == 0.5

    def to_v1(c):  # the format before versioning: no format_version, a "device" field
        c.pop("format_version")
        c["device"] = "cuda"

    edit_config(shipped_copy, to_v1)
    old = HookedSparseTransformer.from_pretrained(shipped_copy)
    assert old.cfg.to_dict() == model.cfg.to_dict() and old.cfg.device == "cpu"
    edit_config(shipped_copy, lambda c: c.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ValueError, match="format_version .* newer sparse_lens"):
        HookedSparseTransformer.from_pretrained(shipped_copy)


def test_shipped_and_saved_configs_carry_the_version(tmp_path):
    for name in list_pretrained():
        saved = json.loads((PRETRAINED_DIR / name / "config.json").read_text())
        assert saved["format_version"] == FORMAT_VERSION and "device" not in saved, name
        assert REQUIRED_SAVED_FIELDS <= set(saved), name
    make_model().save_pretrained(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format_version"] == FORMAT_VERSION
    # configs a user writes keep their defaults: only saved configs are strict
    assert SparseTransformerConfig.from_dict({"n_layers": 1, "d_model": 16, "n_ctx": 8, "d_vocab": 10}).d_head == 16


def test_the_weights_are_where_cfg_device_says():
    cfg = SparseTransformerConfig(n_layers=1, d_model=32, n_ctx=8, d_vocab=20, d_head=8, device="meta")
    model = HookedSparseTransformer(cfg)
    assert {p.device.type for p in model.parameters()} == {"meta"}
    model = make_model()
    model.to("meta")
    assert model.cfg.device == "meta" and {p.device.type for p in model.parameters()} == {"meta"}
    model = make_model().to(torch.float64)
    assert model.cfg.dtype == torch.float64 and model.cfg.device == "cpu"


def test_from_pretrained_device(tmp_path):
    make_model().save_pretrained(tmp_path / "m")
    model = HookedSparseTransformer.from_pretrained(tmp_path / "m", device="cpu")
    assert model.cfg.device == "cpu"
    with pytest.raises(ValueError, match="device: 'tpu9' is not a device name"):
        HookedSparseTransformer.from_pretrained(tmp_path / "m", device="tpu9")
    if torch.cuda.is_available():
        model = HookedSparseTransformer.from_pretrained(tmp_path / "m", device="cuda")
        assert model.cfg.device.startswith("cuda") and {p.device.type for p in model.parameters()} == {"cuda"}
    else:
        with pytest.raises(ValueError, match="device: 'cuda': CUDA is not available"):
            HookedSparseTransformer.from_pretrained(tmp_path / "m", device="cuda")
