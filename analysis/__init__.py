"""``python -m analysis``: the lab's analysis CLI (``coldstart.analyze``) under the name the ancestor used."""
