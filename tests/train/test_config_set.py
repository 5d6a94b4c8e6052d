"""`soups train-expert --set KEY=VALUE`: dotted overrides into config sections, YAML values, clear errors."""

from __future__ import annotations

import pytest

from soups.errors import ConfigError
from soups.train.config import load_config, parse_set


def test_set_reaches_sections_and_reads_yaml_values():
    cfg = load_config(None, "cpu", parse_set(["max_new_tokens=384", "warm_start.max_new_tokens=320",
                                              "lora.targets=[q_proj, v_proj]", "autocast=off"]))
    assert cfg.max_new_tokens == 384 and cfg.warm_start.max_new_tokens == 320
    assert cfg.warm_start.prompts == load_config(None, "cpu").warm_start.prompts  # the rest of the section kept
    assert cfg.lora.targets == ["q_proj", "v_proj"] and cfg.lora.r == load_config(None, "cpu").lora.r
    assert cfg.autocast == "off"
    assert load_config(None, "cpu", parse_set(["warm_start=false"])).warm_start is None


def test_set_errors_name_the_flag():
    with pytest.raises(ConfigError, match=r"--set 'max_new_tokens': expected KEY=VALUE"):
        parse_set(["max_new_tokens"])
    with pytest.raises(ConfigError, match=r"warm_start.samples=0: Input should be greater than 0"):
        load_config(None, "cpu", parse_set(["warm_start.samples=0"]))
    with pytest.raises(ConfigError, match=r"nosuch"):
        load_config(None, "cpu", parse_set(["nosuch=1"]))
