"""Does the curation pay? Curation variants compared by the models they train (issue 19).

A consumer of the curation driver and of the trainer, as the service is: it runs
``pipelines.web_corpus`` once per variant and ``python -m trainer`` (a command) once per seed.
Nothing is imported here, so ``python -m ablation.training`` loads no curation code.
"""
