#!/usr/bin/env python3
"""Runs health-release.lua on every Release in testdata/ with a real Lua
interpreter, the way Argo CD runs a resource health check, and compares the
result with the case's NAME.expected.json ({"status": ..., "message": ...}).

    .venv/bin/python deploy/argocd/test_health.py         # from the repo root

The interpreter is PyPI's lupa (prefer its Lua 5.1, the language of Argo CD's
gopher-lua), else a `lua5.1`/`luajit`/`lua` binary on PATH. Argo CD's VM is
reproduced where it matters: the script runs as a chunk with the Release in
the global `obj`, only the base, table, package and a reduced os library
are visible (no `string`, no `math`, no string methods: a script that needs
them fails here as it would in Argo CD), the returned table's `status` must
be a health code Argo CD accepts (else Argo CD shows Unknown, and so does
this runner) and `message` must be a string.

Exit status: 0 when every case passes, 1 when one does not, 2 when the test
cannot run (no Lua interpreter, no PyYAML, a case without expectations).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "health-release.lua")
TESTDATA = os.path.join(HERE, "testdata")

# gitops-engine's health codes; anything else Argo CD replaces with Unknown.
VALID_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
INVALID_STATUS_MESSAGE = "Lua returned an invalid health status"

# A Lua function (source, obj) -> result: runs `source` as Argo CD does
# (util/lua/lua.go: OpenPackage, OpenBase, OpenTable, OpenSafeOs only).
# Works on Lua 5.1 (setfenv) and 5.2+ (load with an env).
HARNESS = r"""
return function(source, obj)
  local env = {}
  for _, name in ipairs({
    "assert", "collectgarbage", "dofile", "error", "getfenv", "getmetatable",
    "ipairs", "load", "loadfile", "loadstring", "module", "next", "pairs",
    "pcall", "print", "rawequal", "rawget", "rawset", "require", "select",
    "setfenv", "setmetatable", "tonumber", "tostring", "type", "unpack",
    "xpcall", "_VERSION",
  }) do
    env[name] = _G[name]
  end
  local tbl = {}
  for k, v in pairs(table) do tbl[k] = v end
  env.table = tbl
  env.package = package
  -- Argo CD's oslib_safe.go: time and date functions only.
  env.os = { clock = os.clock, date = os.date, difftime = os.difftime, time = os.time }
  env._G = env
  env.obj = obj
  -- gopher-lua gives strings methods only when the string library is
  -- opened, which Argo CD does not do.
  local string_mt = getmetatable("")
  local string_index = string_mt and string_mt.__index
  if string_mt then string_mt.__index = nil end
  local chunk, err
  if setfenv then
    chunk, err = loadstring(source, "=health-release.lua")
    if chunk then setfenv(chunk, env) end
  else
    chunk, err = load(source, "=health-release.lua", "t", env)
  end
  local ok, result
  if chunk then
    ok, result = pcall(chunk)
  else
    ok, result = false, err
  end
  if string_mt then string_mt.__index = string_index end
  if not ok then error(tostring(result), 0) end
  if type(result) ~= "table" then
    error("the script returned " .. type(result) .. ", not a table", 0)
  end
  return result
end
"""

SEPARATOR = "\x1e"


class Broken(Exception):
    """The script failed to run, or returned something Argo CD cannot read."""


def load_yaml(path):
    try:
        import yaml
    except ImportError:
        print("PyYAML is needed to read the fixtures (`pip install pyyaml`; the repo's .venv has it)")
        sys.exit(2)

    class Loader(yaml.SafeLoader):
        """Timestamps stay strings, as the API server hands them out."""

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    with open(path, encoding="utf-8") as f:
        return yaml.load(f, Loader=Loader)


def argo_result(status, message):
    """What Argo CD makes of the returned table's fields."""
    if message is not None and not isinstance(message, str):
        raise Broken("hs.message is a %s, Argo CD cannot decode it" % type(message).__name__)
    if status is not None and not isinstance(status, str):
        raise Broken("hs.status is a %s, Argo CD cannot decode it" % type(status).__name__)
    if status not in VALID_STATUSES:
        return "Unknown", INVALID_STATUS_MESSAGE
    return status, message or ""


class Lupa:
    def __init__(self):
        import lupa

        try:
            from lupa import lua51 as flavour
        except ImportError:
            flavour = lupa
        self.lua = flavour.LuaRuntime(register_eval=False, register_builtins=False)
        self.lupa = flavour
        self.run = self.lua.execute(HARNESS)
        self.name = "lupa %s (%s)" % (lupa.__version__, self.lua.eval("_VERSION"))

    def to_lua(self, value):
        if isinstance(value, dict):
            table = self.lua.table()
            for key, item in value.items():
                if item is not None:
                    table[key] = self.to_lua(item)
            return table
        if isinstance(value, list):
            table = self.lua.table()
            for index, item in enumerate(value, start=1):
                table[index] = self.to_lua(item)
            return table
        return value

    def health(self, source, obj):
        try:
            result = self.run(source, self.to_lua(obj))
        except self.lupa.LuaError as error:
            # lupa appends Lua's traceback of the harness: not the script's.
            raise Broken(str(error).split("\nstack traceback")[0]) from None
        return argo_result(result["status"], result["message"])


def lua_string(text):
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append("\\%d" % byte)
    return '"' + "".join(out) + '"'


def lua_literal(value):
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(item) for item in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(
            "[%s] = %s" % (lua_string(str(key)), lua_literal(item))
            for key, item in value.items()
            if item is not None
        ) + "}"
    raise TypeError("cannot put a %s into Lua" % type(value).__name__)


class Binary:
    CANDIDATES = ("lua5.1", "luajit", "lua", "lua5.4", "lua5.3", "lua5.2")

    def __init__(self, path):
        self.path = path
        version = subprocess.run([path, "-v"], capture_output=True, text=True)
        self.name = "%s (%s)" % (path, (version.stdout or version.stderr).strip().splitlines()[0])

    @classmethod
    def find(cls):
        for candidate in cls.CANDIDATES:
            path = shutil.which(candidate)
            if path:
                return cls(path)
        return None

    def health(self, source, obj):
        program = (
            "local run = (function() %s end)()\n"
            "local obj = %s\n"
            "local source = %s\n"
            "local hs = run(source, obj)\n"
            "local function field(v) if v == nil then return '\\0nil' end "
            "if type(v) ~= 'string' then return '\\0' .. type(v) end return v end\n"
            "io.write(field(hs.status), %s, field(hs.message))\n"
        ) % (HARNESS, lua_literal(obj), lua_string(source), lua_string(SEPARATOR))
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False, encoding="utf-8") as f:
            f.write(program)
            name = f.name
        try:
            done = subprocess.run([self.path, name], capture_output=True, timeout=10)
        finally:
            os.unlink(name)
        if done.returncode != 0:
            error = done.stderr.decode("utf-8", "replace").strip()
            raise Broken(error.split("\nstack traceback")[0])
        status, message = done.stdout.decode("utf-8").split(SEPARATOR, 1)

        def decode(field):
            if field == "\0nil":
                return None
            if field.startswith("\0"):
                return 0  # not a string: argo_result refuses it
            return field

        return argo_result(decode(status), decode(message))


def engine(choice):
    if choice in ("auto", "lupa"):
        try:
            return Lupa()
        except ImportError:
            if choice == "lupa":
                print("lupa is not importable (`pip install lupa==2.8`)")
                sys.exit(2)
    binary = Binary.find()
    if binary is None:
        print(
            "no Lua interpreter: install lupa into the venv (`.venv/bin/pip install lupa==2.8`, "
            "as tests/moto.sh does) or put lua5.1 on PATH"
        )
        sys.exit(2)
    return binary


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--script", default=SCRIPT, help="the health check to test (default: %(default)s)")
    parser.add_argument("--engine", choices=("auto", "lupa", "binary"), default="auto")
    args = parser.parse_args()

    with open(args.script, encoding="utf-8") as f:
        source = f.read()
    lua = engine(args.engine)
    print("health check %s on %s" % (args.script, lua.name))

    fixtures = sorted(glob.glob(os.path.join(TESTDATA, "*.yaml")) + glob.glob(os.path.join(TESTDATA, "*.json")))
    fixtures = [f for f in fixtures if not f.endswith(".expected.json")]
    if not fixtures:
        print("no fixtures in %s" % TESTDATA)
        return 2
    passed = failed = 0
    for fixture in fixtures:
        case = os.path.basename(fixture).rsplit(".", 1)[0]
        expected_path = os.path.join(TESTDATA, case + ".expected.json")
        if not os.path.exists(expected_path):
            print("no %s for %s" % (os.path.relpath(expected_path), case))
            return 2
        with open(expected_path, encoding="utf-8") as f:
            expected = json.load(f)
        if fixture.endswith(".json"):
            with open(fixture, encoding="utf-8") as f:
                obj = json.load(f)
        else:
            obj = load_yaml(fixture)
        want = (expected["status"], expected["message"])
        try:
            got = lua.health(source, obj)
        except Broken as error:
            got = ("<error>", str(error))
        if got == want:
            passed += 1
            print("ok    %-18s %-11s %s" % (case, got[0], got[1]))
        else:
            failed += 1
            print("FAIL  %s" % case)
            print("      expected: %-11s %s" % want)
            print("      got:      %-11s %s" % got)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
