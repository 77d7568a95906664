"""A platform matrix: one test, once per image, with readable ids; ``--orbstack-image``
narrows it; the Docker engine builds a Debian suite no registry has with debootstrap."""

from __future__ import annotations

import subprocess

import pytest
from incusenv import incus
from innerpytest import run

IMAGES = ("debian:bookworm", "debian:trixie")
MATRIX_TEST = '''
    import pytest

    @pytest.mark.orbstack(image=["debian:bookworm", "debian:trixie"])
    def test_release(orbstack, orbstack_machine):
        codename = orbstack.run(". /etc/os-release && echo $VERSION_CODENAME").stdout.strip()
        assert orbstack.image == f"debian:{codename}"
        assert orbstack_machine().image == orbstack.image  # the factory follows the matrix

    def test_plain(orbstack):
        assert orbstack.image == "debian:bookworm"

    @pytest.mark.orbstack(image=["debian:bookworm"])
    def test_only_bookworm(orbstack):
        assert orbstack.image == "debian:bookworm"
'''


def _image_ids() -> set[str]:
    out = subprocess.run(["docker", "images", "-q", "--no-trunc"], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


@pytest.fixture(scope="module")
def trixie_goes_if_we_built_it():
    """debian:trixie (and its prepared image) is removed afterwards if this module built it:
    the suite leaves no image behind."""
    before = _image_ids()
    yield
    out = subprocess.run(["docker", "images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"],
                         capture_output=True, text=True, check=True).stdout
    made = [tag for line in out.splitlines() for image_id, tag in [line.split()]
            if "trixie" in tag and not any(i.endswith(image_id) or image_id in i for i in before)]
    if made:
        subprocess.run(["docker", "rmi", *made], capture_output=True)


def test_marker_image_list_runs_once_per_image(inner, trixie_goes_if_we_built_it):
    inner.makepyfile(test_matrix=MATRIX_TEST)
    result = run(inner, "-v", "-n", "2")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines_random(["*PASSED*test_release?debian:bookworm?*",
                                        "*PASSED*test_release?debian:trixie?*",
                                        "*PASSED*test_plain*", "*PASSED*test_only_bookworm*"])

    narrowed = run(inner, "-v", "-rs", "--orbstack-image=debian:trixie", "-k", "release or only")
    narrowed.assert_outcomes(passed=1, skipped=1)
    narrowed.stdout.fnmatch_lines(["*test_release?debian:trixie? PASSED*"])
    narrowed.stdout.fnmatch_lines(["*--orbstack-image=debian:trixie leaves out this test's images "
                                   "(debian:bookworm)*"])

    # a typo (or a release no matrix names) that leaves every selected test out: no green run
    none_left = run(inner, "--orbstack-image=debian:bookwrom", "-k", "release or only")
    said = ("--orbstack-image=debian:bookwrom leaves out the images of every test (their matrices name "
            "debian:bookworm, debian:trixie): nothing would run")
    assert none_left.ret == pytest.ExitCode.USAGE_ERROR, none_left.stdout.str()
    assert f"ERROR: {said}" in none_left.stderr.str()
    # under xdist a worker cannot stop the run: each such test fails saying it
    none_left = run(inner, "--orbstack-image=debian:bookwrom", "-k", "release or only", "-n", "2")
    none_left.assert_outcomes(errors=2)
    assert none_left.stdout.str().count(said) >= 2, none_left.stdout.str()


def test_ini_image_list_is_the_matrix_of_unmarked_tests(inner):
    inner.makeini("[pytest]\norbstack_backend = docker\norbstack_image = debian:bookworm debian:bookworm\n")
    inner.makepyfile(test_ini='''
        def test_one(orbstack_machine):
            assert orbstack_machine().image == "debian:bookworm"
    ''')
    result = run(inner, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_ini.py::test_one"])  # one image, repeated: no matrix

    inner.makeini("[pytest]\norbstack_backend = docker\norbstack_image = debian:bookworm, ubuntu:24.04\n")
    result = run(inner, "--collect-only", "-q")
    result.stdout.fnmatch_lines(["test_ini.py::test_one[[]debian:bookworm[]]",
                                 "test_ini.py::test_one[[]ubuntu:24.04[]]"])


def test_a_bad_image_in_a_matrix_stops_the_run(inner):
    inner.makepyfile(test_bad='''
        import pytest

        @pytest.mark.orbstack(image=["debian:bookworm", "debian:99"])
        def test_x(orbstack):
            pass
    ''')
    result = run(inner)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*test_bad.py::test_x*unknown debian version '99'*"])


def test_marker_image_list_on_incus(incus_inner):
    """On incus the matrix runs once per image too: bookworm on the offline image; trixie, whose
    offline image this host may not have, passes when it is there, else fails in one line naming
    the image and how to build it."""
    incus_inner.makepyfile(test_matrix=MATRIX_TEST)
    result = run(incus_inner, "-v", "-n", "2", "-k", "release")
    result.stdout.fnmatch_lines(["*PASSED*test_release?debian:bookworm?*"])
    if incus("image", "info", "pytest-orbstack/debian/trixie").returncode == 0:
        result.assert_outcomes(passed=2)
    else:
        result.stdout.fnmatch_lines(["*test_release?debian:trixie?*",
                                     "*pytest-orbstack/debian/trixie*scripts/dev.sh incus*"])
