"""Profile (not one of the five benchmarks): host CPU time of each Docker engine operation a
machine costs, from /proc/stat busy time around N repetitions (all processes: docker CLI,
dockerd, containerd, runc, the container). Explains benchmark 4: with ~1 CPU-second per
machine, two workers on two cores are CPU-bound. The background load (other users of the host)
is measured for 2s before each row and subtracted. Linux + Docker only; best on a quiet host.

    python bench/engine_cpu.py
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import benchlib

REPEAT = 20


def busy_jiffies() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(values) - values[3] - values[4], sum(values)


def background_rate(seconds: float = 2.0) -> float:
    """Busy CPU milliseconds per second while this script does nothing (other users)."""
    start = busy_jiffies()[0]
    time.sleep(seconds)
    return (busy_jiffies()[0] - start) * 10 / seconds  # USER_HZ = 100: a jiffy is 10ms


def cpu_ms(action, repeat: int, settle: float = 0.0) -> tuple[float, float]:
    """Mean host CPU milliseconds of ``action(i)`` minus the background load measured just
    before (returned too, ms/s); ``settle`` seconds of waiting after each call are included
    (a booting container keeps working after ``docker run`` returns)."""
    background = background_rate()
    start, began = busy_jiffies()[0], time.monotonic()
    for i in range(repeat):
        action(i)
        time.sleep(settle)
    busy = (busy_jiffies()[0] - start) * 10 - background * (time.monotonic() - began)
    return busy / repeat, background


def main() -> int:
    session = benchlib.BenchSession("docker", verbose=False)
    try:
        raw = session.raw
        name = raw.name("cpu")
        raw.create(name)
        rows = [("docker exec NAME true", cpu_ms(lambda i: subprocess.run(
                    raw.exec_argv(name, "true"), capture_output=True), REPEAT)),
                ("docker exec NAME systemctl is-system-running", cpu_ms(lambda i: subprocess.run(
                    raw.exec_argv(name, "systemctl", "is-system-running"), capture_output=True), REPEAT)),
                ("docker container inspect NAME", cpu_ms(lambda i: subprocess.run(
                    ["docker", "container", "inspect", name], capture_output=True), REPEAT))]
        raw.delete(name)
        names = [raw.name(f"cpu-{i}") for i in range(8)]
        rows.append(("docker run + systemd boot (2.5s settle)", cpu_ms(
            lambda i: subprocess.run(["docker", "run", "-d", "--name", names[i], *raw.flags,
                                      "--label", f"{benchlib.RAW_LABEL}={session.run_id}", raw.image],
                                     capture_output=True), 8, settle=2.5)))
        rows.append(("docker rm -f -v (running machine)", cpu_ms(lambda i: raw.delete(names[i]), 8)))
        lifecycle = session.lifecycle()

        def create_delete(i: int) -> None:
            machine, record = lifecycle.create(f"cpu-{i}", benchlib.IMAGE)
            machine.run("hostname")
            machine.run("systemctl is-system-running")
            lifecycle.finish(machine, record, failed=False)
        rows.append(("one inner test: Lifecycle.create + 2 runs + teardown", cpu_ms(create_delete, 8)))
    finally:
        session.cleanup()
    print("host CPU per operation (all processes, background load subtracted)")
    for label, (ms, background) in rows:
        print(f"{ms:8.0f} ms CPU  {label}  [background {background / 10:.0f}% of a core]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
