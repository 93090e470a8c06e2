# Imports a celeryconfig.py the way Celery's default loader does (the module's
# directory first on sys.path) and writes its settings to stdout as one JSON object:
#   {"values": {name: value}, "lines": {name: line}}            on success
#   {"error": {"type", "message", "line", "at_file", "at_line", "traceback"}}  when the
#   import raised (line: in the config file; at_*: where it was raised)
# Values that JSON cannot carry become {"__ccworker_object__": type name, "helper": bool}
# so that the Go side can say which setting holds what; helpers are modules, classes and
# functions (never settings). Anything the config prints goes to stderr.
import ast
import importlib.machinery
import importlib.util
import json
import math
import os
import sys
import sysconfig
import traceback
import types

MARK = "__ccworker_object__"
HELPERS = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


def type_name(v):
    t = type(v)
    return t.__name__ if t.__module__ == "builtins" else t.__module__ + "." + t.__qualname__


def plain(v, depth=0):
    if depth > 100:
        return {MARK: "nesting deeper than 100", "helper": False}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        if -(2 ** 63) <= v < 2 ** 63:
            return int(v)
        return {MARK: "int out of the 64-bit range", "helper": False}
    if isinstance(v, float):
        if math.isfinite(v):
            return v
        return {MARK: "float " + repr(v), "helper": False}
    if isinstance(v, (list, tuple)):
        return [plain(e, depth + 1) for e in v]
    if isinstance(v, dict):
        if not all(isinstance(k, str) for k in v):
            return {MARK: "dict with non-string keys", "helper": False}
        return {k: plain(e, depth + 1) for k, e in v.items()}
    return {MARK: type_name(v), "helper": isinstance(v, HELPERS)}


def assigned_lines(path):
    """Line of the last module-level binding of each name (inside if/try/with/for, not def)."""
    lines = {}
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), path)
    except (OSError, SyntaxError, ValueError):
        return lines

    def targets(t, line):
        if isinstance(t, ast.Name):
            lines[t.id] = line
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                targets(e, line)
        elif isinstance(t, ast.Starred):
            targets(t.value, line)

    def walk(body):
        for st in body:
            if isinstance(st, ast.Assign):
                for t in st.targets:
                    targets(t, st.lineno)
            elif isinstance(st, (ast.AnnAssign, ast.AugAssign)):
                targets(st.target, st.lineno)
            elif isinstance(st, (ast.Import, ast.ImportFrom)):
                for a in st.names:
                    lines[(a.asname or a.name).split(".")[0]] = st.lineno
            elif isinstance(st, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                lines[st.name] = st.lineno
            else:
                for field in ("body", "orelse", "finalbody"):
                    walk(getattr(st, field, []) or [])
                for h in getattr(st, "handlers", []) or []:
                    walk(h.body)

    walk(tree.body)
    return lines


def error_of(e, path):
    """The line of the config file the error came through, and where it was raised
    (the deepest frame outside the standard library)."""
    stdlib = sysconfig.get_paths()["stdlib"]
    frames = traceback.extract_tb(e.__traceback__)
    line, at_file, at_line = 0, "", 0
    for fr in frames:
        if fr.filename == path:
            line = fr.lineno or 0
        if not fr.filename.startswith(("<", stdlib)):
            at_file, at_line = fr.filename, fr.lineno or 0
    if isinstance(e, SyntaxError) and e.filename:
        at_file, at_line = e.filename, e.lineno or 0
    if at_file == path:
        line = at_line
    # The traceback starts at the config file: the frames of this script mean nothing.
    tb = e.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != path:
        tb = tb.tb_next
    return {
        "type": type(e).__name__,
        "message": str(e),
        "line": line,
        "at_file": at_file,
        "at_line": at_line,
        "traceback": "".join(traceback.format_exception(type(e), e, tb or e.__traceback__)),
    }


def main():
    out = sys.stdout
    sys.stdout = sys.stderr
    path = os.path.abspath(sys.argv[1])
    sys.path.insert(0, os.path.dirname(path))
    name = os.path.basename(path)
    name = name[:-3] if name.endswith(".py") else name
    try:
        loader = importlib.machinery.SourceFileLoader(name, path)
        spec = importlib.util.spec_from_loader(name, loader)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        loader.exec_module(mod)
    except BaseException as e:  # SystemExit and KeyboardInterrupt in a config are errors too
        json.dump({"error": error_of(e, path)}, out)
        return
    values = {k: plain(v) for k, v in vars(mod).items() if not k.startswith("_")}
    json.dump({"values": values, "lines": assigned_lines(path)}, out, allow_nan=False)


main()
