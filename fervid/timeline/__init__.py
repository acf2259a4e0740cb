"""Per-face timelines: track faces across sampled frames, smooth their probabilities
over time and cut emotion segments. Plain numpy on one video's rows; runs wherever
the engine finishes a video (the driver today). No torch, no Ray.
"""
