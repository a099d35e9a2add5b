"""The SQL subset: parse with sqlglot, then check the tree against a whitelist.

Accepted::

    SELECT <group columns and aggregates> FROM <table> [WHERE <filter>] [GROUP BY <columns>]

Aggregates: ``COUNT(*)``, ``COUNT(col)``, ``SUM``, ``AVG``,
``VAR``/``VARIANCE``/``VAR_SAMP``/``VARIANCE_SAMP``, ``VAR_POP``/``VARIANCE_POP``,
``STDDEV``/``STDEV``/``STDDEV_SAMP``, ``STDDEV_POP``, ``CORR(a, b)``, ``COVAR_SAMP(a, b)``,
``COVAR_POP(a, b)``, ``HISTOGRAM(col, BINS=[e0, ..., ek])``, ``MIN(col, BINS=[...])``,
``MAX(col, BINS=[...])``, ``QUANTILE(col, q, BINS=[...])``; each may take ``AS alias``, else its
output column is named as written (``VAR_SAMP(amount)``, arguments normalised). The
filter is comparisons (``= <> < <= > >=``) of a column with a literal, ``IN (literals)``,
``BETWEEN literal AND literal``, ``IS [NOT] NULL``, combined with ``AND``/``OR``/``NOT``.
GROUP BY takes only category columns (their values are public). A column is named as declared
in the job: ``amount``, or, for any other name, a double-quoted identifier (``"mean radius"``,
``""`` for a ``"`` inside), which the checked tree keeps as a name (sqlglot's
``Column.name``) and every rendering for DuckDB quotes again. Anything else is refused with
:class:`UnsupportedError`, which says what is supported.
"""

from __future__ import annotations

import enum
import itertools
import re
from dataclasses import dataclass

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError, TokenError

from fedsilo.analytics.config import AnalyticsJob, ColumnKind, ColumnSpec
from fedsilo.errors import UnsupportedError

SUPPORTED = (
    "supported: SELECT <category columns>, <aggregates> FROM <table> [WHERE <column op literal, "
    "IN, BETWEEN, IS NULL, AND/OR/NOT>] [GROUP BY <category columns>]; aggregates COUNT(*), "
    "COUNT(col), SUM, AVG, VAR/VARIANCE/VAR_SAMP/VARIANCE_SAMP, VAR_POP/VARIANCE_POP, "
    "STDDEV/STDEV/STDDEV_SAMP, STDDEV_POP, CORR/COVAR_SAMP/COVAR_POP(a, b), "
    "HISTOGRAM(col, BINS=[...]), MIN/MAX(col, BINS=[...]), QUANTILE(col, q, BINS=[...]) "
    "(see docs/analytics.md)"
)
QUOTING = (
    'a column name that is not a plain identifier is written in double quotes ("mean radius"), '
    'a " inside it doubled'
)
MAX_BINS = 1000
_BINNED = ("QUANTILE", "MIN", "MAX", "HISTOGRAM")


class Agg(enum.Enum):
    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    VAR_SAMP = "var_samp"
    VAR_POP = "var_pop"
    STDDEV_SAMP = "stddev_samp"
    STDDEV_POP = "stddev_pop"
    CORR = "corr"
    COVAR_SAMP = "covar_samp"
    COVAR_POP = "covar_pop"
    HISTOGRAM = "histogram"
    MIN = "min"
    MAX = "max"
    QUANTILE = "quantile"


@dataclass(frozen=True)
class Aggregate:
    """One requested aggregate. ``columns`` is () for COUNT(*), two names for CORR/COVAR."""

    func: Agg
    columns: tuple[str, ...]
    label: str
    bins: tuple[float, ...] = ()
    q: float | None = None


@dataclass(frozen=True)
class Query:
    table: str
    group_by: tuple[str, ...]
    aggregates: tuple[Aggregate, ...]
    where_sql: str | None  # the validated filter, rendered for DuckDB with quoted identifiers
    select_columns: tuple[str, ...] = ()


def _anon(name: str):  # type: ignore[no-untyped-def]
    return lambda args: exp.Anonymous(this=name, expressions=args)


class _Dialect(DuckDB):
    """DuckDB's grammar, with the binned aggregates kept as plain calls (their BINS= argument
    would otherwise be dropped or misread)."""

    class Parser(DuckDB.Parser):  # type: ignore[valid-type,misc]
        FUNCTIONS = {  # noqa: RUF012
            **DuckDB.Parser.FUNCTIONS,
            **{n: _anon(n) for n in (*_BINNED, "VAR")},
        }
        FUNCTION_PARSERS = {  # noqa: RUF012
            k: v for k, v in DuckDB.Parser.FUNCTION_PARSERS.items() if k not in _BINNED
        }


_DIALECT = _Dialect()
_SIMPLE: dict[type[exp.Expression], Agg] = {
    exp.Sum: Agg.SUM,
    exp.Avg: Agg.AVG,
    exp.Variance: Agg.VAR_SAMP,
    exp.VariancePop: Agg.VAR_POP,
    exp.Stddev: Agg.STDDEV_SAMP,
    exp.StddevSamp: Agg.STDDEV_SAMP,
    exp.StddevPop: Agg.STDDEV_POP,
}
_PAIRS: dict[type[exp.Expression], Agg] = {
    exp.Corr: Agg.CORR,
    exp.CovarSamp: Agg.COVAR_SAMP,
    exp.CovarPop: Agg.COVAR_POP,
}
_COMPARE = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)
_CLAUSES = {"expressions", "from", "from_", "where", "group", "kind", "hint", "limit", "distinct"}


def parse_query(sql: str, job: AnalyticsJob) -> Query:
    """Parse ``sql`` and check it against the subset and the job's public schema."""
    try:
        trees = _DIALECT.parse(sql)
    except (ParseError, TokenError) as exc:
        raise UnsupportedError(f"cannot parse the query: {exc}; {QUOTING}; {SUPPORTED}") from None
    if len(trees) != 1 or not isinstance(trees[0], exp.Select):
        raise UnsupportedError(f"only a single SELECT statement is accepted; {SUPPORTED}")
    tree = trees[0]
    for key, value in tree.args.items():
        if value and key not in _CLAUSES:
            raise UnsupportedError(f"clause {key.upper()!r} is not supported; {SUPPORTED}")
    if tree.args.get("distinct") or tree.args.get("limit") or tree.args.get("kind"):
        raise UnsupportedError(f"DISTINCT/LIMIT are not supported; {SUPPORTED}")
    table = _table(tree, job)
    group_by = _group_by(tree, job)
    where = tree.args.get("where")
    where_sql = None
    if where is not None:
        check_filter(where.this, job.columns)
        where_sql = where.this.sql(dialect="duckdb", identify=True)
    aggregates: list[Aggregate] = []
    plain: list[str] = []
    for item in tree.expressions:
        alias = item.alias if isinstance(item, exp.Alias) else None
        node = item.this if isinstance(item, exp.Alias) else item
        if isinstance(node, exp.Column):
            name = _column(node, job.columns)
            if name not in group_by:
                raise UnsupportedError(
                    f"column {name!r} is selected but not in GROUP BY; select only GROUP BY "
                    "columns and aggregates"
                )
            plain.append(name)
            continue
        aggregates.append(_aggregate(node, alias or _label(node, sql), job.columns))
    if not aggregates:
        raise UnsupportedError(f"the query has no aggregate; {SUPPORTED}")
    labels = [a.label for a in aggregates]
    if len(set(labels)) != len(labels):
        raise UnsupportedError(f"two output columns share a name in {labels}; add AS alias")
    return Query(table, group_by, tuple(aggregates), where_sql, tuple(plain))


def _table(tree: exp.Select, job: AnalyticsJob) -> str:
    src = tree.args.get("from") or tree.args.get("from_")
    if src is None or not isinstance(src.this, exp.Table) or tree.args.get("joins"):
        raise UnsupportedError(f"FROM must name the job's table {job.table!r}; {SUPPORTED}")
    t = src.this
    if t.args.get("db") or t.args.get("catalog") or t.name != job.table or t.alias:
        raise UnsupportedError(f"unknown table {t.sql()!r}: this job's table is {job.table!r}")
    return t.name


ROW_FIELDS = ("suppressed", "answers")
"""The fields of each answer row beside its group columns (``QueryResult.to_json``)."""


def _group_by(tree: exp.Select, job: AnalyticsJob) -> tuple[str, ...]:
    group = tree.args.get("group")
    if group is None:
        return ()
    names: list[str] = []
    for node in group.expressions:
        if not isinstance(node, exp.Column):
            raise UnsupportedError(f"GROUP BY accepts only column names; {SUPPORTED}")
        name = _column(node, job.columns)
        if job.columns[name].type is not ColumnKind.CATEGORY:
            public = sorted(c for c, s in job.columns.items() if s.type is ColumnKind.CATEGORY)
            raise UnsupportedError(
                f"cannot GROUP BY {name!r}: only columns with public, declared categories can be "
                f"grouped by (declared: {public})"
            )
        if name in names:
            raise UnsupportedError(f"GROUP BY lists {name!r} twice")
        if name in ROW_FIELDS:
            raise UnsupportedError(
                f"cannot GROUP BY {name!r}: an answer row's own fields are "
                f"{', '.join(map(repr, ROW_FIELDS))}, so the group's value would be overwritten "
                "in the JSON answer; rename the column (in the job's [columns] and the data)"
            )
        names.append(name)
    return tuple(names)


def _column(node: exp.Expression, columns: dict[str, ColumnSpec]) -> str:
    if isinstance(node, exp.Literal) and node.is_string and node.this in columns:
        quoted = exp.to_identifier(node.this, quoted=True).sql(dialect="duckdb")
        raise UnsupportedError(
            f"{node.sql()} is a text literal, not a column: write the column {node.this!r} in "
            f"double quotes, {quoted}"
        )
    if not isinstance(node, exp.Column) or node.table:
        raise UnsupportedError(f"expected a plain column name, got {node.sql()!r}; {SUPPORTED}")
    name = node.name
    if name not in columns:
        raise UnsupportedError(
            f"unknown column {name!r}; the table's declared columns are {sorted(columns)}"
        )
    return name


def _numeric(node: exp.Expression, columns: dict[str, ColumnSpec], what: str) -> str:
    name = _column(node, columns)
    if columns[name].type is not ColumnKind.NUMBER:
        kind = columns[name].type.value
        raise UnsupportedError(f"{what} needs a number column; {name!r} is a {kind} column")
    return name


def _number(node: exp.Expression) -> float:
    if isinstance(node, exp.Neg):
        return -_number(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return float(node.this)
    raise UnsupportedError(f"expected a number literal, got {node.sql()!r}")


def _bins(node: exp.Expression, fname: str) -> tuple[float, ...]:
    if not (
        isinstance(node, exp.EQ)
        and isinstance(node.this, exp.Column)
        and node.this.name.upper() == "BINS"
        and isinstance(node.expression, exp.Array)
    ):
        raise UnsupportedError(
            f"{fname} needs public bin edges as its last argument: BINS=[e0, e1, ..., ek]"
        )
    edges = tuple(_number(e) for e in node.expression.expressions)
    if len(edges) < 2 or len(edges) > MAX_BINS + 1:
        raise UnsupportedError(f"{fname}: BINS needs 2 to {MAX_BINS + 1} edges")
    if any(b <= a for a, b in itertools.pairwise(edges)):
        raise UnsupportedError(f"{fname}: BINS edges must be strictly increasing")
    return edges


def _label(node: exp.Expression, sql: str) -> str:
    """An aggregate's output column name: as sqlglot renders it, but under the function name the
    query wrote (sqlglot renders VAR_SAMP and VARIANCE_SAMP as VARIANCE, so two spellings asked
    side by side would otherwise share a name)."""
    rendered = node.sql(dialect="duckdb")
    name, paren, rest = rendered.partition("(")
    start, end = node.meta.get("start"), node.meta.get("end")
    if not paren or not isinstance(node, exp.Func) or start is None or end is None:
        return rendered
    written = sql[start : end + 1]
    if written.upper() == name.upper() or written.upper() not in type(node).sql_names():
        return rendered
    return written + paren + rest


def _aggregate(node: exp.Expression, label: str, columns: dict[str, ColumnSpec]) -> Aggregate:
    if isinstance(node, exp.Count):
        if node.args.get("distinct") or isinstance(node.this, exp.Distinct):
            raise UnsupportedError(f"COUNT(DISTINCT ...) is not supported; {SUPPORTED}")
        if isinstance(node.this, exp.Star):
            return Aggregate(Agg.COUNT, (), label)
        return Aggregate(Agg.COUNT, (_column(node.this, columns),), label)
    if type(node) in _SIMPLE:
        func = _SIMPLE[type(node)]
        return Aggregate(func, (_numeric(node.this, columns, func.name),), label)
    if type(node) in _PAIRS:
        func = _PAIRS[type(node)]
        a = _numeric(node.this, columns, func.name)
        b = _numeric(node.expression, columns, func.name)
        return Aggregate(func, (a, b), label)
    if isinstance(node, exp.Anonymous):
        fname = str(node.this).upper()
        args = list(node.expressions)
        if fname == "VAR" and len(args) == 1:
            return Aggregate(Agg.VAR_SAMP, (_numeric(args[0], columns, "VAR"),), label)
        if fname in ("MIN", "MAX", "HISTOGRAM") and len(args) == 2:
            col = _numeric(args[0], columns, fname)
            return Aggregate(Agg[fname], (col,), label, bins=_bins(args[1], fname))
        if fname in ("MIN", "MAX") and len(args) == 1:
            raise UnsupportedError(
                f"{fname} is only available as a DP approximation from a histogram: write "
                f"{fname}(col, BINS=[e0, ..., ek]) with public bin edges"
            )
        if fname == "QUANTILE" and len(args) == 3:
            col = _numeric(args[0], columns, fname)
            q = _number(args[1])
            if not 0 < q < 1:
                raise UnsupportedError(f"QUANTILE: q must be in (0, 1), got {q}")
            return Aggregate(Agg.QUANTILE, (col,), label, bins=_bins(args[2], fname), q=q)
        if fname in ("QUANTILE", "HISTOGRAM"):
            raise UnsupportedError(
                f"{fname} needs public bin edges: HISTOGRAM(col, BINS=[...]) or "
                "QUANTILE(col, q, BINS=[...])"
            )
    raise UnsupportedError(f"{node.sql()!r} is not a supported select item; {SUPPORTED}")


def check_filter(node: exp.Expression, columns: dict[str, ColumnSpec]) -> None:
    """Refuse any filter outside: column <op> literal, IN, BETWEEN, IS NULL, AND/OR/NOT."""
    if isinstance(node, exp.Paren):
        check_filter(node.this, columns)
    elif isinstance(node, exp.And | exp.Or):
        check_filter(node.this, columns)
        check_filter(node.expression, columns)
    elif isinstance(node, exp.Not):
        check_filter(node.this, columns)
    elif isinstance(node, _COMPARE):
        left, right = node.this, node.expression
        if isinstance(left, exp.Column):
            _literal_for(right, _column(left, columns), columns)
        elif isinstance(right, exp.Column):
            _literal_for(left, _column(right, columns), columns)
        else:
            raise UnsupportedError(
                f"WHERE compares a column with a literal, got {node.sql()!r}; {SUPPORTED}"
            )
    elif isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise UnsupportedError("WHERE ... IN takes a list of literals, not a subquery")
        col = _column(node.this, columns)
        for item in node.expressions:
            _literal_for(item, col, columns)
    elif isinstance(node, exp.Between):
        col = _column(node.this, columns)
        _literal_for(node.args["low"], col, columns)
        _literal_for(node.args["high"], col, columns)
    elif isinstance(node, exp.Is) and isinstance(node.expression, exp.Null):
        _column(node.this, columns)
    else:
        raise UnsupportedError(f"WHERE clause {node.sql()!r} is not supported; {SUPPORTED}")


def _literal_for(node: exp.Expression, col: str, columns: dict[str, ColumnSpec]) -> None:
    spec = columns[col]
    if spec.type is ColumnKind.BOOLEAN:
        if not isinstance(node, exp.Boolean):
            raise UnsupportedError(
                f"column {col!r} holds booleans; compare it with TRUE or FALSE, not {node.sql()!r}"
            )
        return
    if spec.type is ColumnKind.DATE:
        if not (
            isinstance(node, exp.Literal)
            and node.is_string
            and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", node.this)
        ):
            raise UnsupportedError(
                f"column {col!r} holds dates; compare it with an ISO date literal such as "
                f"'2025-01-31', not {node.sql()!r}"
            )
        return
    inner = node.this if isinstance(node, exp.Neg) else node
    if not isinstance(inner, exp.Literal):
        raise UnsupportedError(
            f"column {col!r} can only be compared with a literal, got {node.sql()!r}"
        )
    wants_text = spec.type is ColumnKind.CATEGORY and any(
        isinstance(c, str) for c in spec.categories or []
    )
    if inner.is_string != wants_text:
        kind = "text" if wants_text else "number"
        raise UnsupportedError(
            f"column {col!r} holds {kind} values; compare it with a {kind} literal, not {node.sql()!r}"
        )


def parse_filter(where_sql: str, columns: dict[str, ColumnSpec]) -> str:
    """Re-check a filter received from the coordinator; return it re-rendered for DuckDB."""
    try:
        node = _DIALECT.parse(f"SELECT 1 FROM t WHERE {where_sql}")[0]
    except (ParseError, TokenError) as exc:
        raise UnsupportedError(f"cannot parse the filter: {exc}") from None
    if not isinstance(node, exp.Select) or node.args.get("where") is None:
        raise UnsupportedError("the filter is not a single WHERE expression")
    check_filter(node.args["where"].this, columns)
    return str(node.args["where"].this.sql(dialect="duckdb", identify=True))


def filter_columns(where_sql: str) -> set[str]:
    """The columns a (validated) filter reads."""
    node = _DIALECT.parse(f"SELECT 1 FROM t WHERE {where_sql}")[0]
    assert node is not None
    return {str(c.name) for c in node.find_all(exp.Column)}
