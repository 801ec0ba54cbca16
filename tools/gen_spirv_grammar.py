#!/usr/bin/env python3
"""Generate asyncwarp/backends/vulkan/grammar.py from SPIRV-Headers' machine-readable grammar.

Reads `spirv.core.grammar.json` and `extinst.glsl.std.450.grammar.json` and writes
the opcode, operand-kind, enumerant and GLSL.std.450 tables the SPIR-V builder
encodes with. Run it again whenever SPIRV-Headers is updated; `--check` exits
non-zero when the committed module differs from what the installed grammar gives.

    python tools/gen_spirv_grammar.py [--grammar-dir DIR] [-o OUT] [--check]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CORE_JSON = "spirv.core.grammar.json"
GLSL_JSON = "extinst.glsl.std.450.grammar.json"

# Where distributions install SPIRV-Headers (Debian/Ubuntu `spirv-headers`, Homebrew,
# the upstream CMake install, the Vulkan SDK layout).
SEARCH_DIRS = (
    "/usr/include/spirv/unified1",
    "/usr/local/include/spirv/unified1",
    "/usr/share/spirv-headers/include/spirv/unified1",
    "/opt/homebrew/include/spirv/unified1",
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "asyncwarp" / "backends" / "vulkan" / "grammar.py"

# Instruction classes a compute shader can use. Image, pipe, geometry, kernel
# enqueue and ray-tracing instructions are left out to keep the table small.
KEPT_CLASSES = frozenset({
    "Miscellaneous", "Debug", "Annotation", "Extension", "Mode-Setting",
    "Type-Declaration", "Constant-Creation", "Memory", "Function", "Conversion",
    "Composite", "Arithmetic", "Bit", "Relational_and_Logical", "Control-Flow",
    "Atomic", "Barrier", "Non-Uniform",
})  # fmt: skip
# Instructions of the grammar's "Reserved" class (extensions) the emitter uses.
KEPT_RESERVED = frozenset({"OpReadClockKHR"})

# Enumerated operand kinds kept, with all their (non vendor-specific) enumerants.
KEPT_ENUM_KINDS = (
    "Capability", "ExecutionModel", "AddressingModel", "MemoryModel", "ExecutionMode",
    "StorageClass", "Decoration", "BuiltIn", "Scope", "MemorySemantics", "MemoryAccess",
    "GroupOperation", "FunctionControl", "SelectionControl", "LoopControl",
    "SourceLanguage", "FPRoundingMode", "FPFastMathMode",
)  # fmt: skip

# Names ending in a vendor suffix belong to one vendor's hardware; KHR/EXT stay.
VENDOR_SUFFIXES = ("NV", "NVX", "INTEL", "AMD", "AMDX", "ARM", "QCOM", "GOOGLE", "HUAWEI")
ALIAS_SUFFIXES = ("KHR", "EXT")

LINE_LIMIT = 100

# Fields of the generated NamedTuple rows; trailing fields equal to their default
# are written as keywords only when they differ (most instructions need no
# capability and exist since SPIR-V 1.0).
ROW_FIELDS = {
    "Instruction": ("opcode", "operands", "capabilities", "extensions", "version", "last_version"),
    "Enumerant": ("value", "parameters", "capabilities", "extensions", "version", "last_version"),
    "ExtInstruction": ("opcode", "operands", "capabilities"),
}
ROW_DEFAULTS = ((), (), (1, 0), None)


class GrammarNotFound(FileNotFoundError):
    pass


def find_grammar_dir(explicit: str | None) -> Path:
    """The directory holding both JSON files; a clear error naming the package otherwise."""
    candidates = [Path(explicit)] if explicit else [Path(d) for d in SEARCH_DIRS]
    for d in candidates:
        if (d / CORE_JSON).is_file() and (d / GLSL_JSON).is_file():
            return d
    looked = ", ".join(str(d) for d in candidates)
    raise GrammarNotFound(
        f"{CORE_JSON} and {GLSL_JSON} not found (looked in {looked}); install SPIRV-Headers "
        "(Debian/Ubuntu: apt-get install spirv-headers) or pass --grammar-dir"
    )


# ---------------------------------------------------------------- selection


def _is_vendor(name: str) -> bool:
    return name.endswith(VENDOR_SUFFIXES)


def _version(v: str | None) -> tuple[int, int] | None:
    """Grammar versions: absent means 1.0; 'None' means reachable only through an extension."""
    if v is None:
        return (1, 0)
    if v == "None":
        return None
    major, minor = v.split(".")
    return (int(major), int(minor))


def _last_version(v: str | None) -> tuple[int, int] | None:
    return None if v is None else _version(v)


def _operand_kinds(operands: list[dict]) -> tuple[str, ...]:
    return tuple(o["kind"] + o.get("quantifier", "") for o in operands)


def _drop_aliases(items: list[tuple[str, int]]) -> set[str]:
    """Names that only alias an earlier name with the same value plus a KHR/EXT suffix."""
    first_by_value: dict[int, set[str]] = {}
    dropped = set()
    for name, value in items:
        seen = first_by_value.setdefault(value, set())
        if any(name == s + suf for s in seen for suf in ALIAS_SUFFIXES):
            dropped.add(name)
        else:
            seen.add(name)
    return dropped


def select_enums(core: dict) -> tuple[dict, dict]:
    """(kind -> category for every operand kind kept, kind -> {name: enumerant tuple}).

    Enumerants whose parameters use a dropped operand kind (linkage, function
    parameter attributes, ...) are dropped too, so the tables stay closed.
    """
    kinds = {k["kind"]: k for k in core["operand_kinds"]}
    categories = {}
    enums = {}
    for kind, k in kinds.items():
        if k["category"] in ("Id", "Literal", "Composite"):
            categories[kind] = k["category"]
    for kind in KEPT_ENUM_KINDS:
        categories[kind] = kinds[kind]["category"]

    def _kept(parameters: tuple[str, ...]) -> bool:
        return all(p.rstrip("?*") in categories for p in parameters)

    for kind in KEPT_ENUM_KINDS:
        k = kinds[kind]
        listed = [(e["enumerant"], _int(e["value"])) for e in k["enumerants"]]
        aliases = _drop_aliases(listed)
        table = {}
        for e in k["enumerants"]:
            name = e["enumerant"]
            parameters = _operand_kinds(e.get("parameters", []))
            if _is_vendor(name) or name in aliases or not _kept(parameters):
                continue
            table[name] = (
                _int(e["value"]),
                parameters,
                tuple(e.get("capabilities", ())),
                tuple(e.get("extensions", ())),
                _version(e.get("version")),
                _last_version(e.get("lastVersion")),
            )
        enums[kind] = table
    return categories, enums


def _int(v) -> int:
    return int(v, 16) if isinstance(v, str) else int(v)


def select_instructions(core: dict, categories: dict) -> dict:
    """opname -> instruction tuple, for the kept classes whose operand kinds are all kept."""
    listed = [(i["opname"], i["opcode"]) for i in core["instructions"]]
    aliases = _drop_aliases(listed)
    table = {}
    for inst in core["instructions"]:
        name = inst["opname"]
        keep = inst["class"] in KEPT_CLASSES or name in KEPT_RESERVED
        if not keep or _is_vendor(name) or name in aliases:
            continue
        operands = _operand_kinds(inst.get("operands", []))
        if any(o.rstrip("?*") not in categories for o in operands):
            continue  # uses an operand kind (image, ray flags, ...) this table leaves out
        table[name] = (
            inst["opcode"],
            operands,
            tuple(inst.get("capabilities", ())),
            tuple(inst.get("extensions", ())),
            _version(inst.get("version")),
            _last_version(inst.get("lastVersion")),
        )
    return table


def select_glsl(glsl: dict) -> dict:
    return {
        i["opname"]: (
            i["opcode"],
            _operand_kinds(i.get("operands", [])),
            tuple(i.get("capabilities", ())),
        )
        for i in glsl["instructions"]
    }


# ---------------------------------------------------------------- formatting
#
# The output must be exactly what `ruff format` would write, so that the checked
# in module is lint-clean and regenerating it gives a byte-identical file. Every
# value is a literal of tuples, dicts, calls, strings, ints and None, so the
# formatter needs only ruff's one rule for brackets: put the whole literal on one
# line when it fits, else one element per line with a trailing comma.


class Call:
    """`name(args..., key=value...)`: a NamedTuple row with its default fields left out."""

    def __init__(self, name: str, args: tuple, defaults: tuple = ()):
        fields = ROW_FIELDS[name]
        self.name = name
        self.args = args[: len(fields) - len(defaults)]
        tail = zip(fields[len(self.args) :], args[len(self.args) :], defaults, strict=True)
        self.kwargs = {f: v for f, v, d in tail if v != d}


def _flat(v) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if v is None or isinstance(v, int):
        return repr(v)
    if isinstance(v, Call):
        parts = [_flat(a) for a in v.args] + [f"{k}={_flat(x)}" for k, x in v.kwargs.items()]
        return f"{v.name}(" + ", ".join(parts) + ")"
    if isinstance(v, tuple):
        if len(v) == 1:
            return f"({_flat(v[0])},)"
        return "(" + ", ".join(_flat(a) for a in v) + ")"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot format {type(v).__name__}")


def _fmt(v, indent: int, prefix: str, suffix: str) -> list[str]:
    """Lines for `prefix + v + suffix` at `indent` spaces, split the way ruff splits."""
    pad = " " * indent
    flat = pad + prefix + _flat(v) + suffix
    if len(flat) <= LINE_LIMIT or not isinstance(v, (tuple, dict, Call)) or not _items(v):
        return [flat]
    if isinstance(v, Call):
        opener, closer = f"{v.name}(", ")"
    elif isinstance(v, tuple):
        opener, closer = "(", ")"
    else:
        opener, closer = "{", "}"
    lines = [pad + prefix + opener]
    for key, item in _items(v):
        if key is None:
            item_prefix = ""
        elif isinstance(v, Call):
            item_prefix = f"{key}="
        else:
            item_prefix = _flat(key) + ": "
        lines += _fmt(item, indent + 4, item_prefix, ",")
    lines.append(pad + closer + suffix)
    return lines


def _items(v) -> list[tuple]:
    if isinstance(v, dict):
        return list(v.items())
    if isinstance(v, Call):
        return [(None, a) for a in v.args] + list(v.kwargs.items())
    return [(None, a) for a in v]


def render(core: dict, glsl: dict) -> str:
    categories, enums = select_enums(core)
    instructions = select_instructions(core, categories)
    glsl_table = select_glsl(glsl)
    core_version = f"{core['major_version']}.{core['minor_version']}"
    out = [
        '"""SPIR-V grammar tables for the Vulkan emitter: opcodes, operand kinds, enumerants.',
        "",
        f"GENERATED by tools/gen_spirv_grammar.py from spirv.core.grammar.json version "
        f"{core_version} revision {core['revision']}",
        f"and extinst.glsl.std.450.grammar.json version {glsl['version']} revision "
        f"{glsl['revision']}. Do not hand-edit: rerun the script.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from typing import NamedTuple",
        "",
        f"MAGIC_NUMBER = {_int(core['magic_number'])}",
        f"GRAMMAR_VERSION = ({core['major_version']}, {core['minor_version']})",
        f"GRAMMAR_REVISION = {core['revision']}",
        f"GLSL_STD_450_VERSION = {glsl['version']}",
        f"GLSL_STD_450_REVISION = {glsl['revision']}",
        "",
        "",
        "class Instruction(NamedTuple):",
        '    """One core instruction. Operand kinds carry a "?" (optional) or "*" (any number)',
        "    quantifier suffix; any one of `capabilities` enables it; `version` is the first",
        "    SPIR-V version with it in core (None: only through one of `extensions`).",
        '    """',
        "",
        "    opcode: int",
        "    operands: tuple[str, ...]",
        "    capabilities: tuple[str, ...] = ()",
        "    extensions: tuple[str, ...] = ()",
        "    version: tuple[int, int] | None = (1, 0)",
        "    last_version: tuple[int, int] | None = None",
        "",
        "",
        "class Enumerant(NamedTuple):",
        '    """One value of an enumerated operand kind (a bit, for BitEnum kinds); `parameters`',
        "    are the operand kinds that follow it when it is used.",
        '    """',
        "",
        "    value: int",
        "    parameters: tuple[str, ...] = ()",
        "    capabilities: tuple[str, ...] = ()",
        "    extensions: tuple[str, ...] = ()",
        "    version: tuple[int, int] | None = (1, 0)",
        "    last_version: tuple[int, int] | None = None",
        "",
        "",
        "class ExtInstruction(NamedTuple):",
        '    """One instruction of an extended instruction set (used through OpExtInst)."""',
        "",
        "    opcode: int",
        "    operands: tuple[str, ...]",
        "    capabilities: tuple[str, ...] = ()",
        "",
        "",
        "# The category of every operand kind used: Id, Literal, Composite, ValueEnum, BitEnum.",
    ]
    out += _fmt(categories, 0, "OPERAND_KINDS: dict[str, str] = ", "")
    out += ["", "INSTRUCTIONS: dict[str, Instruction] = {"]
    for name, row in instructions.items():
        out += _fmt(Call("Instruction", row, ROW_DEFAULTS), 4, json.dumps(name) + ": ", ",")
    out += ["}", "", "OPCODES: dict[str, int] = {n: i.opcode for n, i in INSTRUCTIONS.items()}"]
    out += ["", "ENUMERANTS: dict[str, dict[str, Enumerant]] = {"]
    for kind, table in enums.items():
        out.append(f"    {json.dumps(kind)}: {{")
        for name, row in table.items():
            out += _fmt(
                Call("Enumerant", row, ((),) + ROW_DEFAULTS), 8, json.dumps(name) + ": ", ","
            )
        out.append("    },")
    out += ["}", "", "GLSL_STD_450: dict[str, ExtInstruction] = {"]
    for name, row in glsl_table.items():
        out += _fmt(Call("ExtInstruction", row, ((),)), 4, json.dumps(name) + ": ", ",")
    out += ["}", ""]
    return "\n".join(out)


def generate(grammar_dir: Path) -> str:
    core = json.loads((grammar_dir / CORE_JSON).read_text())
    glsl = json.loads((grammar_dir / GLSL_JSON).read_text())
    return render(core, glsl)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grammar-dir", help=f"directory holding {CORE_JSON} and {GLSL_JSON}")
    ap.add_argument("-o", "--out", default=str(DEFAULT_OUT), help="module to write")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = ap.parse_args(argv)
    try:
        text = generate(find_grammar_dir(args.grammar_dir))
    except GrammarNotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if args.check:
        if not out.is_file() or out.read_text() != text:
            print(f"{out} is stale: rerun tools/gen_spirv_grammar.py", file=sys.stderr)
            return 1
        return 0
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
