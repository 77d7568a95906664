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
    output = _show(
        target=target,
        never=f"Id=never.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=0;"
              "ConditionResult=no;Type=simple",
        ran=f"Id=ran.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=52;"
            "Type=oneshot",
        stopped=f"Id=stop.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=52;"
                "Type=simple",
        stopped_socket=f"Id=stop.socket;{enabled};ActiveState=inactive;"
                       "InactiveExitTimestampMonotonic=7",
        condition=f"Id=cond.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=52;"
                  "Type=simple;ConditionResult=no;ConditionTimestampMonotonic=50",
        runtime="Id=rt.service;LoadState=loaded;UnitFileState=enabled-runtime;ActiveState=active;"
                "WantedBy=multi-user.target",
        runtime_off="Id=rt0.service;LoadState=loaded;UnitFileState=enabled-runtime;"
                    "ActiveState=inactive",
        forgotten=f"Id=once.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=0;"
                  "Type=oneshot",
        unrun=f"Id=unrun.service;{enabled};ActiveState=inactive;InactiveExitTimestampMonotonic=0;"
              "Type=oneshot",
        skipped=f"Id=skip.service;{enabled};ActiveState=inactive;ConditionTimestampMonotonic=9",
        crashed=f"Id=crash.service;{enabled};ActiveState=failed;Result=exit-code",
        looping=f"Id=loop.service;{enabled};ActiveState=activating;SubState=auto-restart",
        elsewhere="Id=x.service;LoadState=loaded;UnitFileState=enabled;WantedBy=graphical.target;"
                  "ActiveState=inactive",
        off=f"Id=off.service;{disabled}",
        socket=f"Id=sock.service;{disabled};TriggeredBy=sock.socket",
        dbus=f"Id=bus.service;{disabled};BusName=org.example.Bus",
        wanted=f"Id=dep.service;{disabled};WantedBy=app.service",
        static="Id=st.service;LoadState=loaded;UnitFileState=static;ActiveState=active",
        transient="Id=run-1.service;LoadState=loaded;UnitFileState=transient;ActiveState=active",
        edited="Id=job.timer;LoadState=loaded;NeedDaemonReload=yes;UnitFileState=static",
        missing="Id=gone.service;LoadState=not-found;NeedDaemonReload=yes",
        scope="Id=session-1.scope;LoadState=loaded;UnitFileState=disabled;ActiveState=active",
    ) + ["--units-started-since-boot--", "once.service", "dbus.service"]  # the journal's starts
    assert list(BootDrift().process(output)) == [
        "crash.service", "job.timer", "loop.service", "never.service", "off.service", "rt.service",
        "stop.service", "stop.socket", "unrun.service"]
