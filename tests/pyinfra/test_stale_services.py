"""StaleServices.process: which changed file counts against which running service."""

from pytest_orbstack.facts.services import StaleServices


def test_a_package_file_counts_for_its_only_service_and_for_the_named_one_of_several():
    output = [
        "package\tnginx.service\tnginx-common",
        "stale\tnginx.service\tnginx-common\t/etc/nginx/conf.d/site.conf",
        "package\tsystemd-journald.service\tsystemd",
        "package\tsystemd-logind.service\tsystemd",
        "stale\tsystemd-journald.service\tsystemd\t/etc/systemd/journald.conf",
        "stale\tsystemd-logind.service\tsystemd\t/etc/systemd/journald.conf",
        "stale\tdemo.service\tunit\t/etc/demo.conf",
    ]
    assert StaleServices().process(output) == {
        "demo.service": ["/etc/demo.conf"],
        "nginx.service": ["/etc/nginx/conf.d/site.conf"],
        "systemd-journald.service": ["/etc/systemd/journald.conf"],
    }


def test_since_must_be_a_number():
    import pytest
    with pytest.raises(ValueError):
        StaleServices().command("now; rm -rf /")
