"""Typed configs: frozen dataclasses loaded from YAML with `key.sub=value` command-line overrides.

- A YAML file may name a base file with `base: other.yaml` (relative to itself); its keys are
  merged over the base's, section by section, so a Table I row is a three-line file. An empty file
  (or one of comments only) is refused: it is a mistake, not "all defaults".
- A key given twice in one mapping (two `train:` sections, two `lr_fan:` in one) is an error naming the file
  and both lines, not "the last one wins"; a file that is not UTF-8 text is refused in one line.
- Overrides are `section.key=value`; the value is parsed as YAML (`1e-4`, `true`, `[0, 0.9]`, `null`).
- Unknown keys and values of the wrong type stop with one line naming the key, the expected type and,
  for typos, the closest known key.
- Each field says what it means and which values it accepts beside its declaration, as a `Key` in
  the field's metadata (`setting(default, "help", at_least=1)`). That one source drives `check_values`
  (values out of range stop with one line naming the key, the value and what is allowed),
  `commented_yaml` and `markdown_table`, so the checks, the printed config and the documentation cannot
  drift apart.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from utils.errors import UserError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Key:
    """What a config key means and the values it accepts beyond its type (each item of a list).

    help: one line for `--print-config` and docs/configs.md. at_least / above / below: numeric bounds
    (>=, >, <). choices: the allowed strings.
    """

    help: str
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()

    def range_text(self) -> str:
        """'>= 1', '> 0', '>= 0 and < 1', "one of 'a', 'b'", or '' when the type says it all."""
        if self.choices:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        bounds = [(">=", self.at_least), (">", self.above), ("<", self.below)]
        return " and ".join(f"{op} {bound:g}" for op, bound in bounds if bound is not None)

    def accepts(self, value: Any) -> bool:
        """Whether `value` (or every item of a list value) is in range; None is always accepted."""
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if item is None:
                continue
            if self.choices and item not in self.choices:
                return False
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if not math.isfinite(item) and self.range_text():
                    return False
                if ((self.at_least is not None and item < self.at_least) or (self.above is not None and item <= self.above)
                        or (self.below is not None and item >= self.below)):
                    return False
        return True


KEY_METADATA = "key"  # where `setting` keeps a field's Key in dataclasses.Field.metadata


def setting(default: Any, help: str, *, at_least: float | None = None, above: float | None = None,
            below: float | None = None, choices: tuple[str, ...] = ()) -> Any:
    """A config field with its default and its `Key`: ``num_points: int = setting(10, "landmarks K", at_least=1)``."""
    key = Key(help, at_least=at_least, above=above, below=below, choices=choices)
    return dataclasses.field(default=default, metadata={KEY_METADATA: key})


def section(cls: type) -> Any:
    """A config field holding a whole section, built from its own defaults: ``model: ModelConfig = section(ModelConfig)``."""
    return dataclasses.field(default_factory=cls)


def config_keys(cls: type, prefix: str = "") -> dict[str, Key]:
    """{'section.key': Key} of every leaf field of dataclass `cls`, in declaration order.

    Raises TypeError for a leaf declared without `setting`: every key must say what it means.
    """
    hints = typing.get_type_hints(cls)
    keys: dict[str, Key] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            keys.update(config_keys(hints[f.name], prefix + f.name + "."))
        elif KEY_METADATA in f.metadata:
            keys[prefix + f.name] = f.metadata[KEY_METADATA]
        else:
            raise TypeError(f"config field {prefix}{f.name} of {cls.__name__} has no help: declare it with setting()")
    return keys


class UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in the same mapping, at any depth (YAML's merge key `<<`
    may still be overridden, as YAML intends)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in first_line:
                raise yaml.constructor.ConstructorError(
                    problem=f"key {key!r} is given twice in the same section (first on line {first_line[key]}); "
                            "keep one", problem_mark=key_node.start_mark)
            first_line[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise UserError(f"{path}: 'base' files form a loop")
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start} does not decode); save the config as UTF-8") from None
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of config sections at the top level")
    if not data:  # taken as all defaults it would train the paper's 128-px CelebA setup: surely not meant
        raise UserError(f"{path}: the config file is empty (no sections); expected sections such as model:, data:, "
                        "train: (python train.py --print-config lists every key), or base: other.yaml")
    base = data.pop("base", None)
    if base is None:
        return data
    return merge(_read_yaml(path.parent / base, seen + (path,)), data)


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, everything else is replaced."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['train.lr_fan=1e-4', 'model.num_points=30'] -> {'train': {'lr_fan': 1e-4}, 'model': {...}}."""
    tree: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UserError(f"override {item!r}: expected section.key=value, e.g. train.lr_fan=1e-4")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"override {item!r}: {part!r} is set twice, as a value and as a section")
        node[parts[-1]] = value
    return tree


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp)).replace("NoneType", "null")


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently coerce: int -> float, list -> tuple) `value` against the annotation `tp`."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except UserError:
                continue
        raise UserError(f"config key '{key}': expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or (args and args[-1] is not Ellipsis and len(value) != len(args)):
            raise UserError(f"config key '{key}': expected a list of {len(args)} values, got {value!r}")
        item_types = [args[0]] * len(value) if args and args[-1] is Ellipsis else args
        return tuple(_convert(v, t, key) for v, t in zip(value, item_types))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UserError(f"config key '{key}': expected a section (mapping), got {value!r}")
        return build(tp, value, prefix=key + ".")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise UserError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")


def build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass `cls` from a nested dict, rejecting unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (known: {', '.join(fields)})"
            raise UserError(f"unknown config key '{prefix}{key}'{hint}")
    kwargs = {name: _convert(value, hints[name], prefix + name) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"config section '{prefix.rstrip('.') or cls.__name__}': {exc}") from None


def load_config(cls: type[T], path: str | Path | None, overrides: list[str] | None = None) -> T:
    """The config of a run: defaults of `cls`, then the YAML file (with its bases), then overrides."""
    data = _read_yaml(Path(path)) if path else {}
    data = merge(data, parse_overrides(overrides or []))
    return build(cls, data)


def to_dict(config: Any) -> dict[str, Any]:
    """A plain nested dict (tuples as lists) that `build` turns back into the same config."""
    def plain(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(dataclasses.asdict(config))


def to_yaml(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def leaf_fields(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """('section.key', annotation) of every field of dataclass `cls` that is not itself a section, in order."""
    hints = typing.get_type_hints(cls)
    leaves: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            leaves += leaf_fields(hints[f.name], prefix + f.name + ".")
        else:
            leaves.append((prefix + f.name, hints[f.name]))
    return leaves


def flat_values(config: Any) -> dict[str, Any]:
    """{'section.key': value} of a config, lists for tuples."""
    def walk(tree: dict[str, Any], prefix: str) -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for name, value in tree.items():
            flat.update(walk(value, f"{prefix}{name}.") if isinstance(value, dict) else {prefix + name: value})
        return flat

    return walk(to_dict(config), "")


def check_values(config: Any) -> None:
    """Raise a one-line UserError for the first value out of its key's range."""
    keys = config_keys(type(config))
    for name, value in flat_values(config).items():
        key = keys.get(name)
        if key is not None and not key.accepts(value):
            raise UserError(f"config key '{name}': expected {key.range_text()}, got {value!r}")


def allowed_text(annotation: Any, key: Key | None) -> str:
    """What a key accepts, from its type and its Key: 'int >= 1', "one of 'none', 'bf16'", 'str or null'."""
    if typing.get_origin(annotation) is tuple:
        type_text = "[" + ", ".join(_type_name(a) for a in typing.get_args(annotation)) + "]"
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        type_text = " or ".join(_type_name(a) for a in typing.get_args(annotation))
    else:
        type_text = _type_name(annotation)
    range_text = key.range_text() if key is not None else ""
    if range_text.startswith("one of") or type_text.startswith("one of"):
        return range_text or type_text
    return f"{type_text} {range_text}".strip()


def _yaml_value(value: Any) -> str:
    return json.dumps(value)  # JSON scalars and lists are YAML too


def commented_yaml(config: Any, prefix: str = "") -> str:
    """The config as YAML that `load_config` reads back, each key followed by a comment from its `Key`:
    ``  num_points: 10  # number of landmarks K [int >= 1]``."""
    keys = config_keys(type(config), prefix)
    indent = "  " * prefix.count(".")
    hints = typing.get_type_hints(type(config))
    lines = []
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            lines.append(f"{indent}{f.name}:\n" + commented_yaml(value, name + ".").rstrip("\n"))
            continue
        key = keys.get(name)
        plain = list(value) if isinstance(value, tuple) else value
        help_text = f"{key.help} " if key else ""
        lines.append(f"{indent}{f.name}: {_yaml_value(plain)}  # {help_text}[{allowed_text(hints[f.name], key)}]")
    return "\n".join(lines) + "\n"


def markdown_table(config: Any) -> str:
    """A Markdown table of every key: name, the value in `config` (the defaults), what it accepts, meaning."""
    keys = config_keys(type(config))
    annotations = leaf_fields(type(config))
    values = flat_values(config)
    rows = ["| key | default | accepts | meaning |", "|---|---|---|---|"]
    for name, annotation in annotations:
        key = keys.get(name)
        cells = [f"`{name}`", f"`{_yaml_value(values[name])}`", allowed_text(annotation, key), key.help if key else ""]
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(rows) + "\n"
