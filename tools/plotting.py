"""Matplotlib without a screen, and one way to save a figure."""
import os


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed; the tools write files). An MPLBACKEND
    of the shell (a notebook's, or one this matplotlib lacks) would stop its import: it is replaced."""
    os.environ['MPLBACKEND'] = 'Agg'
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def figure_path(out, option='--out', example='figure.png'):
    """Check, before any work, that a figure can be written at `out`: a file format matplotlib
    writes (from the extension, which a figure's name must have: without one it reads as a run's
    name) and a writable place (tools.cli.output_path). Returns `out`; raises UsageError naming
    `option`."""
    from .cli import UsageError, output_path
    ext = os.path.splitext(out)[1][1:].lower()
    if not ext and out and not out.endswith(os.sep) and not os.path.isdir(out):    # (a folder: output_path says so)
        raise UsageError('%s %s has no file extension, so it reads as a run\'s or a folder\'s name, not a figure\'s: '
                         'give one, e.g. %s %s.png' % (option, out, option, out))
    if ext:
        pyplot()
        from matplotlib.backend_bases import FigureCanvasBase
        supported = FigureCanvasBase.get_supported_filetypes()
        if ext not in supported:
            raise UsageError('%s %s: matplotlib cannot write .%s files; use one of .%s'
                             % (option, out, ext, ', .'.join(sorted(supported))))
    return output_path(out, option, example)


def save(fig, out, title=''):
    """Add the title, lay out, write the figure (format from `out`'s extension, PNG by default) and
    free it. The file is written whole or not at all: under a temporary name, then renamed, so a
    failure (a full disk, a read-only folder) leaves an earlier `out` as it was."""
    from .cli import write_atomic
    plt = pyplot()
    try:
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fmt = os.path.splitext(out)[1][1:].lower() or 'png'
        write_atomic(out, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))
    finally:
        plt.close(fig)
