"""The engine: the run loop, executors (in-process and Ray) and progress reporting.

The only package that imports Ray. It wires the stages of ``extract``, ``model``,
``timeline`` and ``output`` together; the stages themselves know nothing of Ray.
"""
