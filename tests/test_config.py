"""The typed config tree: defaults, YAML and --set layers, errors, round trip."""

from __future__ import annotations

import dataclasses

import pytest

from text4vis.config import (
    Config,
    ConfigError,
    config_from_dict,
    dump_config,
    load_config,
    parse_override,
)


def write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_follow_the_paper():
    cfg = load_config()
    assert cfg.train.lr == 5e-5
    assert cfg.train.min_lr == 5e-6
    assert cfg.train.weight_decay == 0.2
    assert cfg.train.betas == [0.9, 0.98]
    assert cfg.train.warmup_epochs == 5.0 and cfg.train.epochs == 30
    assert cfg.data.num_segments == 8
    assert cfg.model.template == "a video of a person {}."
    assert cfg.model.classifier == "text"


def test_every_field_has_a_comment():
    import inspect

    import text4vis.config as module

    source = inspect.getsource(module)
    for section in dataclasses.fields(Config):
        for f in dataclasses.fields(
            section.type if isinstance(section.type, type) else getattr(module, section.type)
        ):
            line = next(
                line for line in source.splitlines() if line.strip().startswith(f"{f.name}:")
            )
            assert "#" in line, f"{section.name}.{f.name} has no comment"


def test_yaml_overrides_defaults(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1e-4\n  epochs: 3\ndata:\n  num_segments: 16\n")
    cfg = load_config(path)
    assert cfg.train.lr == pytest.approx(1e-4)
    assert isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 3
    assert cfg.data.num_segments == 16
    assert cfg.data.batch_size == 32  # untouched default


def test_set_overrides_yaml_and_later_set_wins(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1e-4\n")
    cfg = load_config(path, ["train.lr=2e-4", "model.tokent1d_blocks=[0, 4, 8]", "train.lr=3e-4"])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.model.tokent1d_blocks == [0, 4, 8]


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert load_config(None, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"train\.epochs: expected int, got float 2\.5"):
        load_config(None, ["train.epochs=2.5"])


def test_unknown_key_suggests_closest_match():
    with pytest.raises(ConfigError) as info:
        load_config(None, ["data.num_segment=8"])
    message = str(info.value)
    assert "unknown key data.num_segment" in message
    assert "did you mean data.num_segments?" in message
    assert "num_clips" in message  # lists the valid keys


def test_unknown_key_in_yaml_names_file(tmp_path):
    path = write(tmp_path, "model:\n  temporl: mean\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "did you mean model.temporal?" in str(info.value)


def test_unknown_section():
    with pytest.raises(ConfigError, match="did you mean train"):
        config_from_dict({"trian": {}})


def test_wrong_type_names_key_value_and_type(tmp_path):
    path = write(tmp_path, "data:\n  batch_size: lots\n")
    with pytest.raises(ConfigError, match=r"data\.batch_size: expected int, got str 'lots'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"model\.learn_logit_scale: expected bool"):
        load_config(None, ["model.learn_logit_scale=3"])
    with pytest.raises(ConfigError, match=r"train\.betas\[1\]: expected float"):
        load_config(None, ["train.betas=[0.9, x]"])


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_config(missing)


def test_malformed_override():
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.lr")
    with pytest.raises(ConfigError, match="is a section"):
        load_config(None, ["train=3"])


def test_environment_variables_in_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("T4V_DATA", "/data/k400")
    path = write(tmp_path, "data:\n  root: ${T4V_DATA}\n  labels: ${T4V_MISSING:-labels.csv}\n")
    cfg = load_config(path)
    assert cfg.data.root == "/data/k400"
    assert cfg.data.labels == "labels.csv"
    monkeypatch.delenv("T4V_DATA")
    with pytest.raises(ConfigError, match="T4V_DATA is not set"):
        load_config(path)


def test_round_trip(tmp_path):
    cfg = load_config(None, ["train.lr=1e-3", "model.tokent1d_blocks=[1,2]", "run.name=x"])
    path = tmp_path / "resolved.yaml"
    dump_config(cfg, path)
    assert load_config(path) == cfg
    assert load_config(path) != Config()


def test_set_stands_in_for_an_unset_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("T4V_UNSET_MODEL", raising=False)
    path = write(tmp_path, "train:\n  init_from: ${T4V_UNSET_MODEL}\n")
    with pytest.raises(ConfigError, match="T4V_UNSET_MODEL is not set"):
        load_config(path)
    cfg = load_config(path, ["train.init_from=/models/k400"])
    assert cfg.train.init_from == "/models/k400"


def test_dumped_config_is_block_style(tmp_path):
    text = dump_config(load_config(None, ["model.tokent1d_blocks=[1,2]"]))
    assert "\ndata:\n  root:" in "\n" + text  # one key per line, not a {...} flow mapping
    assert not any(line.rstrip().endswith("}") and ": {" in line for line in text.splitlines())
    assert "  - 1\n  - 2\n" in text
