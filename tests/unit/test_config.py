import pytest

from bot.config import ConfigError, load_settings, require


def test_defaults_match_documentation():
    settings = load_settings({})
    assert settings.slack_api_url == "https://slack.com/api/"
    assert settings.vast_api_url == "https://console.vast.ai"
    assert settings.vast_router_url == "https://run.vast.ai"
    assert settings.db_path == "rollcall.db"
    assert settings.port == 3000
    assert settings.poll_seconds == 10.0
    assert settings.approvals_required == 1
    assert settings.proposal_ttl_hours == 24.0
    assert settings.stuck_minutes == 20.0
    assert settings.rollout_timeout_minutes == 120.0
    assert settings.min_ready == 1
    assert settings.rollback_approvals == 1
    assert not settings.socket_mode


def test_decimal_durations_and_lists():
    settings = load_settings(
        {
            "ROLLCALL_STUCK_MINUTES": "0.1",
            "ROLLCALL_POLL_SECONDS": "0.5",
            "ROLLCALL_APPROVERS": "U1, S2 ,,U3",
            "SLACK_APP_TOKEN": "xapp-1",
        }
    )
    assert settings.stuck_minutes == 0.1
    assert settings.poll_seconds == 0.5
    assert settings.approvers == ("U1", "S2", "U3")
    assert settings.socket_mode


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ROLLCALL_POLL_SECONDS", "often", "is not a number"),
        ("ROLLCALL_APPROVALS_REQUIRED", "0", "below the minimum"),
        ("ROLLCALL_APPROVALS_REQUIRED", "1.5", "whole number"),
        ("PORT", "-1", "below the minimum"),
    ],
)
def test_bad_values_name_the_variable(name, value, message):
    with pytest.raises(ConfigError, match=f"{name}=.*{message}"):
        load_settings({name: value})


def test_require_names_missing_settings():
    with pytest.raises(ConfigError) as raised:
        require(load_settings({}), http_mode=True)
    assert "SLACK_BOT_TOKEN" in str(raised.value)
    assert "SLACK_SIGNING_SECRET" in str(raised.value)
    assert "VAST_API_KEY" in str(raised.value)


def test_socket_mode_needs_no_signing_secret():
    require(
        load_settings({"SLACK_BOT_TOKEN": "xoxb-1", "VAST_API_KEY": "k", "SLACK_APP_TOKEN": "xapp-1"}), http_mode=False
    )


def test_repr_hides_secrets():
    settings = load_settings({"SLACK_BOT_TOKEN": "xoxb-secret-value", "VAST_API_KEY": "vast-secret"})
    assert "xoxb-secret-value" not in repr(settings)
    assert "vast-secret" not in repr(settings)
    assert "slack_bot_token='<set>'" in repr(settings)
