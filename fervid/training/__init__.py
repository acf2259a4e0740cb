"""Offline training and evaluation of the emotion model (torch; never on the pipeline's
hot path). Recipes are TOML files under ``pipelines/``; data comes from a path.
"""
