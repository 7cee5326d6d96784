"""trafilatura made faster: compiled selectors and a C class lookup, with the same elements, so the same text.

The bundled pages run through stock trafilatura with every XPath of ``SELECTOR_LISTS`` wrapped:
at every call, in every state of the tree trafilatura prunes, the compiled selector must select
the very elements the XPath selects, in the same order. Equal selections at every call make the
whole extraction equal; the last test checks that end to end through the extraction stage.
"""

from __future__ import annotations

import pytest
from lxml import etree, html as lxml_html

from curation.extraction import trafilatura_fast as sel
from curation.extraction import xpath_selectors
from tests.conftest import bundled_pages


def bundled_html() -> list[str]:
    return [page["html"] for page in bundled_pages()]


@pytest.fixture(autouse=True)
def stock_trafilatura():
    sel.uninstall()
    yield
    sel.uninstall()


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


def test_every_selector_selects_what_its_xpath_selects_on_the_bundled_pages():
    from datatrove.pipeline.extractors.trafilatura import Trafilatura
    from trafilatura import xpaths

    calls, selected, mismatches = 0, 0, []

    class Checked:
        def __init__(self, xpath: etree.XPath, selector: xpath_selectors.AttributeSelector):
            self.xpath, self.selector = xpath, selector

        def __call__(self, tree):
            nonlocal calls, selected
            expected = self.xpath(tree)
            got = self.selector(tree)
            calls += 1
            selected += len(expected)
            if not _same(expected, got):
                mismatches.append((self.xpath.path[:60], len(expected), len(got)))
            return expected

    compiled, originals = 0, {name: list(getattr(xpaths, name)) for name in sel.SELECTOR_LISTS}
    try:
        for name in sel.SELECTOR_LISTS:
            expressions = getattr(xpaths, name)
            for i, xpath in enumerate(expressions):
                selector = xpath_selectors.compile_selector(xpath.path)
                if selector is not None:
                    expressions[i] = Checked(xpath, selector)
                    compiled += 1
        assert compiled >= 12  # the expressions that cost trafilatura its time (see the module's docstring)

        extract = Trafilatura(favour_precision=True, timeout=5, deduplicate=False).extract
        pages = bundled_html()
        for page in pages:
            extract(page)
    finally:
        for name, expressions in originals.items():
            getattr(xpaths, name)[:] = expressions
    assert not mismatches, mismatches[:5]
    assert calls > 5 * len(pages) and selected > 1000  # the checks ran, and on elements that matter


@pytest.mark.parametrize(
    "page, xpath",
    [
        ('<div id="siteNav"></div><div id="SITENAV"></div><div id="nAv"></div>', './/*[contains(translate(@id, "N", "n"), "nav")]'),
        ('<div class="Navigation"></div><div class="NavigatioN"></div><div class="navigatioN"></div>',
         './/*[contains(translate(@class, "N", "n"), "navigation")]'),
        ('<div class="FullText"></div><div class="FULLTEXT"></div><div class="fullText"></div>',
         './/*[contains(translate(@class, "FULTEX","fultex"), "fulltext")]'),
        ('<p class="shared"></p><span class="x share"></span><div class="Shar"></div><span class="share-bar"></span>', './/*[(self::div or self::span)][starts-with(@class, "shar")]'),
        ('<div class="post"></div><div class="post "></div><div class="a post"></div>', './/*[@class="post" or @id="post"]'),
        ('<div aria-hidden="true"></div><div aria-hidden="True"></div><div data-x=""></div>', './/*[@aria-hidden="true" or @data-x]'),
        ('<div class="é-footer"></div><div class="footer\n"></div>', './/*[contains(@class, "footer") or @class="footer"]'),
    ],
)
def test_a_selector_agrees_with_its_xpath_on_cases_and_characters(page, xpath):
    tree = lxml_html.fromstring(f"<html><body>{page}</body></html>")
    selector = xpath_selectors.compile_selector(xpath)
    assert selector is not None
    expected = etree.XPath(xpath)(tree)
    assert expected  # each case selects something, and not everything
    assert _same(selector(tree), expected)


def test_positions_select_the_first_match_or_each_parents_first_matching_child():
    page = """<html><body>
      <div class="x"><section class="main"><p>a</p></section><div class="main">b</div></div>
      <article class="main"><div class="main"><div class="main">c</div></div></article>
    </body></html>"""
    tree = lxml_html.fromstring(page)
    tests = '[(self::article or self::div or self::section)][contains(@class, "main")]'
    for xpath in (f".//*{tests}[1]", f"(.//*{tests})[1]", f".//*{tests}"):
        selector = xpath_selectors.compile_selector(xpath)
        assert selector is not None, xpath
        expected = etree.XPath(xpath)(tree)
        assert _same(selector(tree), expected), xpath
        assert _same(selector(tree.getroottree()), etree.XPath(xpath)(tree.getroottree())), xpath
    assert len(etree.XPath(f".//*{tests}[1]")(tree)) == 4  # per parent: not the same as the first overall


def test_the_context_node_itself_is_never_selected():
    tree = lxml_html.fromstring('<div class="footer"><div class="footer">inner</div></div>')
    selector = xpath_selectors.compile_selector('.//*[contains(@class, "footer")]')
    assert [e.text for e in selector(tree)] == ["inner"] == [e.text for e in etree.XPath('.//*[contains(@class, "footer")]')(tree)]


@pytest.mark.parametrize(
    "xpath",
    [
        ".//header",
        "(.//article)[1]",
        ".//cite|.//quote",
        './/*[contains(@class, "")]',  # true even without the attribute in XPath
        './/*[contains(translate(@class, "AB", "a"), "x")]',  # translate that deletes
        './/*[contains(@class, "a") and contains(@id, "b")]',
        '(.//*[starts-with(@class, "main")])[2]',
        '(.//*[(self::div)][starts-with(@class, "main")])[1]|(.//main)[1]',
    ],
)
def test_expressions_of_another_shape_stay_xpaths(xpath):
    assert xpath_selectors.compile_selector(xpath) is None


def test_the_c_lookup_gives_every_element_lxml_htmls_class():
    from trafilatura.utils import HTML_PARSER

    pages = bundled_html()[::4] + ["<form><input><select><option>x</select><textarea>t</textarea><label>l</label></form>"]
    fast = lxml_html.HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8", remove_comments=True, remove_pis=True)
    fast.set_element_class_lookup(sel.c_class_lookup())
    kinds = set()
    for page in pages:
        stock_tree = lxml_html.fromstring(page.encode(), parser=HTML_PARSER)
        fast_tree = lxml_html.fromstring(page.encode(), parser=fast)
        stock = [type(e) for e in stock_tree.iter()]
        assert stock == [type(e) for e in fast_tree.iter()]
        kinds.update(stock)
    assert {lxml_html.HtmlElement, lxml_html.InputElement, lxml_html.FormElement, lxml_html.TextareaElement} <= kinds


def test_stop_lists_are_remembered_by_identity_with_justexts_answer():
    import justext.core
    from trafilatura.external import jt_stoplist_init

    every_language = jt_stoplist_init()
    define = sel.define_stoplist_by_identity(justext.core.define_stoplist)
    assert define(every_language) == justext.core.define_stoplist(every_language)
    assert define(every_language) is define(every_language)
    other = ("The", "AND", "of")
    assert define(other) == frozenset({"the", "and", "of"})
    equal_but_another = tuple(list(other))
    assert define(equal_but_another) == define(other)


def test_the_replaced_functions_give_stock_answers_at_every_call_on_the_bundled_pages(monkeypatch):
    """Stock trafilatura over every bundled page; at each call of a function in ``FUNCTIONS`` the
    replacement gets the same input (a copy of the tree, for readability) and must give the same
    answer (the same tree, serialized)."""
    from copy import deepcopy

    from datatrove.pipeline.extractors.trafilatura import Trafilatura
    from trafilatura import htmlprocessing, main_extractor, readability_lxml, utils

    stock_links, fast_links = main_extractor.delete_by_link_density, sel.links_first(htmlprocessing)
    stock_remove = utils.remove_control_characters
    fast_remove = sel.printable_first(stock_remove)
    stock_unlikely = readability_lxml.Document.remove_unlikely_candidates
    fast_unlikely = sel.remembered_unlikely_candidates(readability_lxml)
    calls = {"strings": 0, "trees": 0, "dropped": 0, "link_tests": 0, "link_deletions": 0}

    def checked_links(subtree, tagname, backtracking=False, favor_precision=False):
        root = subtree.getroottree()  # the whole tree: deleting ``subtree`` itself changes its parent
        twin_root = deepcopy(root)
        twin = twin_root.xpath(root.getpath(subtree))[0]
        before = sum(1 for _ in root.iter())
        fast_links(twin, tagname, backtracking, favor_precision)
        result = stock_links(subtree, tagname, backtracking, favor_precision)
        assert etree.tostring(twin_root) == etree.tostring(root)
        calls["link_tests"] += 1
        calls["link_deletions"] += before - sum(1 for _ in root.iter())
        return result

    def checked_remove(string):
        expected = stock_remove(string)
        assert fast_remove(string) == expected, repr(string[:80])
        calls["strings"] += 1
        return expected

    def checked_unlikely(self):
        copy = readability_lxml.Document(deepcopy(self.doc))
        before = sum(1 for _ in self.doc.iter())
        fast_unlikely(copy)
        stock_unlikely(self)
        assert etree.tostring(copy.doc) == etree.tostring(self.doc)
        calls["trees"] += 1
        calls["dropped"] += before - sum(1 for _ in self.doc.iter())

    monkeypatch.setattr(utils, "remove_control_characters", checked_remove)
    monkeypatch.setattr(readability_lxml.Document, "remove_unlikely_candidates", checked_unlikely)
    monkeypatch.setattr(main_extractor, "delete_by_link_density", checked_links)
    utils.line_processing.cache_clear()  # its cached lines would skip the calls
    extract = Trafilatura(favour_precision=True, timeout=60, deduplicate=False).extract
    for page in bundled_html():
        extract(page)
    edge = ["", "\t", "a\tb", "x\x00y", "\x7f", "\u2028", "\u00a0nbsp", "zero\u200bwidth", "\ud800", "\U0001f600", "é\r"]
    for string in edge:
        assert fast_remove(string) == stock_remove(string), repr(string)
    assert calls["strings"] > 10_000 and calls["trees"] > 500 and calls["dropped"] > 100, calls
    assert calls["link_tests"] > 2_000 and calls["link_deletions"] > 100, calls


def test_one_walk_selects_what_each_selector_selects_on_the_bundled_pages():
    from trafilatura import xpaths
    from trafilatura.utils import load_html

    selectors = tuple(
        compiled for name in sel.PRUNED_TOGETHER for e in getattr(xpaths, name)
        if isinstance(e, etree.XPath) and (compiled := xpath_selectors.compile_selector(e.path)) is not None and compiled.which == "all"
    )
    assert len(selectors) == 6
    selected = 0
    for page in bundled_html()[::3]:
        tree = load_html(page)
        if tree is None:
            continue
        for context in (tree, tree.find(".//body")):
            if context is None:
                continue
            together = xpath_selectors.select_each(selectors, context)
            for selector, elements in zip(selectors, together):
                assert _same(elements, selector(context)), selector
                selected += len(elements)
    assert selected > 1_000
    with pytest.raises(ValueError):
        xpath_selectors.select_each((xpath_selectors.compile_selector("(.//*[@id])[1]"),), tree)


def test_pruning_in_one_walk_prunes_as_trafilatura_at_every_call(monkeypatch):
    """With the selectors installed, each call of main_extractor's ``prune_unwanted_sections`` is
    repeated by ``in_one_walk`` on a copy of the whole tree: the trees after, and the trees
    returned (the one given, or the backup when pruning removed too much), must be equal."""
    from copy import deepcopy

    from datatrove.pipeline.extractors.trafilatura import Trafilatura
    from trafilatura import main_extractor, xpaths

    sel.install()
    stock = next(original for owner, name, original in sel._installed["functions"] if name == "prune_unwanted_sections" and owner is main_extractor)
    one_walk = sel.in_one_walk(stock, xpaths)
    calls = {"calls": 0, "same_tree": 0, "removed": 0}

    def checked(tree, potential_tags, options):
        root = tree.getroottree()
        twin_root = deepcopy(root)
        twin = twin_root.xpath(root.getpath(tree))[0]
        before = sum(1 for _ in root.iter())
        got = one_walk(twin, set(potential_tags), options)
        expected = stock(tree, potential_tags, options)
        assert etree.tostring(twin_root) == etree.tostring(root)
        assert etree.tostring(got) == etree.tostring(expected)
        assert (got is twin) == (expected is tree)
        calls["calls"] += 1
        calls["same_tree"] += expected is tree
        calls["removed"] += before - sum(1 for _ in root.iter())
        return expected

    monkeypatch.setattr(main_extractor, "prune_unwanted_sections", checked)
    extract = Trafilatura(favour_precision=True, timeout=60, deduplicate=False).extract
    for page in bundled_html():
        extract(page)
    assert calls["calls"] > 800 and calls["removed"] > 10_000, calls
    # the backup was taken on some pages, not all
    assert 5 <= calls["calls"] - calls["same_tree"] < calls["calls"] // 2, calls


def test_install_replaces_in_place_and_uninstall_restores():
    import justext.core
    from trafilatura import main_extractor, utils, xpaths
    from trafilatura.readability_lxml import Document
    from trafilatura.utils import load_html

    stock_define = justext.core.define_stoplist
    stock_remove, stock_unlikely = utils.remove_control_characters, Document.remove_unlikely_candidates
    before = list(xpaths.OVERALL_DISCARD_XPATH)
    assert sel.install() >= 12
    assert sel.install() == 0
    # main_extractor imported the list object itself: it sees the selectors
    assert all(isinstance(e, xpath_selectors.AttributeSelector) for e in main_extractor.OVERALL_DISCARD_XPATH)
    assert type(load_html("<html><body><input></body></html>").find(".//input")) is lxml_html.InputElement
    assert isinstance(justext.core.define_stoplist, sel.define_stoplist_by_identity)
    assert utils.remove_control_characters is not stock_remove and Document.remove_unlikely_candidates is not stock_unlikely
    sel.uninstall()
    assert xpaths.OVERALL_DISCARD_XPATH == before
    assert justext.core.define_stoplist is stock_define
    assert utils.remove_control_characters is stock_remove and Document.remove_unlikely_candidates is stock_unlikely


def test_the_extract_stage_gives_stock_trafilatura_text():
    from datatrove.data import Document
    from datatrove.pipeline.extractors.trafilatura import Trafilatura

    from curation.extraction.extract import TextExtraction

    pages = bundled_html()[::15]
    stock = Trafilatura(favour_precision=True, timeout=5, deduplicate=False).extract
    expected = [stock(p) for p in pages]
    stage = TextExtraction(fast_trafilatura=True)
    try:
        got = []
        for p in pages:
            doc = Document(text=p, id="x")
            got.append(doc.text if stage.apply(doc) is True else None)
    finally:
        stage.close()
    assert [e or None for e in expected] == got
    assert sum(g is not None for g in got) > len(pages) // 2
    from trafilatura import xpaths

    assert isinstance(xpaths.OVERALL_DISCARD_XPATH[0], etree.XPath)  # installed in the child only
