"""cloud-init as the orbctl emulator runs it: user-data applied from the host, as root, after
boot (``#!`` scripts and ``#cloud-config`` write_files, packages, runcmd only). ASSUMED: a
failure is logged and never fails create (#1446 and #2555 show real creates that fail)."""

from __future__ import annotations

import base64
import json
import shlex

CLOUD_INIT_SH = ('#!/bin/sh\n# cloud-init stand-in of the orbctl emulator: only "status" is supported\n'
                 'r=/var/lib/cloud/data/result.json\n[ "$1" = status ] || { echo "cloud-init: '
                 'only status is emulated" >&2; exit 1; }\nif [ ! -e $r ]; then echo "status: disabled"\n'
                 'elif grep -q \'"errors": \\[\\]\' $r; then echo "status: done"\n'
                 'else echo "status: error"; exit 1; fi\n')


def cloud_init_steps(data: bytes) -> list[tuple[str, list[str], bytes | None]]:
    text = data.decode(errors="replace")
    if text.startswith("#!"):
        script = "/var/lib/cloud/instance/scripts/part-001"
        return [("scripts_user", ["sh", "-c", 'cat > "$1" && chmod 700 "$1" && exec "$1"', "sh", script], data)]
    if not text.startswith("#cloud-config"):
        raise ValueError("unsupported user-data format (expected '#!' or '#cloud-config')")
    import yaml  # PyYAML: only needed for #cloud-config
    cfg = yaml.safe_load(text) or {}
    steps = []
    for f in cfg.get("write_files") or []:
        content = f.get("content", "")
        content = content.encode() if isinstance(content, str) else bytes(content)
        if str(f.get("encoding", "")).lower() in ("b64", "base64"):
            content = base64.b64decode(content)
        perms = f.get("permissions", "0644")
        perms = format(perms, "o") if isinstance(perms, int) else str(perms)
        redirect = ">>" if f.get("append") else ">"
        script = f'mkdir -p "$(dirname "$1")" && cat {redirect} "$1" && chmod "$2" "$1" && chown "$3" "$1"'
        steps.append(("write_files", ["sh", "-c", script, "sh", f["path"], perms,
                                      str(f.get("owner", "root:root"))], content))
    packages = ["=".join(map(str, p)) if isinstance(p, list) else str(p) for p in cfg.get("packages") or []]
    if packages:
        steps.append(("package_update_upgrade_install", ["sh", "-c", "apt-get update -q && DEBIAN_FRONTEND="
                      "noninteractive apt-get install -y -q " + " ".join(map(shlex.quote, packages))], None))
    lines = [shlex.join(map(str, c)) if isinstance(c, list) else str(c) for c in cfg.get("runcmd") or []]
    if lines:
        steps.append(("runcmd", ["sh", "-c", "\n".join(lines)], None))
    return steps


def run_cloud_init(c: dict, data: bytes, docker, log_path) -> None:
    """Run user-data as root in the machine; failures go to the console log, never raised."""
    cid, log, errors = c["Id"], [], []
    docker("exec", "-i", cid, "sh", "-c", "mkdir -p /var/lib/cloud/seed/nocloud /var/lib/cloud/data "
           "/var/lib/cloud/instance/scripts /run/cloud-init && cat > /var/lib/cloud/seed/nocloud/user-data",
           input=data, binary=True, check=False)
    try:
        steps = cloud_init_steps(data)
    except Exception as exc:  # YAML errors, bad formats: cloud-init reports and goes on
        steps, errors = [], [f"user-data: {exc}"]
    for module, argv, stdin in steps:
        proc = docker("exec", "-i", cid, *argv, input=stdin or b"", binary=True, check=False)
        log.append((proc.stdout + proc.stderr).decode(errors="replace"))
        if proc.returncode:
            errors.append(f"{module}: exit status {proc.returncode}")
    result = json.dumps({"v1": {"datasource": "DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud]",
                                "errors": errors}}, indent=1)
    summary = f"Cloud-init finished: {'FAILED: ' + '; '.join(errors) if errors else 'done'}\n"
    output = "".join(log) + summary
    docker("exec", "-i", cid, "sh", "-c", 'cat > /var/log/cloud-init-output.log; printf %s "$1" | '
           'tee /run/cloud-init/result.json /var/lib/cloud/data/result.json >/dev/null; '
           '[ -e /usr/bin/cloud-init ] || { printf %s "$2" > /usr/local/bin/cloud-init; '
           'chmod 755 /usr/local/bin/cloud-init; }', "sh", result, CLOUD_INIT_SH,
           input=output.encode(), binary=True, check=False)
    path = log_path
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(output)


