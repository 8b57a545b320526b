"""Writes the small YAML subset tokend configs need, without PyYAML.

Mappings, sequences, strings (always double-quoted, JSON escaping is valid YAML),
numbers and booleans.
"""

import json


def _scalar(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def _emit(value, indent, lines):
    pad = "  " * indent
    if isinstance(value, dict):
        if not value:
            lines[-1] += " {}"
            return
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                _emit(item, indent + 1, lines)
            elif isinstance(item, (dict, list)):
                lines.append(f"{pad}{key}: {'{}' if isinstance(item, dict) else '[]'}")
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                first = True
                for key, sub in item.items():
                    prefix = f"{pad}- " if first else f"{pad}  "
                    first = False
                    if isinstance(sub, (dict, list)) and sub:
                        lines.append(f"{prefix}{key}:")
                        _emit(sub, indent + 2, lines)
                    elif isinstance(sub, (dict, list)):
                        lines.append(f"{prefix}{key}: {'{}' if isinstance(sub, dict) else '[]'}")
                    else:
                        lines.append(f"{prefix}{key}: {_scalar(sub)}")
            else:
                lines.append(f"{pad}- {_scalar(item)}")


def dump(value):
    lines = []
    _emit(value, 0, lines)
    return "\n".join(lines) + "\n"
