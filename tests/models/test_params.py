"""set_params / get_params: the model holds exactly the arrays loaded, never aliases them."""

from __future__ import annotations

import numpy as np
import pytest

from fedsilo.models import ModelSpec, build_model, get_params, set_params


def _params(seed: int) -> dict[str, np.ndarray]:
    return get_params(build_model(ModelSpec("mlp", (4,), 3, hidden=(5,)), seed=seed))


@pytest.mark.parametrize("layout", ["writable", "read-only", "strided"])
def test_set_params_loads_the_values_and_keeps_no_reference(layout: str) -> None:
    model = build_model(ModelSpec("mlp", (4,), 3, hidden=(5,)), seed=0)
    wanted = _params(1)
    given = {k: v.copy() for k, v in wanted.items()}
    if layout == "read-only":
        for v in given.values():
            v.flags.writeable = False
    elif layout == "strided":  # every other element of a twice-as-long buffer
        given = {k: np.repeat(v.ravel(), 2)[::2].reshape(v.shape) for k, v in wanted.items()}
    set_params(model, given)
    assert all(np.array_equal(v, wanted[k]) for k, v in get_params(model).items())
    if layout == "writable":  # the model copied: changing the arrays afterwards changes nothing
        for v in given.values():
            v.fill(7.0)
        assert all(np.array_equal(v, wanted[k]) for k, v in get_params(model).items())
