"""Shared model blocks. A paper's model.py builds from these and states only its delta."""
