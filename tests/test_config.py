"""Configuration from the environment and the instance folder."""
from __future__ import annotations

import os
import stat

import pytest

from hub.config import Config, ConfigError


def test_defaults_use_the_instance_folder(tmp_path):
    config = Config.from_env({"ROP_INSTANCE_PATH": str(tmp_path / "inst")})
    assert config.instance_path == (tmp_path / "inst").resolve()
    assert config.database_url == f"sqlite:///{config.instance_path / 'rop.sqlite3'}"
    assert config.redis_url is None
    assert config.webhook_allow_private is False
    assert config.cache_ttl == 5.0


def test_the_reference_cache_ttl_is_read_from_the_environment(tmp_path):
    assert Config.from_env({"ROP_INSTANCE_PATH": str(tmp_path), "ROP_CACHE_TTL": "0.5"}).cache_ttl == 0.5
    assert Config.from_env({"ROP_INSTANCE_PATH": str(tmp_path), "ROP_CACHE_TTL": "0"}).cache_ttl == 0.0


def test_generated_secrets_are_private_and_reused(tmp_path):
    env = {"ROP_INSTANCE_PATH": str(tmp_path)}
    first, second = Config.from_env(env), Config.from_env(env)
    assert first.secret_key == second.secret_key and len(first.secret_key) >= 32
    assert first.encryption_keys == second.encryption_keys
    for name in ("secret_key", "encryption_key"):
        mode = stat.S_IMODE(os.stat(tmp_path / name).st_mode)
        assert mode == 0o600


def test_environment_wins(tmp_path):
    from cryptography.fernet import Fernet

    k1, k2 = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    config = Config.from_env({
        "ROP_INSTANCE_PATH": str(tmp_path), "ROP_DATABASE_URL": "postgres://u@h/db",
        "ROP_REDIS_URL": "redis://r:6380/1", "ROP_SECRET_KEY": "s" * 40,
        "ROP_ENCRYPTION_KEYS": f"{k1}, {k2}", "ROP_WEBHOOK_ALLOW_PRIVATE": "1",
    })
    assert config.database_url == "postgresql+psycopg://u@h/db"
    assert config.redis_url == "redis://r:6380/1"
    assert config.secret_key == "s" * 40
    assert config.encryption_keys == (k1, k2)
    assert config.webhook_allow_private is True


@pytest.mark.parametrize("env, message", [
    ({"ROP_REDIS_URL": "http://nope"}, "ROP_REDIS_URL"),
    ({"ROP_SECRET_KEY": "short"}, "ROP_SECRET_KEY"),
    ({"ROP_ENCRYPTION_KEYS": "not-a-key"}, "ROP_ENCRYPTION_KEYS"),
    ({"ROP_ACCESS_TOKEN_TTL": "soon"}, "ROP_ACCESS_TOKEN_TTL"),
    ({"ROP_CACHE_TTL": "soon"}, "ROP_CACHE_TTL"),
    ({"ROP_CACHE_TTL": "-1"}, "ROP_CACHE_TTL"),
    ({"ROP_CACHE_TTL": "nan"}, "ROP_CACHE_TTL"),
])
def test_malformed_settings_are_one_line_errors(tmp_path, env, message):
    with pytest.raises(ConfigError) as info:
        Config.from_env({"ROP_INSTANCE_PATH": str(tmp_path), **env})
    assert message in str(info.value) and "\n" not in str(info.value)
