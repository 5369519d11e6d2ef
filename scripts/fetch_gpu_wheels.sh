#!/usr/bin/env bash
# Download the wheels that the GPU device machine's image lacks into the git-ignored .whl/,
# for Python 3.12 on manylinux x86_64 (or pure Python), one version of each.
#
# Which ones: pose3d's install_requires (setup.py) that the image does not hold, wandb left
# out (the GPU run keeps W&B disabled), then every requirement of those wheels that the image
# does not hold either (read from each wheel's METADATA). Versions are the ones installed in
# the Python that runs this script (the project's tested ones), else the newest.
#
#   PYTHON=.venv/bin/python bash scripts/fetch_gpu_wheels.sh
#
# scripts/gpu_run.py installs them on the device machine; see docs/gpu-run.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
cd "$ROOT"
mkdir -p .whl
rm -f .whl/*.whl

"$PYTHON" - <<'EOF'
import ast
import re
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

# The device image's Python packages (.library/device/KINDS.md, read 2026-11-17).
DEVICE_HAS = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs
botorch build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy
coverage cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython
diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools formulaic
frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib
jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator
lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx
ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc
nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand
nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging
pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client propcache protobuf
psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions pytest
pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core
scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools
shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz
torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers
treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
wheel wrapt xarray xxhash yarl zipp
""".split())
NOT_CARRIED = {"wandb"}  # W&B stays disabled on the device
WHL = Path(".whl")
PIP = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
       "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312", "--abi", "abi3",
       "--abi", "none", "--platform", "manylinux_2_28_x86_64", "--platform",
       "manylinux_2_17_x86_64", "--platform", "manylinux2014_x86_64", "--platform", "any",
       "-d", str(WHL)]
# Markers of the device: Linux x86_64, CPython 3.12 (pip's vendored parser evaluates them).
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3",
              "sys_platform": "linux", "platform_system": "Linux",
              "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython",
              "extra": ""}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def install_requires() -> list[str]:
    tree = ast.parse(Path("setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            return [ast.literal_eval(elt) for elt in node.value.elts]
    raise SystemExit("setup.py: no install_requires")


def requirement_name(req: str) -> str:
    return norm(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req).group(1))


def wheel_requires(path: Path) -> list[str]:
    """Requirements of a wheel that apply on the device (no extras)."""
    from pip._vendor.packaging.requirements import Requirement

    with zipfile.ZipFile(path) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    out = []
    for line in lines:
        if line.startswith("Requires-Dist:"):
            req = Requirement(line.split(":", 1)[1].strip())
            if req.marker is None or req.marker.evaluate(DEVICE_ENV):
                out.append(str(req))
    return out


def fetch(name: str, spec: str) -> None:
    try:
        pinned = f"{name}=={metadata.version(name)}"  # the version tested here
    except metadata.PackageNotFoundError:
        pinned = spec
    print(f"fetch {pinned}", flush=True)
    subprocess.run([*PIP, pinned], check=True)


wanted = [(requirement_name(r), r) for r in install_requires()]
done: set[str] = set()
while wanted:
    name, spec = wanted.pop(0)
    if name in done or name in DEVICE_HAS or name in NOT_CARRIED:
        continue
    before = set(WHL.glob("*.whl"))
    fetch(name, spec)
    done.add(name)
    for new in set(WHL.glob("*.whl")) - before:
        wanted += [(requirement_name(r), r) for r in wheel_requires(new)]

wheels = sorted(WHL.glob("*.whl"))
names = [norm(w.name.split("-")[0]) for w in wheels]
if len(set(names)) != len(names):
    raise SystemExit(f"two versions of one package in .whl/: {[w.name for w in wheels]}")
total = sum(w.stat().st_size for w in wheels)
for w in wheels:
    print(f"{w.stat().st_size / 1024:8.0f} KiB  {w.name}")
print(f"{total / 2**20:8.2f} MiB  in {len(wheels)} wheels under {WHL.resolve()}")
EOF
