"""Config files as people write them."""

import pytest

from asr.training.config import ConfigError, load_config


def test_exponent_notation_without_a_dot_is_a_number(tmp_path):
    # PyYAML reads 3e-4 (no dot) as a string; a learning rate written so must not be refused
    conf = tmp_path / "conf.yaml"
    conf.write_text("optim:\n  lr: 3e-4\ntrainer:\n  val_check_minutes: 1E1\n")
    config = load_config(conf, ["optim.weight_decay=1e-3"])
    assert (config.optim.lr, config.optim.weight_decay, config.trainer.val_check_minutes) == (3e-4, 1e-3, 10.0)
    with pytest.raises(ConfigError, match="optim.lr: expected a number, got 'fast'"):
        load_config(conf, ["optim.lr=fast"])
