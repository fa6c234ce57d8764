"""Strict config loading: presets load, and every kind of bad key or value is a one-line error."""
import textwrap

import pytest
import yaml

from genossa.config import (
    CONFIG_FILENAME,
    GenossaConfig,
    config_from_dict,
    config_hash,
    config_to_dict,
    load_config,
    parse_override,
    preset_names,
    save_config,
)
from genossa.errors import ConfigError


def _write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_presets_ship_and_load():
    names = preset_names()
    assert {"tiny", "small", "base", "large"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert isinstance(cfg, GenossaConfig)
        assert cfg.model.d_model > 0


def test_round_trip_through_saved_yaml(tmp_path):
    cfg = load_config("tiny", {"train.steps": 7})
    path = save_config(cfg, tmp_path / "run")
    assert path.name == CONFIG_FILENAME
    again = load_config(path)
    assert again == cfg
    assert again.train.steps == 7
    assert config_hash(again) == config_hash(cfg)
    assert config_hash(load_config("small")) != config_hash(cfg)


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "train:\n  stepz: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert str(path) in message and "'train.stepz'" in message and "did you mean 'steps'" in message
    assert "\n" not in message


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(_write(tmp_path, "trian: {}\n"))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train:\n  steps: ten\n", "train.steps: expected int, got str 'ten'"),
        ("train:\n  steps: 1.5\n", "train.steps: expected int"),
        ("train:\n  activation_checkpointing: true,\n", "expected bool or int, got 'true,'"),
        ("train:\n  lr: yes\n", "train.lr: expected float, got bool"),
        ("train:\n  precision: bf17\n", "train.precision: expected one of 'fp32', 'bf16', 'fp16'"),
        ("train:\n  betas: 0.9\n", "train.betas: expected list of float"),
        ("train: 3\n", "train: expected a mapping"),
    ],
)
def test_wrong_types(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert expected in str(err.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train:\n  steps: 0\n", "train.steps: must be > 0"),
        ("train:\n  zero_stage: 4\n", "train.zero_stage: must be 0, 1, 2 or 3"),
        ("train:\n  min_lr_ratio: 2.0\n", "train.min_lr_ratio"),
        ("train:\n  activation_checkpointing: -1\n", "train.activation_checkpointing: must be true, false"),
        ("model:\n  n_layers: 4\ntrain:\n  activation_checkpointing: 5\n", "5 blocks, but the model has 4"),
        ("score:\n  methods: [llr, magic]\n", "score.methods: unknown ['magic']"),
    ],
)
def test_out_of_range_values(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert expected in str(err.value) and str(tmp_path) in str(err.value)


def test_invalid_yaml_names_line(tmp_path):
    with pytest.raises(ConfigError, match=r"run.yaml: line 2"):
        load_config(_write(tmp_path, "train:\n\tsteps: 1\n"))


def test_missing_file_and_unknown_preset(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="neither a config file nor a preset"):
        load_config("tinyy")


def test_overrides():
    assert parse_override("train.steps=12") == ("train.steps", 12)
    assert parse_override("model.causal=false") == ("model.causal", False)
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_override("train.steps")
    with pytest.raises(ConfigError, match="train.stepz"):
        load_config("tiny", {"train.stepz": 1})


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(_write(tmp_path, "")) == GenossaConfig()


def test_plain_values_are_yaml_ready():
    values = config_to_dict(GenossaConfig())
    assert yaml.safe_load(yaml.safe_dump(values)) == values
    assert config_from_dict(values) == GenossaConfig()


def test_yaml_presets_match_model_presets():
    from genossa.models.config import PRESETS

    for name, make in PRESETS.items():
        assert load_config(name).model == make(), f"configs/{name}.yaml and models.config.{name}() differ"
