"""A Custom target with a syntax error."""

def broken(:
    pass
