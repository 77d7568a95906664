import pytest

from pytest_orbstack.errors import InvalidName
from pytest_orbstack.model.names import slug_name, validate_machine_name


def test_valid_names_pass_through():
    for name in ("web", "w1", "a.b-c", "Web-01", "x" * 64):
        assert validate_machine_name(name) == name


def test_a_name_longer_than_a_hostname_is_refused():
    """OrbStack takes any length, but LXC refuses a hostname of 65 bytes at the first start
    (OrbStack's source: scon/start.go lxc.uts.name)."""
    with pytest.raises(InvalidName, match="longer than 64 characters"):
        validate_machine_name("x" * 65)


def test_reserved_and_malformed_names_say_why():
    with pytest.raises(InvalidName, match="reserved"):
        validate_machine_name("gateway")
    with pytest.raises(InvalidName, match="no '_' or spaces"):
        validate_machine_name("my_vm")


def test_slug_names_are_valid_deterministic_and_distinct():
    a = slug_name("pto-ab12", "tests/test_web.py::test_nginx[debian:bookworm]")
    assert a == slug_name("pto-ab12", "tests/test_web.py::test_nginx[debian:bookworm]")
    assert a != slug_name("pto-ab12", "tests/test_web.py::test_nginx[ubuntu:24.04]")
    assert a.startswith("pto-ab12-") and len(a) <= 63
    long = slug_name("pto-ab12", "x" * 300)
    assert len(long) <= 63 and validate_machine_name(long)


def test_a_machines_name_in_its_test_survives_a_long_test_name():
    key = "tests/test_web.py::test_the_web_server_reaches_the_database_by_its_name[param]#db"
    name = slug_name("pto-1234abcd", key)
    assert name.startswith("pto-1234abcd-test-web-test-the-web") and name[:-7].endswith("-db")
    assert len(name) <= 63
    assert slug_name("pto-1234abcd", key.replace("#db", "#" + "x" * 80)).count("x") == 24
