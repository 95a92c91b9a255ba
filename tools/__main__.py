"""`python -m tools`: the commands, one line each (from each module's docstring, read without
importing it)."""
import ast
import os
import sys

from tools import LIBRARY


def commands():
    """[(name, first line of its docstring)] of the modules of tools/ that are commands."""
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for name in sorted(os.listdir(here)):
        module = name[:-3]
        if not name.endswith('.py') or module.startswith('_') or module in LIBRARY:
            continue
        with open(os.path.join(here, name)) as f:
            doc = ast.get_docstring(ast.parse(f.read())) or ''
        out.append((module, doc.strip().splitlines()[0] if doc.strip() else ''))
    return out


def main():
    rows = commands()
    width = max(len(n) for n, _ in rows)
    print('python -m tools.NAME --help for each; the commands:')
    for name, line in rows:
        print('  %-*s  %s' % (width, name, line))
    return 0


if __name__ == '__main__':
    from tools.cli import output_written
    sys.exit(output_written(main))
