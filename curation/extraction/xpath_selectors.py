"""Attribute selectors: a subset of XPath, evaluated as compiled regular expressions over attributes.

trafilatura removes boilerplate with XPaths such as ``.//*[(self::div or self::p …)][contains(@class,
"footer") or … ]``: a hundred ``contains``/``starts-with`` tests over the attributes of every element.
libxml2 evaluates each test on its own, converting the attribute to a fresh string every time, and
these few expressions were ~45% of trafilatura's time on documentation pages. An element matches
when any test holds, so the tests on one attribute fold into one regular expression
(``translate(@id, "F", "f")`` becomes a character class), and a selector walks the tree once,
reading each attribute once and remembering the answer for each attribute value.

``compile_selector`` accepts only that shape of expression (``.//*``, an optional union of tags, one
disjunction of ``contains``/``starts-with``/``=``/presence tests on attributes, optionally through
``translate``; ``[1]`` per parent or ``(…)[1]`` overall) and returns None for anything else. The
selectors return the same elements in the same (document) order as lxml's ``XPath``.
"""

from __future__ import annotations

import logging
import re

from lxml import etree

logger = logging.getLogger(__name__)

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<string>"[^"]*"|'[^']*')
    | (?P<attr>@[A-Za-z_][\w.-]*)
    | (?P<axis>self::[A-Za-z_][\w.-]*)
    | (?P<func>contains|starts-with|translate)\s*\(
    | (?P<word>or)\b
    | (?P<number>\d+)
    | (?P<punct>\.//\*|[\[\](),=])
    )""",
    re.VERBOSE,
)


class _Unsupported(ValueError):
    pass


def _tokens(path: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    path = path.strip()
    while pos < len(path):
        m = _TOKEN.match(path, pos)  # skips the whitespace before a token; every token is non-empty
        if m is None:
            raise _Unsupported(f"unexpected text at {pos}: {path[pos:pos + 20]!r}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


class _Parser:
    """``.//*`` [ ``(self::a or self::b …)`` ] ``[`` test ``or`` test … ``]``; anything else is refused."""

    def __init__(self, path: str):
        self.tokens = _tokens(path)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self, kind: str, value: str | None = None) -> str:
        tok = self.peek()
        if tok is None or tok[0] != kind or (value is not None and tok[1] != value):
            raise _Unsupported(f"expected {value or kind}, found {tok}")
        self.i += 1
        return tok[1]

    def parse(self) -> tuple[tuple[str, ...] | None, list[tuple], str]:
        """(tags, tests, which): ``which`` is "all", "first" (``(…)[1]``) or "first_child" (``…[1]``)."""
        if self.peek() == ("punct", "("):  # (.//*[…])[1]: the first match in document order
            self.i += 1
            tags, tests, which = self.steps()
            self.take("punct", ")")
            self.position_one()
            if which != "all" or self.peek() is not None:
                raise _Unsupported("more after (…)[1]")
            return tags, tests, "first"
        tags, tests, which = self.steps()
        if self.peek() is not None:
            raise _Unsupported(f"unexpected {self.peek()}")
        return tags, tests, which

    def position_one(self) -> None:
        self.take("punct", "[")
        if self.take("number") != "1":
            raise _Unsupported("a position other than 1")
        self.take("punct", "]")

    def steps(self) -> tuple[tuple[str, ...] | None, list[tuple], str]:
        self.take("punct", ".//*")
        tags, tests = None, None
        while self.peek() == ("punct", "["):
            if self.tokens[self.i + 1][0] == "number":  # .//*[…][1]: each parent's first matching child
                self.position_one()
                if tests is None:
                    raise _Unsupported("a position before the attribute predicate")
                return tags, tests, "first_child"
            self.take("punct", "[")
            if self.peek() == ("punct", "("):
                if tags is not None:
                    raise _Unsupported("two tag predicates")
                tags = self.tag_union()
            else:
                if tests is not None:
                    raise _Unsupported("two attribute predicates")
                tests = self.disjunction()
            self.take("punct", "]")
        if tests is None:
            raise _Unsupported("no attribute predicate")
        return tags, tests, "all"

    def tag_union(self) -> tuple[str, ...]:
        self.take("punct", "(")
        tags = [self.take("axis")[len("self::"):]]
        while self.peek() == ("word", "or"):
            self.i += 1
            tags.append(self.take("axis")[len("self::"):])
        self.take("punct", ")")
        return tuple(tags)

    def disjunction(self) -> list[tuple]:
        tests = [self.test()]
        while self.peek() == ("word", "or"):
            self.i += 1
            tests.append(self.test())
        return tests

    def string(self) -> str:
        return self.take("string")[1:-1]

    def test(self) -> tuple:
        tok = self.peek()
        if tok is not None and tok[0] == "attr":
            attr = self.take("attr")[1:]
            if self.peek() == ("punct", "="):
                self.i += 1
                return ("equals", attr, {}, self.string())
            return ("exists", attr, {}, "")
        func = self.take("func")
        if func not in ("contains", "starts-with"):
            raise _Unsupported(f"{func} as a test")
        attr, table = self.argument()
        self.take("punct", ",")
        needle = self.string()
        self.take("punct", ")")
        if not needle:  # XPath holds these for a missing attribute too
            raise _Unsupported(f"{func} of an empty string")
        return (func, attr, table, needle)

    def argument(self) -> tuple[str, dict[str, str]]:
        if self.peek() is not None and self.peek()[0] == "attr":
            return self.take("attr")[1:], {}
        if self.take("func") != "translate":
            raise _Unsupported("a function other than translate as an argument")
        attr = self.take("attr")[1:]
        self.take("punct", ",")
        source = self.string()
        self.take("punct", ",")
        target = self.string()
        self.take("punct", ")")
        if len(source) != len(target) or len(set(source)) != len(source):
            raise _Unsupported("translate that deletes or repeats characters")
        return attr, dict(zip(source, target))


def _needle_pattern(needle: str, table: dict[str, str]) -> str:
    """A pattern for the raw value's text that ``translate`` (``table``) turns into ``needle``."""
    parts = []
    for char in needle:
        sources = [s for s, t in table.items() if t == char]
        if char not in table:  # an untranslated character stands for itself
            sources.append(char)
        if not sources:
            return "(?!)"  # translation makes this character unreachable
        parts.append(re.escape(sources[0]) if len(sources) == 1 else "[" + "".join(re.escape(s) for s in sorted(sources)) + "]")
    return "".join(parts)


def _test_pattern(kind: str, needle: str, table: dict[str, str]) -> str:
    body = _needle_pattern(needle, table)
    if kind == "contains":
        return body
    if kind == "starts-with":
        return rf"\A{body}"
    return rf"\A{body}\Z"  # equals


# attribute values repeat across a page and a site (``class="hs-identifier"``): each value's answer
# is remembered, up to this many per memo
MEMO_LIMIT = 100_000


def remember(memo: dict, key, answer, *args) -> bool:
    """``answer(*args)``, stored in ``memo`` for ``key`` (emptied when it holds ``MEMO_LIMIT``): called on a miss only.

    Arguments, not a closure: a variable a closure captures is a cell in the whole calling
    function, and these callers read theirs in a loop over every element of a page."""
    if len(memo) >= MEMO_LIMIT:
        memo.clear()
    memo[key] = hit = answer(*args)
    return hit


def _searched(pattern: re.Pattern, value: str) -> bool:
    return pattern.search(value) is not None


class AttributeSelector:
    """Elements below the context node (of ``tags``, if given) whose attributes satisfy any test."""

    def __init__(self, path: str, tags: tuple[str, ...] | None, patterns: tuple[tuple[str, re.Pattern | None], ...], which: str = "all"):
        self.path = path  # the XPath it stands for, as ``etree.XPath.path``
        self.tags = tags
        self.which = which  # "all", "first" or "first_child" (see ``_Parser.parse``)
        # (attribute, pattern, memo); pattern None: the attribute's presence suffices
        self.tests = tuple((attr, pattern, {}) for attr, pattern in patterns)

    def __repr__(self) -> str:
        return f"AttributeSelector({self.path!r})"

    def __call__(self, tree) -> list:
        root, skip = _context(tree)
        if root is None:
            return []
        walk = root.iter(*self.tags) if self.tags else root.iter(etree.Element)
        found = []
        tests, which = self.tests, self.which
        parents = set()  # "first_child": the parents whose first matching child is found (kept alive: same proxies)
        for element in walk:
            if element is skip:
                continue
            if which == "first_child":
                parent = element.getparent()
                if parent in parents:
                    continue
            get = element.get
            for attr, pattern, memo in tests:
                value = get(attr)
                if value is None:
                    continue
                if pattern is not None:
                    hit = memo.get(value)
                    if hit is None:
                        hit = remember(memo, value, _searched, pattern, value)
                    if not hit:
                        continue
                found.append(element)
                if which == "first":
                    return found
                if which == "first_child":
                    parents.add(parent)
                break
        return found


def select_each(selectors: tuple[AttributeSelector, ...], tree) -> list[list]:
    """What each of ``selectors`` (each selecting "all") selects on ``tree``, from one walk of it.

    trafilatura prunes a tree with six such selectors in a row; one walk reads each element's
    attributes once (``items()``: one call, where each test's ``get`` was one) for all of them.
    Equal, selector by selector, to calling each on the same tree.
    """
    if any(s.which != "all" for s in selectors):
        raise ValueError("select_each takes selectors of every match only")
    found: list[list] = [[] for _ in selectors]
    root, skip = _context(tree)
    if root is None:
        return found
    by_tag: dict[str, tuple] = {}  # tag -> ((found list, tests) of each selector that takes the tag)
    for element in root.iter(etree.Element):
        if element is skip:
            continue
        plan = by_tag.get(element.tag)
        if plan is None:
            plan = by_tag[element.tag] = tuple((out, s.tests) for out, s in zip(found, selectors) if not s.tags or element.tag in s.tags)
        if not plan:
            continue
        items = element.items()
        if not items:  # every test needs an attribute
            continue
        attrs = dict(items)
        for out, tests in plan:
            for attr, pattern, memo in tests:
                value = attrs.get(attr)
                if value is None:
                    continue
                if pattern is not None:
                    hit = memo.get(value)
                    if hit is None:
                        hit = remember(memo, value, _searched, pattern, value)
                    if not hit:
                        continue
                out.append(element)
                break
    return found


def _context(tree) -> tuple:
    """(root to walk, the context node to leave out): a document's root is one of its descendants."""
    if isinstance(tree, etree._ElementTree):
        return tree.getroot(), None
    return tree, tree


def compile_selector(path: str) -> AttributeSelector | None:
    """A selector equal to the XPath ``path``, or None where ``path`` is not of the supported shape."""
    try:
        tags, tests, which = _Parser(path).parse()
    except _Unsupported as exc:
        logger.debug("kept as an XPath (%s): %s", exc, path[:80])
        return None
    by_attr: dict[str, list[str] | None] = {}
    for kind, attr, table, needle in tests:
        if kind == "exists":
            by_attr[attr] = None
        elif by_attr.get(attr, []) is not None:
            by_attr.setdefault(attr, []).append(_test_pattern(kind, needle, table))
    patterns = tuple((attr, None if alts is None else re.compile("|".join(f"(?:{a})" for a in alts))) for attr, alts in by_attr.items())
    return AttributeSelector(path, tags, patterns, which)


__all__ = ["MEMO_LIMIT", "AttributeSelector", "compile_selector", "remember", "select_each"]
