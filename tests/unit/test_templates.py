import shlex

import pytest

from bot.templates import (
    EnvSpec,
    TemplateFormatError,
    build_env,
    diff_cli_flags,
    format_search,
    normalize_search,
    parse_cli_flags,
    parse_env,
    parse_search,
)

VAST_ENV = "-e MODEL_NAME=Qwen/Qwen3-8B -e VLLM_ARGS='--max-model-len 8192 --enable-prefix-caching' -p 8000:8000"


def test_parse_env_reads_variables_and_other_flags():
    spec = parse_env(VAST_ENV)
    assert spec.variables == {
        "MODEL_NAME": "Qwen/Qwen3-8B",
        "VLLM_ARGS": "--max-model-len 8192 --enable-prefix-caching",
    }
    assert spec.other_args == ["-p", "8000:8000"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("--env A=1", {"A": "1"}),
        ("--env=A=1", {"A": "1"}),
        ("-e A=x=y", {"A": "x=y"}),
        ("", {}),
    ],
    ids=["long-flag", "long-flag-equals", "value-with-equals", "empty"],
)
def test_parse_env_flag_spellings(env, expected):
    assert parse_env(env).variables == expected


def test_parse_env_unbalanced_quote_raises():
    with pytest.raises(TemplateFormatError, match="cannot parse"):
        parse_env("-e A='unterminated")


def test_build_env_round_trips():
    spec = parse_env(VAST_ENV)
    assert parse_env(build_env(spec)).variables == spec.variables
    assert parse_env(build_env(spec)).other_args == spec.other_args


def test_build_env_keeps_injected_flags_inside_value():
    env = build_env(EnvSpec(variables={"MODEL_NAME": "x -e EVIL=1", "B": "it's"}))
    tokens = shlex.split(env)
    assert tokens == ["-e", "MODEL_NAME=x -e EVIL=1", "-e", "B=it's"]
    assert parse_env(env).variables == {"MODEL_NAME": "x -e EVIL=1", "B": "it's"}


def test_build_env_rejects_bad_name():
    with pytest.raises(TemplateFormatError, match="invalid environment variable name"):
        build_env(EnvSpec(variables={"BAD NAME": "1"}))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu_ram>=24", {"gpu_ram": {"gte": 24}}),
        ("num_gpus=1 verified=True", {"num_gpus": {"eq": 1}, "verified": {"eq": True}}),
        ("dph_total<0.5", {"dph_total": {"lt": 0.5}}),
        ("gpu_name!=RTX_3090", {"gpu_name": {"neq": "RTX_3090"}}),
        ("gpu_name in [RTX_4090,RTX_3090]", {"gpu_name": {"in": ["RTX_4090", "RTX_3090"]}}),
        ("gpu_ram>=24 gpu_ram<=80", {"gpu_ram": {"gte": 24, "lte": 80}}),
    ],
)
def test_parse_search_operators(text, expected):
    assert parse_search(text) == expected


def test_parse_search_rejects_bare_word():
    with pytest.raises(TemplateFormatError, match="'fast' is not of the form"):
        parse_search("gpu_ram>=24 fast")


def test_format_search_round_trips():
    query = parse_search("gpu_ram>=24 num_gpus=1 verified=True gpu_name in [RTX_4090,A100]")
    assert parse_search(format_search(query)) == query


@pytest.mark.parametrize(
    "value",
    [
        {"gpu_ram": {"gte": 24}},
        '{"gpu_ram": {"gte": 24}}',
        "gpu_ram>=24",
        ["gpu_ram>=24"],
    ],
    ids=["dict", "json", "cli", "list"],
)
def test_normalize_search_accepts_every_shape(value):
    assert normalize_search(value) == {"gpu_ram": {"gte": 24}}


def test_normalize_search_plain_values_mean_eq():
    assert normalize_search({"verified": True}) == {"verified": {"eq": True}}


def test_parse_cli_flags_values_and_bare_flags():
    flags = parse_cli_flags("--max-model-len 8192 --enable-prefix-caching --dtype=half")
    assert flags == {"--max-model-len": "8192", "--enable-prefix-caching": None, "--dtype": "half"}


def test_diff_cli_flags_added_removed_changed():
    changes = diff_cli_flags("--max-model-len 8192 --enforce-eager", "--max-model-len 16384 --enable-prefix-caching")
    described = [(change.flag, change.old, change.new, change.added, change.removed) for change in changes]
    assert described == [
        ("--max-model-len", "8192", "16384", False, False),
        ("--enforce-eager", None, None, False, True),
        ("--enable-prefix-caching", None, None, True, False),
    ]
