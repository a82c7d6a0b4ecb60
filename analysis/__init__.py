"""``python -m analysis``: the lab's analysis CLI (``coldstart.analysis.cli``) under the name the ancestor used."""
