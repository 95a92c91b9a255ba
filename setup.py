"""Install the NST Gluon toolkit's packages.

    pip install -c constraints.txt -e '.[cpu]'     # CPU (default, CI)
    pip install -c constraints.txt -e '.[gpu]'     # CUDA 11.2: mxnet-cu112 instead of mxnet, + CUDA libraries
    pip install -c constraints.txt -e '.[gpu-cu117]'   # the same with mxnet-cu117

MXNet comes through an extra because a CPU and a GPU build must never be
installed side by side. constraints.txt pins numpy 1.23.5 on Python <= 3.11
and 1.26.4 on 3.12 (mxnet 1.9.1 needs core/compat.py with numpy >= 1.24, and
setuptools for distutils on 3.12) and caps the packages that would pull numpy 2.
"""
from setuptools import setup

# The CUDA libraries libmxnet.so of mxnet-cu112/-cu117 links but does not bundle (versions in
# constraints.txt); core/gpu_libs.py loads them from site-packages/nvidia/*/lib before mxnet.
CUDA11_LIBS = ['nvidia-cuda-runtime-cu11', 'nvidia-cublas-cu11', 'nvidia-cufft-cu11', 'nvidia-cusolver-cu11',
               'nvidia-curand-cu11', 'nvidia-cuda-nvrtc-cu11', 'nvidia-nvtx-cu11', 'nvidia-cudnn-cu11<9',
               'nvidia-nccl-cu11']

setup(
    name='nst-gluon',
    version='0.1.0',
    description=('Knowledge distillation in MXNet Gluon: NST (Neuron Selectivity Transfer) and 18 more methods '
                 '(KD, FitNet, AT, FSP, OFD, SP, RKD, PKT, KDSVD, DKD, DIST, CC, VID, ReviewKD, AB, FT, CRD, CWD) for '
                 'classification, DeepLab segmentation, and Faster R-CNN detection from distilled backbones'),
    license='Apache-2.0',
    python_requires='>=3.10,<3.13',     # init.sh says why
    packages=['symbols', 'symbols.transfer', 'config', 'data', 'core', 'tasks', 'tasks.classification',
              'tasks.segmentation',
              'tasks.detection', 'tools', 'benchmarks'],
    package_data={'config': ['presets/*.yaml', 'presets/detection/*.yaml', 'presets/segmentation/*.yaml']},
    py_modules=['train'],
    install_requires=[
        'numpy==1.23.5; python_version < "3.12"',
        'numpy==1.26.4; python_version >= "3.12"',
        'setuptools; python_version >= "3.12"',     # distutils, which mxnet imports
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
        'gpu': ['mxnet-cu112==1.9.1'] + CUDA11_LIBS,         # NST_GPU=1 bash init.sh
        'gpu-cu117': ['mxnet-cu117==1.9.1', 'nvidia-cusparse-cu11'] + CUDA11_LIBS,   # NST_GPU=cu117 bash init.sh
        'onnx': ['onnx==1.17.0', 'onnxruntime==1.18.1'],                    # tools.export --onnx
        'tensorboard': ['tensorboardX==2.6.4', 'tensorboard==2.21.0'],     # tensorboard=true; the viewer
        'test': ['pytest>=7', 'onnx==1.17.0', 'onnxruntime==1.18.1', 'tensorboardX==2.6.4', 'tensorboard==2.21.0'],
    },
)
