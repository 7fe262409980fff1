import pytest

from bot.changes import (
    Change,
    ProposalInputError,
    apply_change,
    diff_templates,
    parse_propose,
    split_image,
)
from bot.templates import parse_env

TEMPLATE = {
    "id": 301,
    "hash_id": "abc",
    "name": "qwen",
    "image": "vllm/vllm-openai",
    "tag": "v0.11.0",
    "env": "-e MODEL_NAME=Qwen/Qwen3-8B -e VLLM_ARGS='--max-model-len 8192' -p 8000:8000",
}


def test_parse_propose_full_command():
    request = parse_propose(
        'qwen-chat/201 MODEL_NAME=Qwen/Qwen3-14B VLLM_ARGS="--max-model-len 8192 --enable-prefix-caching" '
        '-HF_HUB_OFFLINE image=vllm/vllm-openai:v0.12.0 search="gpu_ram>=48 num_gpus=1" reason="bigger model"'
    )
    assert request.endpoint == "qwen-chat"
    assert request.group_id == 201
    assert request.change.env_set == {
        "MODEL_NAME": "Qwen/Qwen3-14B",
        "VLLM_ARGS": "--max-model-len 8192 --enable-prefix-caching",
    }
    assert request.change.env_remove == ["HF_HUB_OFFLINE"]
    assert (request.change.image, request.change.tag) == ("vllm/vllm-openai", "v0.12.0")
    assert request.change.search == {"gpu_ram": {"gte": 48}, "num_gpus": {"eq": 1}}
    assert request.reason == "bigger model"


def test_parse_propose_smart_quotes_are_straightened():
    request = parse_propose("qwen-chat VLLM_ARGS=“--max-model-len 4096” reason=‘phone’")
    assert request.change.env_set == {"VLLM_ARGS": "--max-model-len 4096"}
    assert request.reason == "phone"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Name the endpoint"),
        ('qwen-chat MODEL_NAME="unterminated', "check the quotes"),
        ("MODEL_NAME=x", "is not an endpoint"),
        ("qwen-chat model=x", "`model` is not an option"),
        ("qwen-chat MODEL_NAME", "is not KEY=VALUE"),
        ("qwen-chat 1BAD=x", "not a valid environment variable name"),
        ("qwen-chat image=Not_Valid!", "is not a valid image"),
        ("qwen-chat search=fast", "Invalid search filter"),
        ("qwen-chat A=1 -A", "both set and removed"),
        ("qwen-chat/abc A=1", "is not an endpoint"),
    ],
)
def test_parse_propose_rejects_bad_input(text, message):
    with pytest.raises(ProposalInputError, match=message):
        parse_propose(text)


def test_parse_propose_rejects_newline_in_value():
    with pytest.raises(ProposalInputError, match="line break"):
        parse_propose("qwen-chat 'MODEL_NAME=a\nb'")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("vllm/vllm-openai:v0.12.0", ("vllm/vllm-openai", "v0.12.0")),
        ("vllm/vllm-openai", ("vllm/vllm-openai", None)),
        ("registry.example:5000/team/vllm:1.0", ("registry.example:5000/team/vllm", "1.0")),
        ("registry.example:5000/team/vllm", ("registry.example:5000/team/vllm", None)),
    ],
)
def test_split_image(text, expected):
    assert split_image(text) == expected


def test_apply_change_keeps_injection_in_one_value():
    changed = apply_change(TEMPLATE, Change(env_set={"MODEL_NAME": "x -e EVIL=1"}))
    variables = parse_env(changed["env"]).variables
    assert variables["MODEL_NAME"] == "x -e EVIL=1"
    assert "EVIL" not in variables
    assert parse_env(changed["env"]).other_args == ["-p", "8000:8000"]


def test_apply_change_image_keeps_tag_when_not_given():
    changed = apply_change(TEMPLATE, Change(image="vllm/other"))
    assert (changed["image"], changed["tag"]) == ("vllm/other", "v0.11.0")


def test_diff_templates_lists_each_change():
    new = apply_change(
        TEMPLATE,
        Change(env_set={"MODEL_NAME": "Qwen/Qwen3-14B", "VLLM_ARGS": "--max-model-len 16384"}, tag="v0.12.0"),
    )
    lines = diff_templates(TEMPLATE, new, "gpu_ram>=24", {"gpu_ram": {"gte": 48}})
    assert [line.label for line in lines] == ["MODEL_NAME", "VLLM_ARGS", "image", "search"]
    assert (lines[0].old, lines[0].new) == ("Qwen/Qwen3-8B", "Qwen/Qwen3-14B")
    assert [(flag.flag, flag.old, flag.new) for flag in lines[1].flags] == [("--max-model-len", "8192", "16384")]
    assert (lines[2].old, lines[2].new) == ("vllm/vllm-openai:v0.11.0", "vllm/vllm-openai:v0.12.0")
    assert (lines[3].old, lines[3].new) == ("gpu_ram>=24", "gpu_ram>=48")


def test_diff_templates_same_value_is_no_change():
    same = apply_change(TEMPLATE, Change(env_set={"MODEL_NAME": "Qwen/Qwen3-8B"}))
    assert diff_templates(TEMPLATE, same, "gpu_ram>=24", {"gpu_ram": {"gte": 24}}) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('qwen-chat search="gpu_ram>=>24"', "has no value after >="),
        ('qwen-chat search="num_gpus=="', "has no value after =="),
        ('qwen-chat search=""', "search= is empty"),
        ("qwen-chat MODEL_NAME=", "`MODEL_NAME=` has no value"),
        ("qwen-chat MODEL_NAME=a MODEL_NAME=b", "`MODEL_NAME` is given twice"),
        ("qwen-chat 'MODEL_NAME=a\0b'", "contains a NUL character"),
    ],
)
def test_parse_propose_rejects_unclear_values(text, message):
    with pytest.raises(ProposalInputError, match=message):
        parse_propose(text)
