"""trafilatura made faster without changing its output, installed in the process that extracts.

**XPaths.** trafilatura's pruning and body XPaths (``SELECTOR_LISTS``: a hundred ``contains`` tests
over the attributes of every element, ~45% of its time on documentation pages) become
``xpath_selectors.AttributeSelector``s, which select the same elements in the same order; an
expression of another shape stays an XPath. ``tests/test_trafilatura_fast.py`` compares every
expression's elements at every call on the bundled pages, and the extracted texts.

**Element classes.** lxml.html gives each element its Python class through a lookup written in
Python, called every time lxml makes a Python object for an element (~1,600 times a page in
trafilatura). ``c_class_lookup`` gives the same classes (``HtmlElement``, and lxml.html's form
element classes by tag name) from lxml's C lookups: ~13% of trafilatura's time.

**justext's stop words.** trafilatura's justext fallback (a third of pages) passes the stop words
of every language as one tuple of 154k words to ``justext.core.classify_paragraphs``, which looks
them up in an ``lru_cache`` and so hashes the whole tuple on every call (~1 ms).
``define_stoplist_by_identity`` remembers the answer by the tuple object instead.

**Functions with a cheaper path to the same answer** (``FUNCTIONS``): readability's
``remove_unlikely_candidates``, run on nearly every page, joined and searched the class and id of
every element with two regular expressions: its answer is remembered per (class, id) pair.
``remove_control_characters``, which calls a Python function per character of every line of every
extracted text, returns a line whose characters are all printable as it is (it keeps every
printable character and every space). ``delete_by_link_density`` trimmed the whole text of every
element of a tag to test its links, and an element without a link passes that test whatever its text:
only elements with a link have their text taken.

**Pruning in one walk.** ``prune_unwanted_sections`` (once or twice a page) prunes a tree with six
selectors in a row, each walking the whole tree (``PRUNED_TOGETHER``). ``in_one_walk`` evaluates them in one walk first
(``xpath_selectors.select_each``), and each then selects its elements that are still in the tree:
pruning only removes elements, and an element's tag and attributes, all a selector tests, do not
change when others are removed.

``install()`` applies all of these in the calling process; the extraction stage calls it in its child only.
"""

from __future__ import annotations

import importlib

from lxml import etree

from curation.extraction.xpath_selectors import AttributeSelector, compile_selector, remember, select_each

# the lists of trafilatura.xpaths whose expressions are used only as ``expression(tree)``: by
# ``htmlprocessing.prune_unwanted_nodes``, and (BODY_XPATH) by ``main_extractor._extract``
SELECTOR_LISTS = (
    "BODY_XPATH",
    "OVERALL_DISCARD_XPATH",
    "PAYWALL_DISCARD_XPATH",
    "TEASER_DISCARD_XPATH",
    "PRECISION_DISCARD_XPATH",
    "DISCARD_IMAGE_ELEMENTS",
    "REMOVE_COMMENTS_XPATH",
    "COMMENTS_DISCARD_XPATH",
)


def c_class_lookup() -> etree.ElementNamespaceClassLookup:
    """lxml.html's ``HtmlElementClassLookup``, evaluated by lxml in C instead of a Python method.

    lxml.html's parser lowercases tag names, and trafilatura renames elements only to lowercase
    names, so the tag names that lxml.html lowercases before its lookup are lowercase already.
    """
    from lxml import html as lxml_html

    lookup = etree.ElementNamespaceClassLookup(
        etree.ElementDefaultClassLookup(
            element=lxml_html.HtmlElement, comment=lxml_html.HtmlComment, pi=lxml_html.HtmlProcessingInstruction, entity=lxml_html.HtmlEntity
        )
    )
    by_tag = lookup.get_namespace(None)
    for tag, cls in lxml_html.HtmlElementClassLookup._default_element_classes.items():
        by_tag[tag] = cls
    return lookup


class define_stoplist_by_identity:  # noqa: N801 (stands in for a function)
    """``justext.core.define_stoplist`` remembered by the argument's identity, not its hash.

    Holds a reference to each argument, so an id is never reused while remembered; a handful of
    stop lists exist (one per language and the all-languages one).
    """

    LIMIT = 256

    def __init__(self, define_stoplist):
        self.define_stoplist = define_stoplist
        self.memo: dict[int, tuple[object, frozenset]] = {}

    def __call__(self, stoplist):
        hit = self.memo.get(id(stoplist))
        if hit is not None and hit[0] is stoplist:
            return hit[1]
        if len(self.memo) >= self.LIMIT:
            self.memo.clear()
        words = self.define_stoplist(stoplist)
        self.memo[id(stoplist)] = (stoplist, words)
        return words


def printable_first(remove_control_characters):
    """trafilatura's ``utils.remove_control_characters``, skipped for a string of printable characters only."""

    def remove_control_characters_printable_first(string):
        if string.isprintable():  # each character kept: the string itself
            return string
        return remove_control_characters(string)

    return remove_control_characters_printable_first


def remembered_unlikely_candidates(readability):
    """readability's ``Document.remove_unlikely_candidates`` with each (class, id) pair's answer remembered."""
    unlikely, likely = readability.REGEXES["unlikelyCandidatesRe"], readability.REGEXES["okMaybeItsACandidateRe"]
    frame_tags = readability.FRAME_TAGS
    memo: dict[tuple, bool] = {}

    def _unlikely(key: tuple) -> bool:
        attrs = " ".join(filter(None, key))
        return len(attrs) >= 2 and unlikely.search(attrs) is not None and likely.search(attrs) is None

    def remove_unlikely_candidates(self):
        for elem in self.doc.findall(".//*"):
            key = (elem.get("class"), elem.get("id"))
            drop = memo.get(key)
            if drop is None:
                drop = remember(memo, key, _unlikely, key)
            if drop and elem.tag not in frame_tags:
                elem.drop_tree()

    return remove_unlikely_candidates


def links_first(htmlprocessing):
    """htmlprocessing's ``delete_by_link_density``, taking the text only of elements with a link.

    ``link_density_test`` answers (False, []) for an element without a ``ref`` below it, whatever
    its text: such an element is neither deleted nor backtracked into, so its text is never needed.
    """
    link_density_test, delete_element, trim = htmlprocessing.link_density_test, htmlprocessing.delete_element, htmlprocessing.trim

    def delete_by_link_density(subtree, tagname, backtracking=False, favor_precision=False):
        deletions = []
        threshold = 200 if favor_precision else 100
        for elem in subtree.iter(tagname):
            if elem.find(".//ref") is None:
                continue
            elemtext = trim(elem.text_content())
            result, templist = link_density_test(elem, elemtext, favor_precision)
            if result:
                deletions.append(elem)
            elif backtracking and templist and 0 < len(elemtext) < threshold and len(elem) >= 3:
                deletions.extend(elem)
        for elem in dict.fromkeys(deletions):
            delete_element(elem)
        return subtree

    return delete_by_link_density


# the lists prune_unwanted_sections prunes its tree with, one after another
PRUNED_TOGETHER = ("OVERALL_DISCARD_XPATH", "PAYWALL_DISCARD_XPATH", "DISCARD_IMAGE_ELEMENTS", "TEASER_DISCARD_XPATH", "PRECISION_DISCARD_XPATH")


def _below(element, context) -> bool:
    return any(ancestor is context for ancestor in element.iterancestors())


class _Selected:
    """A selector's stand-in while one tree is pruned, used once: on that tree, what the selector
    selected when it was walked, less the elements removed since; then the selector is back in its
    place. On any other tree (a backup), the selector itself."""

    __slots__ = ("selector", "tree", "elements", "slot")

    def __init__(self, selector: AttributeSelector, tree, elements: list, slot: tuple[list, int]):
        self.selector, self.tree, self.elements, self.slot = selector, tree, elements, slot

    def __call__(self, tree) -> list:
        if tree is not self.tree:
            return self.selector(tree)
        expressions, i = self.slot
        expressions[i] = self.selector
        return [e for e in self.elements if _below(e, tree)]


def in_one_walk(prune_unwanted_sections, xpaths):
    """main_extractor's ``prune_unwanted_sections``, which prunes its tree with the lists of
    ``PRUNED_TOGETHER`` one after another before changing it otherwise, with their selectors
    evaluated in one walk first."""
    lists = [getattr(xpaths, name) for name in PRUNED_TOGETHER]

    def prune_unwanted_sections_in_one_walk(tree, *args):
        slots = [(expressions, i, e) for expressions in lists for i, e in enumerate(expressions) if isinstance(e, AttributeSelector) and e.which == "all"]
        if not slots or not isinstance(tree, etree._Element):
            return prune_unwanted_sections(tree, *args)
        selected = select_each(tuple(e for _, _, e in slots), tree)
        for (expressions, i, selector), elements in zip(slots, selected):
            expressions[i] = _Selected(selector, tree, elements, (expressions, i))
        try:
            return prune_unwanted_sections(tree, *args)
        finally:  # the stand-ins not used (a list the function skipped)
            for expressions, i, selector in slots:
                expressions[i] = selector

    return prune_unwanted_sections_in_one_walk


# (module, owner of the function within it or "", name, replacement factory taking the original)
FUNCTIONS = (
    ("trafilatura.utils", "", "remove_control_characters", lambda module, original: printable_first(original)),
    ("trafilatura.readability_lxml", "Document", "remove_unlikely_candidates", lambda module, original: remembered_unlikely_candidates(module)),
    # main_extractor imported the function itself: replaced there
    ("trafilatura.main_extractor", "", "delete_by_link_density", lambda module, original: links_first(importlib.import_module("trafilatura.htmlprocessing"))),
    ("trafilatura.main_extractor", "", "prune_unwanted_sections", lambda module, original: in_one_walk(original, importlib.import_module("trafilatura.xpaths"))),
)


def _replace_functions() -> list[tuple[object, str, object]]:
    """Each of ``FUNCTIONS`` this trafilatura has, replaced; (owner, name, original) of those replaced."""
    done = []
    for module_name, owner_name, name, make in FUNCTIONS:
        try:
            module = importlib.import_module(module_name)
            owner = getattr(module, owner_name) if owner_name else module
            original = getattr(owner, name)
            replacement = make(module, original)
        except (ImportError, AttributeError, KeyError):  # another trafilatura version: leave it alone
            continue
        setattr(owner, name, replacement)
        done.append((owner, name, original))
    return done


# what install() replaced, while installed: {"lists": {name: original expressions}, "parser": the
# parser given c_class_lookup or None, "define_stoplist": justext's own or None, "functions":
# [(owner, name, original)]}
_installed: dict | None = None


def install() -> int:
    """Replace trafilatura's XPaths of ``SELECTOR_LISTS`` by equal selectors, in place (every importer
    sees them), give its HTML parser ``c_class_lookup``, justext ``define_stoplist_by_identity``, and
    replace ``FUNCTIONS``.

    Returns the number of expressions replaced; a second call replaces nothing.
    """
    global _installed
    import justext.core
    from lxml import html as lxml_html
    from trafilatura import utils, xpaths

    if _installed is not None:
        return 0
    _installed = {"lists": {}, "parser": None, "define_stoplist": None, "functions": []}
    replaced = 0
    for name in SELECTOR_LISTS:
        expressions = getattr(xpaths, name, None)
        if not isinstance(expressions, list):  # another trafilatura version: leave it alone
            continue
        _installed["lists"][name] = list(expressions)
        for i, expression in enumerate(expressions):
            selector = compile_selector(expression.path) if isinstance(expression, etree.XPath) else None
            if selector is not None:
                expressions[i] = selector
                replaced += 1
    parser = getattr(utils, "HTML_PARSER", None)
    if isinstance(parser, lxml_html.HTMLParser):
        _installed["parser"] = parser
        parser.set_element_class_lookup(c_class_lookup())
    if callable(getattr(justext.core, "define_stoplist", None)):
        _installed["define_stoplist"] = justext.core.define_stoplist
        justext.core.define_stoplist = define_stoplist_by_identity(justext.core.define_stoplist)
    _installed["functions"] = _replace_functions()
    return replaced


def uninstall() -> None:
    """trafilatura's own XPaths, lookup, functions and justext's stop list function again."""
    global _installed
    import justext.core
    from lxml import html as lxml_html
    from trafilatura import xpaths

    if _installed is None:
        return
    for name, originals in _installed["lists"].items():
        getattr(xpaths, name)[:] = originals
    if _installed["parser"] is not None:  # lxml gives no way to read a parser's lookup back: set lxml.html's anew
        _installed["parser"].set_element_class_lookup(lxml_html.HtmlElementClassLookup())
    if _installed["define_stoplist"] is not None:
        justext.core.define_stoplist = _installed["define_stoplist"]
    for owner, name, original in _installed["functions"]:
        setattr(owner, name, original)
    _installed = None


__all__ = ["FUNCTIONS", "SELECTOR_LISTS", "c_class_lookup", "define_stoplist_by_identity", "install", "links_first", "in_one_walk", "printable_first",
           "remembered_unlikely_candidates", "uninstall"]
