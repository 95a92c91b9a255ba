"""Markdown table cells for the tables the tools write (results, detection reports, reference pages)."""


def cell(text):
    """`text` as one markdown table cell: '|' escaped, line breaks (and runs of white space) as one space
    (a cell holds one line: ``--student 'R8 | 2k'`` stays one cell)."""
    return ' '.join(str(text).split()).replace('|', '\\|')
