"""The baseline zoo of the paper's experiments (Tables 2 and 3); see docs/baselines.md."""
