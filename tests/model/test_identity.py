"""Model identity: a weights fingerprint that follows the weights, and the one rule for applying an
artifact recorded for a model."""

import pytest
import torch

from sparse_lens.model.identity import check_same_model, weights_fingerprint

from .conftest import make_model, randomize


def test_fingerprint_follows_the_weights():
    a, b = make_model(), make_model()
    assert weights_fingerprint(a) == weights_fingerprint(b)  # same seed, same weights
    before = weights_fingerprint(a)
    with torch.no_grad():
        a.blocks[0].mlp.W_in[0, 0] += 1  # in place: the cached value must not be reused
    assert weights_fingerprint(a) != before
    a.load_state_dict(b.state_dict())
    assert weights_fingerprint(a) == before
    assert weights_fingerprint(randomize(make_model(), seed=3)) != before
    assert weights_fingerprint(make_model().to(torch.float64)) != before


def test_check_same_model():
    a, other = make_model(), randomize(make_model(), seed=3)
    fp = weights_fingerprint(a)
    check_same_model(a, what="circuit 'x'", recorded_name="a", recorded_fingerprint=fp)
    with pytest.raises(ValueError, match=r"circuit 'x' belongs to model 'a' \(weights .*\), not to this model.*strict=False"):
        check_same_model(other, what="circuit 'x'", recorded_name="a", recorded_fingerprint=fp)
    check_same_model(other, what="circuit 'x'", recorded_name="a", recorded_fingerprint=fp, strict=False)
    with pytest.warns(UserWarning, match="records no model fingerprint"):
        check_same_model(other, what="circuit 'x'", recorded_name="", recorded_fingerprint=None)
