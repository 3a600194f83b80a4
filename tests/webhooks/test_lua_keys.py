"""Every Lua script stays inside one Redis Cluster hash slot: the rule the cluster relies on.

A script gets exactly one key, ``KEYS[1]``: a tenant's key base ``wh:{t:<tenant>}:`` (every key it
builds starts with it, so all share the tenant's slot) or one global key (``global.lua``). It never
writes a key name of its own. Redis Cluster routes the call by ``KEYS[1]`` and refuses a script
that reaches into another slot; tests/cluster runs every script on a real cluster.

And every key a script builds (``B ..`` suffixes and ids) has a shape ``webhooks/keys.py`` defines, so
keys.py stays the one list of the platform's keys (issue 19).
"""

import importlib.resources
import inspect
import re

from webhooks import keys
from webhooks.queueing import scripts

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


# A key a script builds: the base (``B``, or ``KEYS[1]`` before _common.lua defines B), then
# string literals and variables joined by ``..``; a variable part is written ``<>`` in its shape.
BUILT_KEY = re.compile(
    r"(?:\bB|KEYS\[1\])\s*\.\.\s*('[^']*'(?:\s*\.\.\s*(?:'[^']*'|[A-Za-z_][\w.]*(?:\[[^\]]*\])*))*)"
)
PART = re.compile(r"'([^']*)'|[A-Za-z_][\w.]*(?:\[[^\]]*\])*")
HOLE = "\x01"


def lua_shapes(code: str) -> set[str]:
    """The suffix shapes (``e:<>``, ``rl:<>:<>``) of every key the code builds from its base."""
    shapes = set()
    for chain in BUILT_KEY.findall(code):
        shapes.add("".join(m.group(1) if m.group(1) is not None else "<>" for m in PART.finditer(chain)))
    return shapes


def keys_shapes() -> set[str]:
    """The suffix shapes of every tenant key webhooks/keys.py defines, with each argument a hole, and
    of the data format's keys."""
    base = keys.tenant_base("T")
    shapes = set()
    for name, fn in inspect.getmembers(keys, inspect.isfunction):
        params = list(inspect.signature(fn).parameters)
        if fn.__module__ != keys.__name__ or name.startswith("_") or params[:1] != ["tenant_id"]:
            continue
        key = fn("T", *[HOLE] * (len(params) - 1))
        if key.startswith(base):
            shapes.add(key[len(base) :].replace(HOLE, "<>"))
    # The data format's keys (lua/format_*.lua build them from keys.DATA_FORMAT_BASE, their KEYS[1]).
    fmt = keys.DATA_FORMAT_BASE
    for value in vars(keys).values():
        if isinstance(value, str) and value.startswith(fmt) and value != fmt:
            shapes.add(value[len(fmt) :])
    return shapes


def test_every_key_shape_a_script_builds_is_one_keys_py_defines() -> None:
    defined = keys_shapes()
    built: dict[str, set[str]] = {}
    for name, text in sources().items():
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())
        for shape in lua_shapes(code):
            built.setdefault(shape, set()).add(name)
    assert len(built) >= 20 and {"e:<>", "d:<>", "rl:<>:<>", "ops", "moving"} <= set(built)
    unknown = {shape: sorted(files) for shape, files in built.items() if shape not in defined}
    assert not unknown, f"keys the scripts build that webhooks/keys.py does not define: {unknown}"


def test_the_shape_reader_sees_literals_variables_and_unknown_keys() -> None:
    code = "redis.call('HSET', B .. 'rl:' .. ARGV[1] .. ':' .. window, B .. 'nope:' .. r.id, 'x')"
    assert lua_shapes(code) == {"rl:<>:<>", "nope:<>"}
    assert "rl:<>:<>" in keys_shapes() and "nope:<>" not in keys_shapes()


def test_the_lua_copies_of_the_in_flight_limits_match_python() -> None:
    common = sources()["_common.lua"]
    found = dict(re.findall(r"^local (DEFAULT_MAX_IN_FLIGHT|SLOW_START) = (\d+)", common, re.M))
    assert found == {
        "DEFAULT_MAX_IN_FLIGHT": str(scripts.DEFAULT_MAX_IN_FLIGHT),
        "SLOW_START": str(scripts.SLOW_START),
    }
