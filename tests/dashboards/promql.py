"""Metric names a PromQL expression reads: a small tokenizer, enough for our dashboards and rules.

It skips strings, label matchers (``{...}``), ranges and subqueries (``[...]``), numbers and
durations, Grafana variables (``$queue``, ``$__range``), function names (an identifier followed
by ``(``), aggregation operators, keywords (``bool``, ``offset``, set operators) and the label
lists of ``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``. What remains are
metric names (or recording-rule names: those contain ``:``).
"""

from __future__ import annotations

import re

_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
_KEYWORDS = frozenset({"bool", "offset", "and", "or", "unless", "atan2", "inf", "nan"})
# Aggregation operators may be followed by ``by (...)`` before their parenthesis.
_AGGREGATIONS = frozenset(
    {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
_LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S)


class PromqlScanError(ValueError):
    """The expression is not balanced (unterminated string, bracket or parenthesis)."""


def _skip_string(expr: str, i: int) -> int:
    quote = expr[i]
    j = i + 1
    while j < len(expr):
        if expr[j] == "\\" and quote != "`":
            j += 2
            continue
        if expr[j] == quote:
            return j + 1
        j += 1
    raise PromqlScanError(f"unterminated string at {i}: {expr!r}")


def _skip_block(expr: str, i: int, close: str) -> int:
    """Skip from the opening bracket at ``i`` to after its ``close``, strings included."""
    opening = expr[i]
    depth = 0
    j = i
    while j < len(expr):
        c = expr[j]
        if c in "\"'`":
            j = _skip_string(expr, j)
            continue
        if c == opening:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    raise PromqlScanError(f"unbalanced {opening!r} at {i}: {expr!r}")


def metric_names(expr: str) -> set[str]:
    """Return the metric (and recording rule) names ``expr`` selects."""
    names: set[str] = set()
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c in "\"'`":
            i = _skip_string(expr, i)
        elif c == "{":
            i = _skip_block(expr, i, "}")
        elif c == "[":
            i = _skip_block(expr, i, "]")
        elif c == "#":
            end = expr.find("\n", i)
            i = n if end < 0 else end
        elif c == "$":
            m = _IDENT.match(expr, i + 1)
            i = m.end() if m else i + 1
        elif c.isdigit() or (c == "." and i + 1 < n and expr[i + 1].isdigit()):
            # Numbers and durations: 0.8, 1e3, 1e+3, 0x1f, 5m, 1h30m.
            j = i + 1
            while j < n and (
                expr[j].isalnum()
                or expr[j] in "._"
                or (expr[j] in "+-" and expr[j - 1] in "eE" and not expr[i:j].startswith("0x"))
            ):
                j += 1
            i = j
        elif c.isalpha() or c in "_:":
            m = _IDENT.match(expr, i)
            assert m is not None
            word = m.group()
            j = m.end()
            k = j
            while k < n and expr[k].isspace():
                k += 1
            follows_paren = k < n and expr[k] == "("
            low = word.lower()
            if low in _GROUPING:
                i = _skip_block(expr, k, ")") if follows_paren else j
            elif low in _KEYWORDS or low in _AGGREGATIONS or follows_paren:
                i = j
            else:
                names.add(word)
                i = j
        else:
            i += 1
    return names


def variable_metric_names(query: str) -> set[str]:
    """Metric names of a Grafana Prometheus variable query (``label_values(selector, label)``)."""
    m = _LABEL_VALUES.match(query)
    if m:
        return metric_names(m.group(1))
    if re.match(r"^\s*label_values\s*\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", query):
        return set()  # label_values(label): every series
    return metric_names(query)


def exposition_names(text: str) -> dict[str, str]:
    """Sample names an exposition (text format) can carry, from its ``# TYPE`` lines -> type.

    Labelled metrics without children print HELP/TYPE but no sample: they count as exported.
    The service exports no ``*_created`` samples (``disable_created_metrics()``), so none are
    listed.
    """
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        parts = line.split()
        if len(parts) < 4:
            continue
        name, kind = parts[2], parts[3]
        out[name] = kind
        if kind in ("histogram", "gaugehistogram"):
            for suffix in ("_bucket", "_sum", "_count"):
                out[name + suffix] = kind
        elif kind == "summary":
            for suffix in ("_sum", "_count"):
                out[name + suffix] = kind
        elif kind == "counter":
            out[name.removesuffix("_total") + "_total"] = kind
    return out
