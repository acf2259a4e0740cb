"""The emotion classes, in fervid's canonical order (kept free of heavy imports)."""

#: The 7 FER-2013 classes. Model files carry their own order; tables follow the model.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
