"""``--orbstack-shard=K/N`` in a pytest run (pytest_orbstack.plugin.shard): the groups found at
collection, pytest's own deselection, bad values, an empty shard, xdist workers agreeing.
The real two-shard run of the example suite is tests/ci/test_recipes.py."""

from __future__ import annotations

import re

from innerpytest import run, sessions_of

DEPLOY = "from pyinfra.operations import server\nserver.shell(name='noop', commands=['true'])\n"
SUITE = {
    # two modules whose tests clone the same golden machine (same image, deploy and arguments)
    "test_a.py": "import pytest\npytestmark = pytest.mark.orbstack(deploy='d1.py')\n"
                 + "".join(f"def test_a{i}(orbstack): pass\n" for i in range(4)),
    "test_b.py": "import pytest\n@pytest.mark.orbstack(deploy='d1.py')\ndef test_b0(orbstack): pass\n"
                 "@pytest.mark.orbstack(deploy='d1.py', data={'x': 1})\ndef test_b1(orbstack): pass\n",
    # a platform matrix: one golden machine per image
    "test_c.py": "import pytest\npytestmark = pytest.mark.orbstack(image=['debian:bookworm', 'debian:trixie'], "
                 "deploy='d2.py')\ndef test_c0(orbstack): pass\ndef test_c1(orbstack): pass\n",
    # no golden machine: each test on its own; a module machine's tests together
    "test_d.py": "import pytest\n@pytest.mark.orbstack(deploy='d1.py', clone=False)\ndef test_d0(orbstack): pass\n"
                 "def test_d1(orbstack_machine): pass\ndef test_d2(): pass\n",
    "test_e.py": "".join(f"def test_e{i}(orbstack_module_machine): pass\n" for i in range(3)),
}
TOGETHER = [{"test_a.py::test_a0", "test_a.py::test_a1", "test_a.py::test_a2", "test_a.py::test_a3",
             "test_b.py::test_b0"}, {"test_b.py::test_b1"},
            {"test_c.py::test_c0[debian:bookworm]", "test_c.py::test_c1[debian:bookworm]"},
            {"test_c.py::test_c0[debian:trixie]", "test_c.py::test_c1[debian:trixie]"},
            {"test_e.py::test_e0", "test_e.py::test_e1", "test_e.py::test_e2"}]


def _collected(inner, *args) -> tuple[set[str], str]:
    result = run(inner, "--collect-only", "-q", *args)
    assert result.ret == 0, result.stdout.str()
    return {line for line in result.stdout.lines if "::" in line}, result.stdout.str()


def test_golden_groups_stay_whole_in_every_split(inner):
    inner.makepyfile(d1=DEPLOY, d2=DEPLOY, **{name[:-3]: text for name, text in SUITE.items()})
    everything, _ = _collected(inner)
    assert len(everything) == 16
    for total in (2, 3, 4):
        shards = []
        for index in range(1, total + 1):
            tests, out = _collected(inner, f"--orbstack-shard={index}/{total}")
            assert f"orbstack: shard {index}/{total}: {len(tests)} of 16 tests" in out
            assert "groups (4 golden)" in out  # d1, d1 with data, d2 per image
            if len(tests) < 16:
                assert f"{16 - len(tests)} deselected" in out  # pytest's own deselect reporting
            shards.append(tests)
        assert set().union(*shards) == everything and sum(map(len, shards)) == 16
        for group in TOGETHER:
            assert sum(bool(group & shard) for shard in shards) == 1, (group, shards)
    assert sessions_of(inner.path.parent / "state") == []  # collection made no session


def test_bad_values_are_one_usage_line_before_any_machine(inner, tmp_path):
    inner.makepyfile(d1=DEPLOY, test_a=SUITE["test_a.py"])
    (inner.path / "t.json").write_text("[]")
    for args, says in [(["--orbstack-shard=3/2"], "ERROR: --orbstack-shard=3/2: K must be 1 to N (here 2), as in 1/2"),
                       (["--orbstack-shard=x/y"], "ERROR: --orbstack-shard=x/y: give K/N, this job's shard K of N"),
                       (["--orbstack-shard=1/2", "--orbstack-shard-timings=t.json"],
                        "ERROR: --orbstack-shard-timings=t.json: not the JSON --orbstack-timings writes")]:
        result = run(inner, *args)
        assert result.ret == 4, result.stdout.str() + result.stderr.str()
        errors = [line for line in result.stderr.lines if line.strip()]
        assert len(errors) == 1 and errors[0].startswith(says), errors
    assert sessions_of(tmp_path / "state") == []  # no session, so no machine was made


def test_an_empty_shard_passes_and_xdist_workers_agree(inner):
    inner.makepyfile(test_plain="import pytest\n@pytest.mark.parametrize('n', range(5))\ndef test_n(n): pass\n")
    empty = run(inner, "--orbstack-shard=6/6")
    assert empty.ret == 0, empty.stdout.str()
    empty.stdout.fnmatch_lines(["orbstack: shard 6/6: 0 of 5 tests*", "*5 deselected*"])
    ran = []
    for index in (1, 2):
        result = run(inner, f"--orbstack-shard={index}/2", "-n", "2", "-v")
        assert result.ret == 0, result.stdout.str()
        ran.append({m[1] for line in result.stdout.lines if (m := re.search(r"PASSED (\S+)", line))})
    assert not ran[0] & ran[1] and len(ran[0] | ran[1]) == 5, ran
