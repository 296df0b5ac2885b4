"""One registry style for every family of named choices, and the config's typed choices."""

from __future__ import annotations

import typing

import pytest

from text4vis.config import (
    AGGREGATIONS,
    PROTOCOLS,
    Aggregation,
    ClassifierName,
    ConfigError,
    DecoderName,
    ObjectiveName,
    TemplateSetName,
    TemporalHeadName,
    TrainPrecision,
    ZeroShotProtocol,
    load_config,
)
from text4vis.data.decoders import DECODERS
from text4vis.engine.objectives import OBJECTIVES, build_objective
from text4vis.errors import Text4VisError
from text4vis.models.classifier import (
    CLASSIFIERS,
    CONFIG_CLASSIFIERS,
    STORAGES,
    ClassifierError,
    build_classifier,
)
from text4vis.models.temporal import TEMPORAL_HEADS, TemporalHeadError, build_temporal_head
from text4vis.models.text import TEMPLATE_SETS
from text4vis.registry import Registry, RegistryError
from text4vis.runtime import TRAIN_PRECISIONS
from text4vis.search import BACKENDS, VideoIndexError, build_backend


def test_registry_registers_with_a_decorator_and_lists_names_in_order() -> None:
    family: Registry[typing.Callable[[], int]] = Registry("widget", key="model.widget")

    @family.register("one")
    def one() -> int:
        return 1

    @family.register("two")
    def two() -> int:
        return 2

    assert one() == 1  # the decorator returns its target unchanged
    assert family.names() == ("one", "two")
    assert family.get("two") is two and family["one"] is one
    assert "one" in family and "three" not in family and len(family) == 2
    assert sorted(family) == ["one", "two"]
    with pytest.raises(RegistryError, match=r"unknown widget 'three' \(model.widget\); "):
        family.get("three")
    with pytest.raises(RegistryError, match=r"choose one of \['one', 'two'\]"):
        family["three"]
    with pytest.raises(RegistryError, match="already registered"):
        family.register("one")(two)
    family.register("one")(one)  # registering the same object again is harmless


def test_every_family_is_a_registry_with_a_package_error() -> None:
    families = {
        TEMPORAL_HEADS: TemporalHeadError,
        CLASSIFIERS: ClassifierError,
        STORAGES: ClassifierError,
        OBJECTIVES: ConfigError,
        BACKENDS: VideoIndexError,
    }
    for registry, error in families.items():
        assert isinstance(registry, Registry)
        assert issubclass(error, Text4VisError)
        with pytest.raises(error, match="choose one of") as caught:
            registry.get("no-such-name")
        for name in registry.names():  # the message lists every valid name
            assert repr(name) in str(caught.value)


def test_builders_raise_the_family_error_for_unknown_names() -> None:
    with pytest.raises(TemporalHeadError, match=r"'pool'.*choose one of \['mean'"):
        build_temporal_head("pool", embed_dim=8, visual=None)  # type: ignore[arg-type]
    with pytest.raises(ClassifierError, match="'zeros'"):
        build_classifier("zeros", class_names=["a"], embed_dim=4)
    with pytest.raises(VideoIndexError, match="unknown search backend 'annoy'"):
        build_backend("annoy", None)  # type: ignore[arg-type]
    cfg = load_config()
    cfg.train.objective = "hinge"  # type: ignore[assignment]  # past the loader's check
    with pytest.raises(ConfigError, match=r"'hinge' \(train.objective\); choose one of"):
        build_objective(cfg, None, ["a"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("literal", "names"),
    [
        (TemporalHeadName, TEMPORAL_HEADS.names()),
        (ClassifierName, CONFIG_CLASSIFIERS),
        (ObjectiveName, OBJECTIVES.names()),
        (DecoderName, DECODERS),
        (TemplateSetName, tuple(TEMPLATE_SETS)),
        (TrainPrecision, TRAIN_PRECISIONS),
        (Aggregation, AGGREGATIONS),
        (ZeroShotProtocol, PROTOCOLS),
    ],
)
def test_config_choices_and_registries_name_the_same_things(
    literal: typing.Any, names: tuple[str, ...]
) -> None:
    assert set(typing.get_args(literal)) == set(names)
    assert len(typing.get_args(literal)) == len(names)


def test_classifiers_chosen_by_the_prompt_are_not_config_classifiers() -> None:
    assert set(CLASSIFIERS.names()) - set(CONFIG_CLASSIFIERS) == {"templates", "coop"}


@pytest.mark.parametrize(
    ("override", "key", "choices"),
    [
        ("model.temporal=trans", "model.temporal", "['mean', 'transformer', 'tokent1d', 't1d']"),
        ("model.classifier=zeros", "model.classifier", "'orthogonal'"),
        ("train.precision=fp64", "train.precision", "['bf16', 'fp16', 'fp32']"),
        ("train.objective=hinge", "train.objective", "['ce', 'contrastive']"),
        ("data.decoder=opencv", "data.decoder", "['pyav', 'torchcodec', 'decord']"),
        ("eval.aggregate=3", "eval.aggregate", "['prob', 'logit']"),
    ],
)
def test_the_loader_rejects_a_value_outside_a_literal(
    override: str, key: str, choices: str
) -> None:
    value = override.split("=", 1)[1]
    with pytest.raises(ConfigError) as caught:
        load_config(None, [override])
    message = str(caught.value)
    assert message.startswith(f"{key}: ") and value in message and choices in message


def test_a_literal_value_is_checked_in_a_yaml_file_and_after_env_expansion(
    tmp_path: typing.Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  temporal: meen\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: model.temporal: 'meen'.*did you mean 'mean'"):
        load_config(bad)
    from_env = tmp_path / "env.yaml"
    from_env.write_text("model:\n  temporal: ${HEAD:-mean}\n")
    assert load_config(from_env).model.temporal == "mean"
    monkeypatch.setenv("HEAD", "t1d")
    assert load_config(from_env).model.temporal == "t1d"
    monkeypatch.setenv("HEAD", "conv")
    with pytest.raises(ConfigError, match=r"model.temporal: 'conv'"):
        load_config(from_env)
