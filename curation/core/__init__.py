"""The document, the stage contract and its accounting: what every block of curation shares."""
