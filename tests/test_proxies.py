"""The client's address behind trusted proxies (ROP_TRUSTED_PROXIES), and the key it is counted under."""
from __future__ import annotations

import pytest

from hub.config import Config, ConfigError
from hub.proxies import client_address, parse_trusted_proxies, rate_key


def test_without_trusted_proxies_the_peer_is_the_client():
    assert client_address("10.0.0.5", "1.2.3.4", parse_trusted_proxies("")) == "10.0.0.5"


def test_a_count_takes_the_nth_address_from_the_right():
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4", 1) == "1.2.3.4"  # 6.6.6.6 is what the client claimed
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", 2) == "1.2.3.4"
    assert client_address("10.0.0.5", "1.2.3.4", 2) == "10.0.0.5"  # fewer hops than proxies: trust none
    assert client_address("10.0.0.5", "not-an-address", 1) == "10.0.0.5"


def test_a_list_skips_trusted_hops_from_the_right():
    trusted = parse_trusted_proxies("10.0.0.0/8, 192.0.2.7")
    assert client_address("10.0.0.5", "6.6.6.6, 1.2.3.4, 192.0.2.7", trusted) == "1.2.3.4"
    assert client_address("203.0.113.1", "1.2.3.4", trusted) == "203.0.113.1"  # the peer is no proxy of ours
    assert client_address("10.0.0.5", "garbage, 1.2.3.4", trusted) == "1.2.3.4"
    assert client_address("10.0.0.5", "1.2.3.4, garbage", trusted) == "10.0.0.5"


def test_ipv6_addresses_are_counted_per_64():
    assert rate_key("2001:db8:1:2:aaaa::1") == rate_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert rate_key("2001:db8:1:3::1") != rate_key("2001:db8:1:2::1")
    assert rate_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert rate_key("192.0.2.1") == "192.0.2.1"


@pytest.mark.parametrize("name, value", [
    ("ROP_TRUSTED_PROXIES", "10.0.0.0/8, nonsense"),
    ("ROP_MAX_BODY_JSON", "a lot"),
    ("ROP_MAX_BODY_BULK", "0"),
    ("ROP_BULK_MAX_ROWS", "1e6"),
    ("ROP_TOKEN_RATE_PER_CLIENT", "-1"),
])
def test_malformed_limits_are_one_line_config_errors(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        Config.from_env({name: value}, instance_path=tmp_path)


def test_limits_come_from_the_environment(tmp_path):
    limits = Config.from_env({"ROP_MAX_BODY_JSON": "64K", "ROP_MAX_BODY_CALLBACK": "1000", "ROP_MAX_BODY_BULK": "2M",
                              "ROP_BULK_MAX_ROWS": "5000", "ROP_TOKEN_RATE_PER_CLIENT": "7",
                              "ROP_TOKEN_RATE_PER_ADDRESS": "9", "ROP_TRUSTED_PROXIES": "2"},
                             instance_path=tmp_path).limits
    assert (limits.body_json, limits.body_callback, limits.body_bulk) == (65536, 1000, 2 * 2**20)
    assert (limits.bulk_max_rows, limits.token_per_client, limits.token_per_address) == (5000, 7, 9)
    assert limits.trusted_proxies == "2"
