"""DataConfig: defaults, range checks naming the field, strict loading through the project config."""
import pytest

from genossa.data.config import DataConfig


def test_defaults():
    cfg = DataConfig()
    assert cfg.window == 131072 and cfg.step == 131072 and cfg.last_window == "pad"
    assert DataConfig(window=100, stride=30).step == 30


@pytest.mark.parametrize(
    "field, value",
    [("window", 0), ("stride", 0), ("max_n_fraction", 1.5), ("rc_prob", -0.1), ("min_read_length", -1),
     ("min_mapq", 256), ("seed", -1), ("last_window", "wrap")],
)
def test_ranges_name_the_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}:"):
        DataConfig(**{field: value})


def test_loaded_strictly_from_yaml_values():
    from genossa.config import config_from_dict
    from genossa.errors import ConfigError

    cfg = config_from_dict({"data": {"fasta": ["a.fa", "b.fa"], "window": 4096, "stride": None, "last_window": "drop"}})
    assert cfg.data.fasta == ("a.fa", "b.fa") and cfg.data.window == 4096 and cfg.data.last_window == "drop"
    with pytest.raises(ConfigError, match="data.rc_prob"):
        config_from_dict({"data": {"rc_prob": 3.0}}, source="x.yaml")
    with pytest.raises(ConfigError, match="data.windw"):
        config_from_dict({"data": {"windw": 3}}, source="x.yaml")
