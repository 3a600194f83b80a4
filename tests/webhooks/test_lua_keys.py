"""Every Lua script stays inside one Redis Cluster hash slot: the rule the cluster relies on.

A script gets exactly one key, ``KEYS[1]``: a tenant's key base ``wh:{t:<tenant>}:`` (every key it
builds starts with it, so all share the tenant's slot) or one global key (``global.lua``). It never
writes a key name of its own. Redis Cluster routes the call by ``KEYS[1]`` and refuses a script
that reaches into another slot; tests/cluster runs every script on a real cluster.
"""

import importlib.resources
import re

SCRIPTS = importlib.resources.files("webhooks.queueing").joinpath("lua")
CALL = re.compile(r"redis\.call\(\s*'([A-Z]+)'\s*,\s*([^,)]+)")
KEYLESS = {"TIME"}


def sources() -> dict[str, str]:
    return {f.name: f.read_text() for f in SCRIPTS.iterdir() if f.name.endswith(".lua")}


def test_scripts_use_only_their_one_declared_key_and_build_no_key_names_of_their_own() -> None:
    found = sources()
    assert "complete.lua" in found and "global.lua" in found
    for name, text in found.items():
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
        assert not re.search(r"KEYS\[(?!1\])", code), f"{name}: a script gets one key, KEYS[1]"
        assert "'wh:" not in code and '"wh:' not in code, f"{name}: writes a key name of its own"
        assert "{t:" not in code, f"{name}: names a tenant's hash tag itself"


def test_every_key_a_tenant_script_touches_starts_with_its_base() -> None:
    """The first argument of each command is ``B ..`` a suffix, or a local variable (or a function's
    key parameter, or the loop variable over a list of such names) assigned from one."""
    for name, text in sources().items():
        if name == "global.lua":
            continue
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
        from_base = set(re.findall(r"(\w+)\s*(?<![=~<>])=\s*B\s*\.\.", code))
        tables = set(re.findall(r"(\w+)\[#\w+\s*\+\s*1\]\s*=\s*B\s*\.\.", code))  # t[#t + 1] = B .. x
        for table in tables:
            from_base |= set(re.findall(rf"for\s+_\s*,\s*(\w+)\s+in\s+ipairs\({table}\)", code))
        from_base |= {"B", "KEYS[1]"}  # B is KEYS[1]; _paused.lua runs before _common.lua defines B
        params = set(re.findall(r"function\s+\w+\(\s*(\w+)", code))  # ek, lk ...: given B .. keys
        for command, first in CALL.findall(code):
            if command in KEYLESS:
                continue
            head = first.strip().split("..")[0].strip()
            assert head in from_base | params, f"{name}: {command} on {first.strip()!r}"
