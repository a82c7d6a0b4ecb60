"""``python -m analysis``: the lab's analysis CLI (``coldstart.analysis.analyze``) under the name the ancestor used."""
