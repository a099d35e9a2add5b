from __future__ import annotations

import pytest
import torch

from fedsilo.errors import ModelError
from fedsilo.models import ModelSpec, build_model, get_params


def test_same_seed_same_initial_weights() -> None:
    spec = ModelSpec("mlp", (10,), 3, (8,))
    a, b = get_params(build_model(spec, seed=1)), get_params(build_model(spec, seed=1))
    assert all((a[k] == b[k]).all() for k in a)
    c = get_params(build_model(spec, seed=2))
    assert any((a[k] != c[k]).any() for k in a)


def test_cnn_on_images_gives_one_logit_per_class() -> None:
    model = build_model(ModelSpec("cnn", (1, 8, 8), 10), seed=0)
    assert model(torch.zeros(4, 1, 8, 8)).shape == (4, 10)


def test_cnn_on_tabular_data_is_refused_with_advice() -> None:
    with pytest.raises(ModelError, match=r"image input.*Use 'mlp' or 'logreg'"):
        build_model(ModelSpec("cnn", (30,), 2), seed=0)


def test_unknown_model_name_lists_choices() -> None:
    with pytest.raises(ModelError, match=r"unknown model 'resnet'.*logreg, mlp, cnn"):
        build_model(ModelSpec("resnet", (4,), 2), seed=0)


def test_import_path_factory_is_used() -> None:
    spec = ModelSpec("tests.models.user_model:make", (6,), 3, options={"width": 5})
    model = build_model(spec, seed=0)
    assert model(torch.zeros(2, 6)).shape == (2, 3)


def test_import_path_to_missing_module_says_where_to_install() -> None:
    with pytest.raises(ModelError, match=r"cannot import module 'nope_pkg\.m'.*PYTHONPATH"):
        build_model(ModelSpec("nope_pkg.m:make", (6,), 3), seed=0)


def test_factory_with_wrong_output_size_is_refused() -> None:
    with pytest.raises(ModelError, match="expected 3 logits"):
        build_model(ModelSpec("tests.models.user_model:make_wrong", (6,), 3), seed=0)


def test_factory_that_raises_becomes_a_model_error_naming_it() -> None:
    with pytest.raises(ModelError, match=r"make_broken.*RuntimeError: weights file missing"):
        build_model(ModelSpec("tests.models.user_model:make_broken", (6,), 3), seed=0)


def test_unknown_option_for_factory_is_explained() -> None:
    spec = ModelSpec("tests.models.user_model:make", (6,), 3, options={"depth": 2})
    with pytest.raises(ModelError, match=r"unexpected keyword argument 'depth'"):
        build_model(spec, seed=0)
