"""Autograde: collect submissions, prepare them, run them in the sandbox, score each cell, record the results."""
