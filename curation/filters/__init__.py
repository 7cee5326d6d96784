"""Stages that keep or reject a document one at a time: language, quality heuristics, classifiers, URL filter; PII redaction."""
