"""A Custom target whose import fails: the error must be reported at the spec, not as a traceback."""

raise RuntimeError("boom: this module cannot be imported")
