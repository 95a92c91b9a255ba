#!/usr/bin/env bash
# Idempotent set-up: virtual environment, the project and its pinned stack,
# Fashion-MNIST packed into RecordIO, and the default teacher.
#
#   bash init.sh            everything the default `python train.py` needs
#   bash init.sh --deps     only the environment and packages (what the tests need,
#                           Horovod included)
#
# Environment: NST_GPU=1 installs mxnet-cu112 instead of the CPU mxnet (NST_GPU=cu117:
# mxnet-cu117), with the CUDA libraries from PyPI (GPUs of compute capability 5.0 to 8.9);
# NST_HOROVOD=1/0 builds Horovod or not (default: with --deps only);
# PYTHON picks the interpreter for a new .venv (default python3.11 or python3;
# Python 3.10, 3.11 or 3.12); NST_VENV names the environment (default .venv).
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
DEPS_ONLY=0
for arg in "$@"; do
  case "$arg" in
    --deps) DEPS_ONLY=1 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "init.sh: unknown option $arg: the options are --deps (only the environment and packages) and --help" >&2
       exit 2 ;;
  esac
done

say() { printf '\n==> %s\n' "$*"; }

# 1. virtual environment -------------------------------------------------------
# A pyenv shim (python3.12) runs only the versions pyenv has selected: ask
# pyenv for the interpreter of any installed version that has the command.
real_python() {
  if ! "$1" -c '' >/dev/null 2>&1 && command -v pyenv >/dev/null; then
    local v; v=$(pyenv whence "$1" 2>/dev/null | tail -n 1)
    [[ -n "$v" ]] && PYENV_VERSION=$v pyenv which "$1" 2>/dev/null && return
  fi
  echo "$1"
}
VENV=${NST_VENV:-.venv}
[[ "$VENV" == /* ]] || VENV="$ROOT/$VENV"
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  PY="$VIRTUAL_ENV/bin/python"
  if [[ ! -x "$PY" ]]; then
    echo "init.sh: VIRTUAL_ENV=$VIRTUAL_ENV names no virtual environment (a stale variable of a shell that had one active): run 'deactivate' or 'unset VIRTUAL_ENV', then bash init.sh" >&2
    exit 2
  fi
elif [[ -x "$VENV/bin/python" ]]; then
  PY="$VENV/bin/python"
  if [[ -n "${PYTHON:-}" ]]; then
    HAVE=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?")
    WANT=$("$(real_python "$PYTHON")" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo "?")
    if [[ "$WANT" == "?" ]]; then
      echo "init.sh: PYTHON=$PYTHON is not a working Python (not found, or it does not run); $VENV exists with Python $HAVE and is used without PYTHON: run bash init.sh, or name an installed interpreter (e.g. PYTHON=python3.11)" >&2
      exit 2
    fi
    if [[ "$HAVE" != "$WANT" ]]; then
      echo "init.sh: PYTHON=$PYTHON (Python $WANT) is not used: $VENV exists with Python $HAVE. For a new environment with it run NST_VENV=.venv$(echo "$WANT" | tr -d .) PYTHON=$PYTHON bash init.sh (or remove $VENV first)" >&2
      exit 2
    fi
  fi
else PY=$(real_python "${PYTHON:-$(command -v python3.11 || command -v python3)}")
fi
# mxnet 1.9.1 needs numpy 1.x (core/compat.py), which has no wheels for 3.13+
PYV=$("$PY" -c 'import sys; print("Python %d.%d" % sys.version_info[:2])' 2>/dev/null) || PYV="not a working Python"
case "$PYV" in
  "Python 3.10"|"Python 3.11"|"Python 3.12") ;;
  *) echo "init.sh: $PY is $PYV; this project works with Python 3.10, 3.11 and 3.12 only (mxnet 1.9.1 needs numpy 1.x, which has no wheels for 3.13+; before 3.10 is untested): run PYTHON=python3.11 bash init.sh (get one with pyenv install 3.11, or apt-get install python3.11)" >&2
     exit 1 ;;
esac
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  say "using the active virtual environment $VIRTUAL_ENV"
elif [[ ! -x "$VENV/bin/python" ]]; then
  say "creating $VENV with $PY ($PYV)"
  "$PY" -m venv "$VENV"
  PY="$VENV/bin/python"
fi

# 2. packages (skipped when setup.py and constraints.txt are unchanged) --------
# NST_GPU=1 (or cu112): mxnet-cu112; NST_GPU=cu117: mxnet-cu117; both with the CUDA 11 libraries
# from PyPI's nvidia-*-cu11 wheels, which core/gpu_libs.py loads before mxnet (no CUDA toolkit,
# no LD_LIBRARY_PATH); the NVIDIA driver comes from the system. python -m tools.doctor checks it all.
case "${NST_GPU:-0}" in
  0|"") EXTRA=cpu; MXNET=mxnet ;;
  1|cu112) EXTRA=gpu; MXNET=mxnet-cu112 ;;
  cu117) EXTRA=gpu-cu117; MXNET=mxnet-cu117 ;;
  *) echo "init.sh: NST_GPU=$NST_GPU: use NST_GPU=1 (mxnet-cu112), NST_GPU=cu117 (mxnet-cu117) or leave it unset (CPU)" >&2
     exit 1 ;;
esac
STAMP="$(dirname "$PY")/../.nst-installed"
WANT="$EXTRA $(cat setup.py constraints.txt | sha256sum | cut -c1-16)"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$WANT" ]]; then
  say "installing the project and its pinned dependencies ($EXTRA)"
  "$PY" -m pip install --quiet --upgrade pip
  # mxnet, mxnet-cu112 and mxnet-cu117 share the package directory: never leave two installed
  for OTHER in mxnet mxnet-cu112 mxnet-cu117; do
    [[ "$OTHER" == "$MXNET" ]] || "$PY" -m pip uninstall --quiet -y "$OTHER" >/dev/null 2>&1 || true
  done
  "$PY" -m pip install --quiet -c constraints.txt -e ".[$EXTRA,test]"
  if [[ "$EXTRA" == cpu ]]; then
    "$PY" -c "import core.compat, mxnet, numpy, gluoncv, cv2, yaml; print('mxnet', mxnet.__version__, 'numpy', numpy.__version__)"
  else
    # a GPU build imports only where the NVIDIA driver is (not in e.g. a docker build): report, don't stop
    "$PY" -c "import numpy, cv2, yaml"
    "$PY" -m tools.doctor || echo "init.sh: $MXNET and its CUDA libraries are installed, but cannot train on a GPU here yet (see above)"
  fi
  echo "$WANT" > "$STAMP"
else
  say "packages already installed"
fi
# mxnet imported by programs outside the project (horovodrun, mxnet's tools, Horovod's
# build) gets core/compat.py first too: a .pth line runs at every start of this Python.
# It then forgets the name `core` (the hook it installed stays), so that a program run
# elsewhere with its own `core` package, or another checkout of this project, gets its own.
echo "import sys, core.compat; [sys.modules.pop(n) for n in list(sys.modules) if n == 'core' or n.startswith('core.')]" > "$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/nst_gluon_compat.pth"
# 3. Horovod (optional) -------------------------------------------------------------
# horovod.mxnet is built from source against this MXNet, with Gloo (no MPI),
# for CPU tensors (GPU users add HOROVOD_GPU_OPERATIONS=NCCL). NST_HOROVOD=1
# builds it, NST_HOROVOD=0 skips it; by default `--deps` (the environment of
# the tests, which exercise it) builds it and the full set-up does not.
# A failed build is reported and the Horovod tests are then skipped.
if [[ "${NST_HOROVOD:-$DEPS_ONLY}" == 1 ]]; then
  HVD_STAMP="$(dirname "$PY")/../.nst-horovod"
  HVD_PIN=$(grep '^horovod==' constraints.txt)
  if [[ -f "$HVD_STAMP" && "$(cat "$HVD_STAMP")" == "$HVD_PIN" ]]; then
    say "Horovod already built ($HVD_PIN)"
  elif ! command -v g++ >/dev/null; then
    say "Horovod skipped: it is built from source and needs a C++ compiler (g++)"
  else
    say "building Horovod ($HVD_PIN, MXNet + Gloo; a few minutes)"
    HVD_LOG="$(dirname "$PY")/../horovod-build.log"
    "$PY" -m pip install --quiet -c constraints.txt wheel cffi psutil packaging >"$HVD_LOG" 2>&1 || true
    command -v cmake >/dev/null || "$PY" -m pip install --quiet cmake >>"$HVD_LOG" 2>&1 || true
    if PATH="$(dirname "$PY"):$PATH" HOROVOD_WITH_MXNET=1 HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 \
       HOROVOD_WITHOUT_MPI=1 HOROVOD_WITH_GLOO=1 HOROVOD_CPU_OPERATIONS=gloo MAKEFLAGS="-j$(nproc)" \
       "$PY" -m pip install --no-build-isolation -c constraints.txt "$HVD_PIN" >>"$HVD_LOG" 2>&1 &&
       "$PY" -c "import core.compat, horovod.mxnet" 2>>"$HVD_LOG"; then
      echo "$HVD_PIN" > "$HVD_STAMP"
    else
      echo "Horovod could not be built (log: $HVD_LOG); kv_store=horovod and its tests are unavailable"
    fi
  fi
fi
[[ $DEPS_ONLY == 1 ]] && exit 0

# 4. Fashion-MNIST -> RecordIO ---------------------------------------------------
FM_DEB=/usr/share/datasets/fashion-mnist
if "$PY" -c "import sys; from data.fashion_mnist import is_packed; sys.exit(0 if is_packed('datasets/fashion_mnist') else 1)"; then
  say "Fashion-MNIST packs already in datasets/fashion_mnist"
else
  if [[ ! -f $FM_DEB/train-images-idx3-ubyte.gz ]] && command -v apt-get >/dev/null; then
    SUDO=""
    [[ $(id -u) != 0 ]] && command -v sudo >/dev/null && SUDO="sudo -n"
    say "installing Debian's dataset-fashion-mnist"
    { $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 ||
      { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; }; } ||
      echo "apt-get could not install dataset-fashion-mnist; trying MXNet's download instead"
  fi
  say "packing Fashion-MNIST into RecordIO (datasets/fashion_mnist)"
  "$PY" -m data.fashion_mnist --out datasets/fashion_mnist
fi

# 5. the default teacher ---------------------------------------------------------
TEACHER=model/fmnist_resnet14_teacher
if [[ -f $TEACHER-best.json && -f $TEACHER-0002.json ]]; then
  say "default teacher already trained ($TEACHER)"
else
  say "training the default teacher (CIFAR-style ResNet-14 on Fashion-MNIST, 2 epochs)"
  RESUME=()
  if ls $TEACHER-[0-9][0-9][0-9][0-9].json >/dev/null 2>&1; then RESUME=(retrain=true model_load_epoch=-1); fi
  "$PY" train.py --cfg config/presets/fashion_mnist_teacher.yaml "${RESUME[@]}"
fi
say "ready: run  $PY train.py"
