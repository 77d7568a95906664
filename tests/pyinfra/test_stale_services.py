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


def _show(**units):
    """``systemctl show`` blocks: a unit per keyword, its properties as ``Key=value`` strings."""
    lines = []
    for props in units.values():
        lines += [*props.split(";"), ""]
    return lines


def test_boot_drift_names_what_a_fresh_boot_changes_and_nothing_pulled_in_or_on_demand():
    from pytest_orbstack.facts.boot import BootDrift
    target = "Id=multi-user.target;LoadState=loaded;ActiveState=active;UnitFileState=static"
    enabled = "LoadState=loaded;UnitFileState=enabled;WantedBy=multi-user.target"
    disabled = "LoadState=loaded;UnitFileState=disabled;ActiveState=active;SubState=running"
    runtime = "LoadState=loaded;UnitFileState=enabled-runtime;ActiveState=active;WantedBy=multi-user.target"
    output = _show(
        target=target,
        never=f"Id=never.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=0;"
              "ConditionResult=no",
        ran=f"Id=ran.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=52",
        ended=f"Id=job.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=0",
        unrun=f"Id=unrun.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=0",
        stopped=f"Id=stop.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=52",
        stopped_socket=f"Id=stop.socket;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=7",
        condition=f"Id=cond.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=52;"
                  "ConditionResult=no;ConditionTimestampMonotonic=50",
        skipped=f"Id=skip.service;{enabled};ActiveState=inactive;ConditionTimestampMonotonic=9",
        crashed=f"Id=crash.service;{enabled};ActiveState=failed;Result=exit-code",
        looping=f"Id=loop.service;{enabled};ActiveState=activating;SubState=auto-restart;Result=exit-code",
        polling=f"Id=poll.service;{enabled};ActiveState=activating;SubState=auto-restart;Result=success",
        elsewhere="Id=x.service;LoadState=loaded;UnitFileState=enabled;WantedBy=graphical.target;"
                  "ActiveState=inactive",
        off=f"Id=off.service;{disabled}",
        socket=f"Id=sock.service;{disabled};TriggeredBy=sock.socket",
        dbus=f"Id=bus.service;{disabled};BusName=org.example.Bus",
        wanted=f"Id=dep.service;{disabled};WantedBy=app.service",
        runtime=f"Id=rt.service;{runtime}",
        generated=f"Id=postgresql@15-main.service;{runtime}",
        static="Id=st.service;LoadState=loaded;UnitFileState=static;ActiveState=active",
        transient="Id=run-1.service;LoadState=loaded;UnitFileState=transient;ActiveState=active",
        edited="Id=job.timer;LoadState=loaded;NeedDaemonReload=yes;UnitFileState=static",
        missing="Id=gone.service;LoadState=not-found;NeedDaemonReload=yes;ActiveState=inactive",
        removed="Id=old.service;LoadState=not-found;ActiveState=active;SubState=running",
        masked="Id=retired.service;LoadState=masked;ActiveState=active;SubState=running",
        scope="Id=session-1.scope;LoadState=loaded;UnitFileState=disabled;ActiveState=active",
    ) + ["--started--", "job.service", "dbus.service", "--stopped--", "stop.service", "stop.socket",
         "--runtime-links--", "rt.service"]
    drift = BootDrift().process(output)
    assert list(drift) == [
        "crash.service", "job.timer", "loop.service", "never.service", "off.service", "old.service",
        "retired.service", "rt.service", "stop.service", "stop.socket", "unrun.service"]
    assert drift["stop.service"] == "enabled but stopped: a fresh boot starts it"
    assert drift["retired.service"] == "masked but it runs: a fresh boot does not start it"
    assert drift["old.service"] == "its unit file is gone but it runs: a fresh boot does not start it"
