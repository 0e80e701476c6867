#!/usr/bin/env bash
# The real-GPU check, in one run on a machine with an NVIDIA GPU (no network needed).
#
#   OUT=/some/dir benchmarks/gpu_check.sh [STEP ...]
#
# Steps (default: all, in this order): machine install tier torch demo numba bench suite.
# Every log and every raw receipt goes to $OUT (default ./gpu-check-out):
#   gpu_check.log      everything printed, step by step
#   real_gpu.xml       JUnit report of the real-GPU test tier (pytest -m real_gpu)
#   receipts.tar       each receipt exactly as stored in refs/notes/gpu-proof
#   receipts.txt       the same receipts, readable, one after another
#   bench.txt          benchmarks/bench_gpu_probes.py
# Installs nothing system-wide: Python wheels carried in .whl/ go to /tmp/gp-site, and
# git / ssh-keygen, when missing, come from Debian packages carried in .debs/,
# unpacked under /tmp.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/gpu-check-out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
STEPS=${*:-machine install tier torch demo numba bench suite}
WORK=$(mktemp -d /tmp/gpu-check.XXXXXX)
RECEIPTS=$WORK/receipts
mkdir -p "$RECEIPTS"
export PYTHONUNBUFFERED=1 GIT_AUTHOR_NAME="GPU check" GIT_COMMITTER_NAME="GPU check" \
       GIT_AUTHOR_EMAIL=gpu-check@example.com GIT_COMMITTER_EMAIL=gpu-check@example.com
step() { echo; echo "=== $(date -u +%H:%M:%S) $*"; }
want() { [[ " $STEPS " == *" $1 "* ]]; }
PY=python3

keep_receipt() {  # keep_receipt NAME REPO: the HEAD receipt, raw and readable
    git -C "$2" notes --ref=gpu-proof show HEAD > "$RECEIPTS/$1.receipt" 2>/dev/null || return 0
    { echo "==== $1 (commit $(git -C "$2" rev-parse HEAD), $(date -u +%FT%TZ))"; cat "$RECEIPTS/$1.receipt"; echo; } \
        >> "$OUT/receipts.txt"
    tar -C "$RECEIPTS" -cf "$OUT/receipts.tar" .
}

new_project() {  # new_project DIR: a repository with a signing key and allowed_signers
    mkdir -p "$1/tests" && cd "$1" && git init -q -b main . && git config user.email gpu-check@example.com
    ssh-keygen -q -t ed25519 -N "" -C gpu-check -f "$1/.key" </dev/null
    git config user.signingKey "$1/.key"
    mkdir -p .gpu-proof
    echo "gpu-check@example.com namespaces=\"gpu-proof\" $(cat "$1/.key.pub")" > .gpu-proof/allowed_signers
    printf '[tool.gpu_proof]\nallowed_signers = ".gpu-proof/allowed_signers"\nfingerprint_paths = ["tests"]\n' \
        > pyproject.toml
    printf '.key\n.key.pub\n__pycache__/\n.pytest_cache/\n' > .gitignore
}

expect() {  # expect CODE COMMAND...: run, and say whether the exit status was the one expected
    local want=$1; shift
    "$@"; local got=$?
    if [[ $got == "$want" ]]; then echo "CHECK OK: exit $got as expected: $*"; else echo "CHECK FAILED: exit $got, expected $want: $*"; fi
}

if want machine; then
    step machine
    nvidia-smi
    nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,compute_cap,pci.bus_id,mig.mode.current --format=csv
    $PY -c 'import sys; print(sys.version)'
    $PY -m pip list 2>/dev/null | grep -iE '^(torch|cupy|numba|numba-cuda|nvidia-ml-py|nvidia-cuda-cupti|pytest|pytest-xdist|typer|numpy|setuptools) '
    timeout 20 find /usr /opt -name 'libcupti.so*' 2>/dev/null | head -20
    command -v git ssh-keygen dpkg || true
fi

SITE=/tmp/gp-site
export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH} PATH=$SITE/bin:/tmp/gp-bin:$PATH
if want install; then
    step install
    if compgen -G "$ROOT/.whl/*.whl" >/dev/null; then
        $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target $SITE "$ROOT"/.whl/*.whl || exit 1
    fi
    if ! compgen -G "$ROOT/.whl/git_gpu_proof-*.whl" >/dev/null; then  # else built here: pip wheel -w .whl .
        $PY -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target $SITE "$ROOT" || exit 1
    fi
    if ! command -v git >/dev/null || ! command -v ssh-keygen >/dev/null; then
        echo "git or ssh-keygen missing: unpacking the carried Debian packages under /tmp"
        mkdir -p /tmp/gp-debs /tmp/gp-bin /tmp/gp-lib
        for deb in "$ROOT"/.debs/*.deb; do dpkg -x "$deb" /tmp/gp-debs; done
        for lib in libpcre2-8.so.0 libz.so.1 libselinux.so.1 libcrypto.so.3; do
            ldconfig -p | grep -q "$lib" || cp -L /tmp/gp-debs/{lib,usr/lib}/x86_64-linux-gnu/$lib /tmp/gp-lib/ 2>/dev/null
        done
        for tool in git ssh-keygen; do
            command -v $tool >/dev/null && continue
            printf '#!/bin/sh\nexport GIT_EXEC_PATH=/tmp/gp-debs/usr/lib/git-core LD_LIBRARY_PATH=/tmp/gp-lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\nexec /tmp/gp-debs/usr/bin/%s "$@"\n' \
                $tool > /tmp/gp-bin/$tool
            chmod +x /tmp/gp-bin/$tool
        done
    fi
    git --version && ssh-keygen -V 2>&1 | head -1 || ssh -V 2>&1 || true
    git gpu-proof --version || exit 1
fi

if want tier; then
    step "real-GPU tier: pytest -m real_gpu"
    (cd "$ROOT" && timeout 400 $PY -m pytest -m real_gpu tests/gpu/test_real_gpu.py -v -rs -p no:cacheprovider \
        --junitxml="$OUT/real_gpu.xml")
fi

if want torch; then
    step "torch suite through git gpu-proof run --kernels, then verify"
    new_project "$WORK/torch"
    (cd "$ROOT" && $PY -c 'from tests.gpu.test_real_gpu import SUITE; print(SUITE)') > tests/test_real.py
    git add -A && git commit -q -m "torch suite"
    timeout 300 git gpu-proof run --kernels -- -q -p no:cacheprovider
    keep_receipt torch-suite "$WORK/torch"
    git gpu-proof show
    expect 0 git gpu-proof verify
    expect 1 git gpu-proof verify --require-gpu-use
    expect 1 git gpu-proof verify --require-gpu-kernels
    git gpu-proof verify --require-gpu-use --require-gpu-kernels --json
    cd "$ROOT"
fi

if want demo; then
    step "git gpu-proof demo --cuda"
    (cd "$WORK" && timeout 300 git gpu-proof demo --cuda --dir "$WORK/demo")
    keep_receipt demo-cuda "$WORK/demo"
fi

if want numba; then
    step "numba-cuda's own tests through git gpu-proof run --kernels"
    NUMBA_TESTS=$($PY -c 'import numba.cuda.tests.cudapy as t, os; print(os.path.dirname(t.__file__))') || NUMBA_TESTS=
    new_project "$WORK/numba"
    for name in complex_kernel boolean montecarlo freevar slicing idiv mandel alignment globals forall \
                array_methods lang matmul minmax frexp_ldexp iterators reduction transpose laplace powi \
                blackscholes random constmem sync; do
        [[ -n $NUMBA_TESTS && -f $NUMBA_TESTS/test_$name.py ]] && cp "$NUMBA_TESTS/test_$name.py" tests/
    done
    cat > tests/conftest.py <<'EOF'
import numpy as np
import pytest

if not hasattr(np, "row_stack"):  # numba-cuda 0.30 still calls it; NumPy 2.5 removed it
    np.row_stack = np.vstack


@pytest.fixture
def initialize_from_pytest_config():
    # CUDATestCase asks for it; numba-cuda defines it in its repository's conftest, which
    # the wheel does not ship. Its defaults are what these tests need.
    yield


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    for item in items:  # numba-cuda's tests carry no marker: every one is a GPU test here
        item.add_marker(pytest.mark.gpu_proof)
EOF
    ls tests
    git add -A && git commit -q -m "numba-cuda tests"
    timeout 300 git gpu-proof run --kernels -- -q -p no:cacheprovider -n 8
    keep_receipt numba-cuda "$WORK/numba"
    git gpu-proof show | tail -40
    expect 0 git gpu-proof verify
    git gpu-proof verify --require-gpu-use --require-gpu-kernels
    cd "$ROOT"
fi

if want bench; then
    step "benchmarks/bench_gpu_probes.py"
    (cd "$ROOT" && timeout 300 $PY benchmarks/bench_gpu_probes.py --tests 500 | tee "$OUT/bench.txt")
fi

if want suite; then
    step "the whole suite on the GPU machine"
    (cd "$ROOT" && timeout 300 $PY -m pytest -q -n 8 -p no:cacheprovider 2>&1 | tail -15)
fi
step done
