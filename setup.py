"""Install the NST Gluon toolkit's packages.

    pip install -c constraints.txt -e '.[cpu]'     # CPU (default, CI)
    pip install -c constraints.txt -e '.[gpu]'     # CUDA 11.2: mxnet-cu112 instead of mxnet

MXNet comes through an extra because a CPU and a GPU build must never be
installed side by side. constraints.txt pins numpy 1.23.5 (mxnet 1.9.1 does
not import with numpy >= 1.24) and the packages that would pull a newer one.
"""
from setuptools import setup

setup(
    name='nst-gluon',
    version='0.1.0',
    description='Feature-map knowledge distillation in MXNet Gluon: NST, KD, FitNet, AT, FSP, OFD',
    python_requires='>=3.8',
    packages=['symbols', 'config', 'data', 'core', 'tools', 'benchmarks'],
    package_data={'config': ['presets/*.yaml']},
    py_modules=['train'],
    install_requires=[
        'numpy==1.23.5',
        'gluoncv==0.10.5.post0',
        'opencv-python-headless<4.12',
        'pyyaml>=5.4',
        'tqdm>=4.60',
        'scipy<1.16',
        'pandas<3',
        'matplotlib<3.11',
        'scikit-learn>=1.2,<1.8',
    ],
    extras_require={
        'cpu': ['mxnet==1.9.1'],
        'gpu': ['mxnet-cu112==1.9.1'],
        'test': ['pytest>=7'],
    },
)
