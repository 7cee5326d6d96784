"""What every job's configuration shares: the path markers and strict base of its typed sections
(``configs.fields``) and reading it from YAML with ``section.field=value`` overrides
(``configs.overrides``).

A neutral package beside the YAML files it reads: curation, tokenizer, pipelines and the trainer
all import it, and it imports none of them (DESIGN: the trainer must not import the curation side,
and the curation blocks own their parameters).
"""
