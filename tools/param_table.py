"""Markdown table of every network's measured parameter count.

    python -m tools.param_table

Counts every learnable parameter except BatchNorm running statistics
(`symbols.count_parameters`), at the network's native input size.
"""
import sys

import symbols
from tools import cli

ROWS = [('inception_bn', 1000), ('inception_bn_small', 10), ('inception_bn_small', 100),
        ('preact_resnet18', 1000), ('preact_resnet34', 1000), ('preact_resnet50', 1000),
        ('preact_resnet101', 1000), ('preact_resnet152', 1000), ('preact_resnet164', 10),
        ('preact_resnet1001', 10), ('resnet50_nst', 1000), ('cifar_resnet20', 10), ('cifar_resnet32', 10),
        ('cifar_resnet44', 10), ('cifar_resnet56', 10), ('cifar_resnet110', 10), ('wrn16_2', 100),
        ('wrn16_4', 100), ('wrn28_2', 10), ('wrn28_2', 100), ('wrn28_4', 100), ('pyramidnet110', 100),
        ('pyramidnet200', 100), ('resnet50', 1000), ('resnet152', 1000), ('mobilenet1.0', 1000)]


@cli.command
def main(argv=None):
    """Print the table (it takes no arguments; any is one error line, exit status 2)."""
    cli.parser('param_table', __doc__).parse_args(argv)
    print('| network | classes | input | parameters |')
    print('|---|---|---|---|')
    for name, classes in ROWS:
        size = symbols.input_size(name)
        n = symbols.count_parameters(symbols.get_network(name, classes, 3), 3, size)
        print('| `%s` | %d | 3x%dx%d | %s |' % (name, classes, size, size, '{:,}'.format(n)))


if __name__ == '__main__':
    sys.exit(main())
