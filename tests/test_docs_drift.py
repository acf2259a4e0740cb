"""Numbers the docs quote from the code or the shipped model file, read from there: the
model's input size, class order and temperature (from the model file's header, so a new
model updates what the docs must say), and the column types of docs/schema.md (from
fervid.output.schema). A disagreement fails here, not in a reader's notebook."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from fervid.model.header import read_model_header
from fervid.output.schema import FRAMES, SEGMENTS, TABLES, VIDEOS, schema_for

ROOT = Path(__file__).resolve().parents[1]
SPEC = read_model_header(None)[0]


def _doc(name: str) -> str:
    return (ROOT / name).read_text(encoding="utf-8")


#: (doc, pattern whose groups are the shipped model's input size)
INPUT_SIZE_QUOTES = [
    ("docs/architecture.md", r"(\d+)x(\d+) gray PNG for the default model"),
    ("docs/schema.md", r"model-input crop \((\d+) × (\d+) gray for the shipped model"),
    ("docs/performance.md", r"(\d+) px for the shipped model"),
    ("docs/performance.md", r"face of (\d+) px \(the shipped model's input\)"),
]


@pytest.mark.parametrize(("doc", "pattern"), INPUT_SIZE_QUOTES)
def test_docs_quote_the_shipped_models_input_size(doc: str, pattern: str) -> None:
    found = re.findall(pattern, _doc(doc))
    assert found, f"{doc} no longer says {pattern!r}; update INPUT_SIZE_QUOTES with the text"
    for groups in found:
        sizes = {int(g) for g in (groups if isinstance(groups, tuple) else (groups,))}
        assert sizes == {SPEC.input_size}, (doc, groups, SPEC.input_size)


def test_readme_class_order_is_the_models() -> None:
    m = re.search(r"(\d+) classes: ([a-z,\s]+?)\)", _doc("README.md"))
    assert m, "README.md no longer lists the classes"
    names = tuple(n.strip() for n in m.group(2).split(","))
    assert int(m.group(1)) == len(SPEC.class_names) and names == SPEC.class_names


def test_model_card_temperature_is_the_models() -> None:
    quoted = re.findall(r"T = (\d\.\d+), fitted on", _doc("docs/model-card.md"))
    assert quoted == [f"{SPEC.temperature:.3f}"], (quoted, SPEC.temperature)


def _doc_type(t: pa.DataType) -> str:
    """How docs/schema.md spells an Arrow type."""
    if pa.types.is_timestamp(t):
        return f"timestamp[{t.unit}, {t.tz}]" if t.tz else f"timestamp[{t.unit}]"
    if pa.types.is_map(t):
        return f"map<{t.key_type}, {t.item_type}>"
    return {"float": "float32", "double": "float64", "date32[day]": "date32"}.get(str(t), str(t))


def _documented_types(table: str) -> dict[str, str]:
    """``column -> type`` from the rows of docs/schema.md's section of ``table`` (and the
    identity columns shared by all three tables)."""
    text = _doc("docs/schema.md")
    out: dict[str, str] = {}
    for heading in (f"## `{table}`", "## Identity columns"):
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for m in re.finditer(r"^\| `([a-z0-9_]+)` +\| ([^|]+?) +\|", section, re.M):
            out[m.group(1)] = m.group(2).strip()
    return out


@pytest.mark.parametrize("table", [FRAMES, SEGMENTS, VIDEOS])
def test_schema_doc_types_are_the_code(table: str) -> None:
    assert table in TABLES
    documented = _documented_types(table)
    schema = schema_for(table)
    checked = [f for f in schema if f.name in documented]
    assert len(checked) >= 8, f"docs/schema.md's {table} table was not found"
    wrong = {f.name: (documented[f.name], _doc_type(f.type)) for f in checked
             if documented[f.name] != _doc_type(f.type)}  # fmt: skip
    assert not wrong, f"docs/schema.md vs fervid.output.schema ({table}): {wrong}"
