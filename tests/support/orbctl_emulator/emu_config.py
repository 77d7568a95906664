"""The orbctl emulator's ``config`` (tests/support/orbctl_emulator/orbctl.py names the sources)."""

from __future__ import annotations

import os
import re

import emu_facts as facts
from emu_machines import CONFIG_DEFAULTS, Fail, find, load_state, lookup, machines, name_of, update_state, username


def config_keys(state: dict, ms: list[dict]) -> dict:
    values = {**CONFIG_DEFAULTS, **{k: v for k, v in state.get("config", {}).items() if k in CONFIG_DEFAULTS}}
    names = {name_of(c) for c in ms}
    values.update({k: v for k, v in state.get("config", {}).items() if k.split(".")[1:2] and
                   k.startswith("machine.") and k.rsplit(".", 1)[0][len("machine."):] in names})
    values.update({f"machine.{name_of(c)}.username": username(c, state) for c in ms})
    return dict(sorted(values.items()))


def machine_key(key: str) -> dict | None:
    m = re.fullmatch(r"machine\.(.+)\.(" + "|".join(facts.MACHINE_KEYS) + ")", key)
    return lookup(m.group(1)) if m else None


GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), "true"),
            **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), "false")}  # strconv.ParseBool


def cmd_config(argv):
    if not argv or argv[0] not in ("show", "get", "set"):
        raise Fail("Error: usage: orbctl config show|get KEY|set KEY VALUE")
    verb, args, state = argv[0], argv[1:], load_state()
    wanted = {"show": 0, "get": 1, "set": 2}[verb]
    if len(args) != wanted:
        raise Fail(f"Error: accepts {wanted} arg(s), received {len(args)}")
    if verb == "show":
        for key, value in config_keys(state, machines()).items():
            print(f"{key}: {value}")
        return
    key, c = args[0], None
    if key not in CONFIG_DEFAULTS:
        c = machine_key(key)
        if c is None and verb == "set" and key.startswith("machine."):  # SRC cmd/config_set.go
            parts = key.split(".")[1:]
            if len(parts) < 2:
                raise Fail(f"Invalid machine config key: {key}")
            find(".".join(parts[:-1]).replace('"', ""))  # an unknown machine is named first
            raise Fail(f"Unknown machine config key: {key}")
        if c is None:
            raise Fail(f"Unknown configuration key: {key}")  # SRC cmd/config_set.go
    if verb == "get":
        value = (username(c, state) if key.endswith(".username") else state["config"].get(key, "")) \
            if c else config_keys(state, [])[key]
        print(f"{key}: {value}" if os.environ.get("ORBCTL_EMULATOR_CONFIG_GET_STYLE") == "keyvalue" else value)
        return
    value = args[1]  # parsed as SRC cmd/config_set.go does: Go's strconv, its error printed, exit 1
    if CONFIG_DEFAULTS.get(key) in ("true", "false"):
        if value not in GO_BOOLS:
            raise Fail(f'strconv.ParseBool: parsing "{value}": invalid syntax')
        value = GO_BOOLS[value]
    elif key in ("cpu", "memory_mib") and not (value.isascii() and value.isdigit()):
        raise Fail(f'strconv.ParseUint: parsing "{value}": invalid syntax')  # so "8G" too
    update_state(lambda s: s["config"].update({key: value}))
