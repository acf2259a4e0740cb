"""The emotion model: the only package that imports torch.

File format (safetensors + JSON metadata), network construction, preprocessing and
the one inference function used by the pipeline's classifier actor, ``fervid evaluate``
and training evaluation. ``classes`` (and header reading) stay torch-free so workers
and the driver can read a model's spec without loading torch.
"""
