"""Offline, driver-side analysis across sessions: per-session summaries, per-subject
trends against the subject's own baseline, and the HTML report. Reads results only
through ``fervid.output``'s public API; no torch, no Ray.
"""
