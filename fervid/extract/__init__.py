"""Extraction: what runs in the CPU workers.

discover -> decode/sample -> detect -> crop. Plain functions over numpy arrays and
OpenCV; no torch and no Ray (the engine wraps these in tasks). May import
``fervid.records``, ``fervid.settings``, ``fervid.errors`` and ``fervid.model.classes``
/ the torch-free model spec only.
"""
