"""cloud-init user-data -> one shell script (no docker needed; scripts run with the local sh)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from pytest_orbstack.cloudinit import user_data_script

OWNER = f"{os.getuid()}:{os.getgid()}"


def cloud_config(config: dict) -> str:
    return "#cloud-config\n" + yaml.safe_dump(config, allow_unicode=True)


def run_script(script: str, tmp_path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    return subprocess.run(["sh", str(path)], capture_output=True, text=True, timeout=30)


def test_shebang_script_is_returned_unchanged():
    script = "#!/bin/bash\necho hi\n"
    assert user_data_script(script) == script


def test_write_files_round_trip_awkward_content(tmp_path):
    target = tmp_path / "dir with spaces" / "fïle 'x'.txt"
    content = "it's $HOME `id` \"q\" \\n ünï\nEOF\nno newline at end"
    data = cloud_config({"write_files": [{"path": str(target), "content": content,
                                          "permissions": "0640", "owner": OWNER}]})
    proc = run_script(user_data_script(data), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert target.read_text() == content
    assert oct(target.stat().st_mode & 0o777) == "0o640"


def test_write_files_append_b64_and_yaml_int_permissions(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("first\n")
    data = (f"#cloud-config\nwrite_files:\n"
            f"  - {{path: '{target}', content: \"second\\n\", append: true,\n"
            f"      owner: '{OWNER}', permissions: 0600}}\n"
            f"  - {{path: '{tmp_path}/b.bin', encoding: b64, content: 'AAH/aGk=', owner: '{OWNER}'}}\n")
    proc = run_script(user_data_script(data), tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert target.read_text() == "first\nsecond\n"
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01\xffhi"


def test_runcmd_strings_and_argv_lists(tmp_path):
    out = tmp_path / "out.txt"
    data = ("#cloud-config\nruncmd:\n"
            f"  - echo one > '{out}'\n"
            f"  - [sh, -c, 'echo \"two; three\" >> \"$0\"', '{out}']\n"
            "  - 'false'\n"
            f"  - echo after-failure >> '{out}'\n")
    script = user_data_script(data)
    assert "'echo \"two; three\" >> \"$0\"'" in script
    proc = run_script(script, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert out.read_text() == "one\ntwo; three\nafter-failure\n"


def test_write_files_failure_stops_the_script(tmp_path):
    data = ("#cloud-config\nwrite_files:\n  - {path: /proc/nope/x, content: x}\n"
            f"runcmd:\n  - touch '{tmp_path}/ran'\n")
    assert run_script(user_data_script(data), tmp_path).returncode != 0
    assert not (tmp_path / "ran").exists()


def test_packages_use_apt_get_quoted():
    script = user_data_script("#cloud-config\npackages: [nginx, [curl, '7.88*'], 'a b']\n")
    assert "apt-get update" in script
    assert "apt-get install -y -q nginx 'curl=7.88*' 'a b'" in script


def test_no_packages_no_apt_get():
    assert "apt-get" not in user_data_script("#cloud-config\npackages: []\nruncmd: ['true']\n")


def test_users_ignored_and_unsupported_keys_commented():
    script = user_data_script("#cloud-config\nusers: [default]\ntimezone: UTC\n\"a\\nrm -rf /\": 1\n")
    assert "# users: ignored" in script
    assert "# unsupported cloud-config key: timezone" in script
    assert "# unsupported cloud-config key: a rm -rf /" in script
    assert "\nrm -rf" not in script


def test_empty_cloud_config_is_a_valid_script(tmp_path):
    script = user_data_script("#cloud-config\n")
    assert script.startswith("#!/bin/sh\n")
    assert run_script(script, tmp_path).returncode == 0


@pytest.mark.parametrize("data, words", [
    ("hello world\n", "first line must be '#cloud-config'"),
    ("", "first line must be"),
    ("#cloud-config\n- a\n- b\n", "expected a mapping"),
    ("#cloud-config\nruncmd: [\n", "invalid #cloud-config YAML"),
    ("#cloud-config\nruncmd: echo hi\n", "runcmd must be a list"),
    ("#cloud-config\nwrite_files: [{content: x}]\n", "needs a path"),
    ("#cloud-config\nwrite_files: [{path: /x, permissions: 'rw'}]\n", "not octal"),
])
def test_bad_user_data_raises_value_error(data, words):
    with pytest.raises(ValueError, match=words.replace("[", r"\[")):
        user_data_script(data)


def test_missing_pyyaml_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match="pip install pyyaml"):
        user_data_script("#cloud-config\nruncmd: ['true']\n")
