"""A SPIR-V module builder: one word buffer per section, deduplicated types and constants.

Instructions are encoded from the generated grammar tables (`grammar.py`), and
every instruction, enumerant and type used records the capabilities and
extensions it needs; `to_words()` declares them. The emitter (`emit.py`) drives
it; it knows nothing about the asyncwarp IR.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence

from . import grammar

# The module's logical layout (SPIR-V spec 2.4), in order. OpCapability and
# OpExtension words are produced by to_words() from what was recorded.
SECTIONS = (
    "ext_inst_imports",
    "memory_model",
    "entry_points",
    "execution_modes",
    "debug_strings",
    "debug_names",
    "annotations",
    "globals",  # types, constants and global variables
    "functions",
)

TARGET_ENVS = {"vulkan1.2": (1, 5), "vulkan1.3": (1, 6)}

GENERATOR_ID = 0  # "unregistered tool" in the Khronos generator registry
_ID_KINDS = ("IdResultType", "IdRef", "IdScope", "IdMemorySemantics")
_INT_LITERALS = ("LiteralInteger", "LiteralExtInstInteger", "LiteralSpecConstantOpInteger")


def encode_string(text: str) -> list[int]:
    """A LiteralString: UTF-8, nul-terminated, padded with nuls to whole little-endian words."""
    data = text.encode("utf-8") + b"\0"
    data += b"\0" * (-len(data) % 4)
    return list(struct.unpack(f"<{len(data) // 4}I", data))


class _Function:
    """The function being built: its OpVariables must open its first block (spec 2.4)."""

    def __init__(self) -> None:
        self.header: list[int] = []  # OpFunction and the first OpLabel
        self.variables: list[int] = []
        self.entry: list[int] = []  # values computed once, right after the variables
        self.body: list[int] = []


class SpirvBuilder:
    """Builds one module for a SPIR-V version; `op()` encodes any instruction of the grammar.

    Capabilities needed by an instruction or enumerant are "any one of" lists in
    the grammar; to_words() satisfies each list with a capability already
    declared (or implied by one), else with the first alternative that is
    neither avoided nor unavailable in this version.
    """

    def __init__(
        self, version: tuple[int, int] = (1, 5), avoid_capabilities: Iterable[str] = ("Kernel",)
    ):
        if version > grammar.GRAMMAR_VERSION:
            raise ValueError(
                f"SPIR-V {version[0]}.{version[1]} is newer than the generated grammar "
                f"({grammar.GRAMMAR_VERSION}); regenerate grammar.py from newer SPIRV-Headers"
            )
        self.version = version
        self.avoid = frozenset(avoid_capabilities)
        self.sections: dict[str, list[int]] = {name: [] for name in SECTIONS}
        self._next_id = 1
        self._capabilities: dict[str, None] = {}  # declared explicitly, in first-use order
        self._capability_choices: list[tuple[tuple[str, ...], str]] = []  # (any-of, who needs it)
        self._extensions: dict[str, None] = {}
        self._types: dict[tuple, int] = {}
        self._constants: dict[tuple, int] = {}
        self._ext_imports: dict[str, int] = {}
        self._strings: dict[str, int] = {}
        self._function: _Function | None = None

    # ------------------------------------------------------------ ids and encoding

    def new_id(self) -> int:
        result = self._next_id
        self._next_id += 1
        return result

    @property
    def bound(self) -> int:
        return self._next_id

    def op(
        self, opname: str, *operands, section: str = "functions", result: int | None = None
    ) -> int | None:
        """Encode `opname` into `section` and return its result id (None if it has none).

        Operands follow the grammar's order without IdResult, which is allocated
        (or taken from `result`, for forward-referenced labels). Ids are ints;
        literals are ints or str; enumerants are names ("GLCompute"), BitEnum
        values a name, a "A|B" string, a sequence of names or an int; enumerant
        parameters follow their enumerant; pairs are 2-tuples; a
        LiteralContextDependentNumber is an int or a sequence of words.
        """
        inst = self._instruction(opname)
        kinds = inst.operands
        has_result = "IdResult" in kinds
        if has_result:
            result = self.new_id() if result is None else result
        elif result is not None:
            raise ValueError(f"{opname} has no result id")
        words: list[int] = []
        rest = list(operands)
        for kind in kinds:
            base, quantifier = kind.rstrip("?*"), kind[len(kind.rstrip("?*")) :]
            if base == "IdResult":
                words.append(result)
                continue
            if quantifier == "*":
                while rest:
                    self._encode(base, rest, words, opname)
            elif quantifier == "?":
                if rest:
                    self._encode(base, rest, words, opname)
            else:
                if not rest:
                    raise ValueError(f"{opname}: missing operand of kind {base}")
                self._encode(base, rest, words, opname)
        if rest:
            raise ValueError(f"{opname}: {len(rest)} operand(s) left over: {rest!r}")
        if len(words) + 1 > 0xFFFF:
            raise ValueError(f"{opname}: instruction of {len(words) + 1} words is too long")
        encoded = [(len(words) + 1) << 16 | inst.opcode] + words
        self._buffer(section).extend(encoded)
        return result if has_result else None

    def _instruction(self, opname: str) -> grammar.Instruction:
        try:
            inst = grammar.INSTRUCTIONS[opname]
        except KeyError:
            raise ValueError(f"{opname} is not in the generated SPIR-V grammar") from None
        self._need(inst, opname)
        return inst

    def _buffer(self, section: str) -> list[int]:
        if section == "functions":
            if self._function is None:
                raise RuntimeError("function instruction emitted outside begin_function()")
            return self._function.body
        return self.sections[section]

    def _encode(self, kind: str, rest: list, words: list[int], opname: str) -> None:
        value = rest.pop(0)
        category = grammar.OPERAND_KINDS.get(kind)
        if kind in _ID_KINDS:
            if not isinstance(value, int) or value <= 0:
                raise TypeError(
                    f"{opname}: {kind} operand must be an id (positive int), not {value!r}"
                )
            words.append(value)
        elif kind in _INT_LITERALS:
            words.append(_word(value, opname, kind))
        elif kind == "LiteralString":
            if not isinstance(value, str):
                raise TypeError(f"{opname}: LiteralString operand must be str, not {value!r}")
            words.extend(encode_string(value))
        elif kind == "LiteralContextDependentNumber":
            seq = value if isinstance(value, (list, tuple)) else [value]
            words.extend(_word(w, opname, kind) for w in seq)
        elif category == "Composite":
            if not (isinstance(value, tuple) and len(value) == 2):
                raise TypeError(f"{opname}: {kind} operand must be a 2-tuple, not {value!r}")
            words.extend(_word(w, opname, kind) for w in value)
        elif category == "ValueEnum":
            enumerant = self.enumerant(kind, value)
            words.append(enumerant.value)
            for param in enumerant.parameters:
                self._encode(param.rstrip("?*"), rest, words, opname)
        elif category == "BitEnum":
            mask, parameters = self._bits(kind, value)
            words.append(mask)
            for param in parameters:
                self._encode(param.rstrip("?*"), rest, words, opname)
        else:
            raise ValueError(f"{opname}: operand kind {kind} is not in the generated grammar")

    def enumerant(self, kind: str, name: str) -> grammar.Enumerant:
        """Look up an enumerant by name, recording what it needs."""
        if not isinstance(name, str):
            raise TypeError(f"{kind} operand must be an enumerant name, not {name!r}")
        try:
            enumerant = grammar.ENUMERANTS[kind][name]
        except KeyError:
            raise ValueError(
                f"{name!r} is not a {kind} enumerant of the generated grammar"
            ) from None
        self._need(enumerant, f"{kind} {name}")
        return enumerant

    def _bits(self, kind: str, value) -> tuple[int, list[str]]:
        if isinstance(value, int):
            return value, []
        names = value.split("|") if isinstance(value, str) else list(value)
        mask = 0
        parameters: list[str] = []
        for name in (n.strip() for n in names):
            if name == "None":
                continue
            enumerant = self.enumerant(kind, name)
            mask |= enumerant.value
            parameters += enumerant.parameters
        return mask, parameters

    def bits(self, kind: str, *names: str) -> int:
        """The mask of BitEnum names (e.g. MemorySemantics), recording their capabilities."""
        return self._bits(kind, names)[0]

    # ------------------------------------------------------------ capabilities

    def require_capability(self, name: str) -> None:
        self.enumerant("Capability", name)
        self._capabilities.setdefault(name)

    def require_extension(self, name: str) -> None:
        self._extensions.setdefault(name)

    def _need(self, item, what: str) -> None:
        """Record what an instruction or enumerant of the grammar needs in this version."""
        if item.last_version is not None and self.version > item.last_version:
            raise RuntimeError(f"{what} was removed after SPIR-V {item.last_version}")
        if item.version is None or item.version > self.version:
            if not item.extensions:
                raise RuntimeError(f"{what} needs SPIR-V {item.version}; module is {self.version}")
            if not any(e in self._extensions for e in item.extensions):
                self.require_extension(item.extensions[0])
        if item.capabilities:
            self._capability_choices.append((item.capabilities, what))

    def _implied(self, declared: Iterable[str]) -> set[str]:
        """The declared capabilities and every capability they implicitly declare."""
        closure: set[str] = set()
        stack = list(declared)
        while stack:
            name = stack.pop()
            if name in closure:
                continue
            closure.add(name)
            enumerant = grammar.ENUMERANTS["Capability"].get(name)
            if enumerant is not None:
                stack.extend(enumerant.capabilities)
        return closure

    def _available(self, name: str) -> bool:
        enumerant = grammar.ENUMERANTS["Capability"].get(name)
        if enumerant is None or name in self.avoid:
            return False
        return (enumerant.version is not None and enumerant.version <= self.version) or bool(
            enumerant.extensions
        )

    def capabilities(self) -> list[str]:
        """Every capability to declare: the required ones plus one choice per any-of need."""
        declared = dict(self._capabilities)
        implied = self._implied(declared)
        for alternatives, what in self._capability_choices:
            if implied.intersection(alternatives):
                continue
            choice = next((c for c in alternatives if self._available(c)), None)
            if choice is None:
                raise RuntimeError(
                    f"{what} needs one of the capabilities {alternatives}, none usable"
                )
            self.require_capability(choice)  # records the capability's own extension
            declared.setdefault(choice)
            implied = self._implied(declared)
        return list(declared)

    def extensions(self) -> list[str]:
        self.capabilities()  # resolving choices may add extensions
        return list(self._extensions)

    # ------------------------------------------------------------ types

    def _type(self, key: tuple, opname: str, *operands) -> int:
        found = self._types.get(key)
        if found is None:
            found = self.op(opname, *operands, section="globals")
            self._types[key] = found
        return found

    def type_void(self) -> int:
        return self._type(("void",), "OpTypeVoid")

    def type_bool(self) -> int:
        return self._type(("bool",), "OpTypeBool")

    def type_int(self, bits: int, signed: bool) -> int:
        # Declaring an int of width 8/16/64 needs a capability (Vulkan validation
        # rules on OpTypeInt); for 8/16 a storage-only capability also serves.
        if bits == 64:
            self.require_capability("Int64")
        elif bits == 16:
            self._capability_choices.append(
                (("Int16", "StorageBuffer16BitAccess", "StorageUniform16"), "16-bit int type")
            )
        elif bits == 8:
            self._capability_choices.append(
                (
                    ("Int8", "StorageBuffer8BitAccess", "UniformAndStorageBuffer8BitAccess"),
                    "8-bit int type",
                )
            )
        elif bits != 32:
            raise ValueError(f"no {bits}-bit integer type in Vulkan SPIR-V")
        return self._type(("int", bits, int(signed)), "OpTypeInt", bits, int(signed))

    def type_float(self, bits: int) -> int:
        if bits == 64:
            self.require_capability("Float64")
        elif bits != 32:
            raise ValueError(f"no {bits}-bit float type supported here")
        return self._type(("float", bits), "OpTypeFloat", bits)

    def type_vector(self, component: int, count: int) -> int:
        return self._type(("vector", component, count), "OpTypeVector", component, count)

    def type_array(self, element: int, length: int) -> int:
        length_id = self.const_int(self.type_int(32, False), length)
        return self._type(("array", element, length), "OpTypeArray", element, length_id)

    def type_runtime_array(self, element: int) -> int:
        return self._type(("runtime_array", element), "OpTypeRuntimeArray", element)

    def type_struct(self, members: Sequence[int]) -> int:
        return self._type(("struct", tuple(members)), "OpTypeStruct", *members)

    def type_pointer(self, storage_class: str, pointee: int) -> int:
        return self._type(
            ("pointer", storage_class, pointee), "OpTypePointer", storage_class, pointee
        )

    def type_function(self, result: int, params: Sequence[int] = ()) -> int:
        return self._type(("function", result, tuple(params)), "OpTypeFunction", result, *params)

    # ------------------------------------------------------------ constants

    def _constant(self, key: tuple, opname: str, *operands) -> int:
        found = self._constants.get(key)
        if found is None:
            found = self.op(opname, *operands, section="globals")
            self._constants[key] = found
        return found

    def const_bool(self, value: bool) -> int:
        opname = "OpConstantTrue" if value else "OpConstantFalse"
        return self._constant(("bool", bool(value)), opname, self.type_bool())

    def const_int(self, type_id: int, value: int, bits: int = 32) -> int:
        """An integer constant of `bits` width; negative values are stored two's complement."""
        if not -(1 << (bits - 1)) <= value < (1 << bits):
            raise ValueError(f"constant {value} does not fit in {bits} bits")
        value &= (1 << bits) - 1
        words = [value & 0xFFFFFFFF, value >> 32] if bits == 64 else [value]
        return self._constant(("int", type_id, tuple(words)), "OpConstant", type_id, words)

    def const_float(self, type_id: int, value: float, bits: int = 32) -> int:
        if bits == 64:
            lo, hi = struct.unpack("<2I", struct.pack("<d", value))
            words = [lo, hi]
        else:
            words = list(struct.unpack("<I", struct.pack("<f", value)))
        return self._constant(("float", type_id, tuple(words)), "OpConstant", type_id, words)

    def const_null(self, type_id: int) -> int:
        return self._constant(("null", type_id), "OpConstantNull", type_id)

    def const_composite(self, type_id: int, parts: Sequence[int]) -> int:
        return self._constant(
            ("composite", type_id, tuple(parts)), "OpConstantComposite", type_id, *parts
        )

    # ------------------------------------------------------------ debug, annotations, globals

    def ext_inst_import(self, name: str) -> int:
        if name not in self._ext_imports:
            self._ext_imports[name] = self.op("OpExtInstImport", name, section="ext_inst_imports")
        return self._ext_imports[name]

    def ext_inst(self, result_type: int, set_name: str, instruction: str, *operands: int) -> int:
        """OpExtInst of a GLSL.std.450 instruction, by name."""
        if set_name != "GLSL.std.450":
            raise ValueError(
                f"extended instruction set {set_name!r} is not in the generated grammar"
            )
        try:
            ext = grammar.GLSL_STD_450[instruction]
        except KeyError:
            raise ValueError(f"{instruction} is not a GLSL.std.450 instruction") from None
        if len(operands) != len(ext.operands):
            raise ValueError(f"GLSL.std.450 {instruction} takes {len(ext.operands)} operand(s)")
        if ext.capabilities:
            self._capability_choices.append((ext.capabilities, f"GLSL.std.450 {instruction}"))
        return self.op(
            "OpExtInst", result_type, self.ext_inst_import(set_name), ext.opcode, *operands
        )

    def string(self, text: str) -> int:
        if text not in self._strings:
            self._strings[text] = self.op("OpString", text, section="debug_strings")
        return self._strings[text]

    def name(self, target: int, text: str) -> None:
        self.op("OpName", target, text, section="debug_names")

    def member_name(self, struct_id: int, member: int, text: str) -> None:
        self.op("OpMemberName", struct_id, member, text, section="debug_names")

    def decorate(self, target: int, decoration: str, *params) -> None:
        self.op("OpDecorate", target, decoration, *params, section="annotations")

    def member_decorate(self, struct_id: int, member: int, decoration: str, *params) -> None:
        self.op("OpMemberDecorate", struct_id, member, decoration, *params, section="annotations")

    def global_variable(self, pointer_type: int, storage_class: str) -> int:
        return self.op("OpVariable", pointer_type, storage_class, section="globals")

    # ------------------------------------------------------------ functions

    def begin_function(self, result_type: int, function_type: int, control: str = "None") -> int:
        """Start a function and its first block; returns the function id."""
        if self._function is not None:
            raise RuntimeError("begin_function() inside a function")
        fn = self._function = _Function()
        fn_id = self.op("OpFunction", result_type, control, function_type)
        self.op("OpLabel")
        fn.header, fn.body = fn.body, []
        return fn_id

    def local_variable(self, pointer_type: int, initializer: int | None = None) -> int:
        """An OpVariable Function, placed at the top of the function's first block."""
        if self._function is None:
            raise RuntimeError("local_variable() outside a function")
        body = self._function.body
        self._function.body = self._function.variables
        try:
            extra = () if initializer is None else (initializer,)
            return self.op("OpVariable", pointer_type, "Function", *extra)
        finally:
            self._function.body = body

    def entry_op(self, opname: str, *operands) -> int | None:
        """Like op(), but placed in the function's first block after its variables: the
        result dominates every block, so it can be used anywhere in the function."""
        if self._function is None:
            raise RuntimeError("entry_op() outside a function")
        body = self._function.body
        self._function.body = self._function.entry
        try:
            return self.op(opname, *operands)
        finally:
            self._function.body = body

    def end_function(self) -> None:
        fn = self._function
        if fn is None:
            raise RuntimeError("end_function() outside a function")
        self.op("OpFunctionEnd")
        self.sections["functions"] += fn.header + fn.variables + fn.entry + fn.body
        self._function = None

    # ------------------------------------------------------------ output

    def to_words(self) -> list[int]:
        if self._function is not None:
            raise RuntimeError("to_words() before end_function()")
        capability = grammar.INSTRUCTIONS["OpCapability"].opcode
        extension = grammar.INSTRUCTIONS["OpExtension"].opcode
        caps = self.capabilities()
        words = [
            grammar.MAGIC_NUMBER,
            self.version[0] << 16 | self.version[1] << 8,
            GENERATOR_ID,
            self.bound,
            0,
        ]
        for name in caps:
            words += [2 << 16 | capability, grammar.ENUMERANTS["Capability"][name].value]
        for name in self.extensions():
            literal = encode_string(name)
            words += [(len(literal) + 1) << 16 | extension] + literal
        for section in SECTIONS:
            words += self.sections[section]
        return words

    def to_bytes(self) -> bytes:
        words = self.to_words()
        return struct.pack(f"<{len(words)}I", *words)


def _word(value, opname: str, kind: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0xFFFFFFFF:
        raise TypeError(f"{opname}: {kind} operand must be a 32-bit unsigned int, not {value!r}")
    return value
