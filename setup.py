"""Build pose3d and its compiled extension `pose3d._C`.

The C++ (CPU) kernels under csrc/ are always built. The CUDA kernels (csrc/**/*.cu) are
built when the installed torch has CUDA and nvcc is found, or when FORCE_CUDA=1.
TORCH_CUDA_ARCH_LIST is honoured by torch's build helpers.

torch must already be installed: install with `pip install --no-build-isolation -e .` so
that the build sees that torch instead of downloading another copy into an isolated env.
"""

import glob
import os
import shutil

from setuptools import find_packages, setup


def _locate_cuda_home() -> None:
    """Point CUDA_HOME at a real toolkit when nvcc on PATH is a wrapper script.

    torch guesses CUDA_HOME as the grandparent of `which nvcc`; with a wrapper in
    /usr/local/bin that guess has no headers or libraries. Must run before torch's
    cpp_extension module is imported, which reads CUDA_HOME once.
    """
    if os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH"):
        return
    nvcc = shutil.which("nvcc")
    guess = os.path.dirname(os.path.dirname(os.path.realpath(nvcc))) if nvcc else None
    for home in (guess, "/usr/local/cuda"):
        if home and os.path.exists(os.path.join(home, "include", "cuda_runtime.h")):
            os.environ["CUDA_HOME"] = home
            return


_locate_cuda_home()

try:
    import torch
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
except ImportError as exc:  # pragma: no cover - only hit on a misconfigured install
    raise SystemExit(
        "pose3d needs torch to build its extension. Install it first (pip install torch "
        "torchvision), then `pip install --no-build-isolation -e .`"
    ) from exc

ROOT = os.path.dirname(os.path.abspath(__file__))
VERSION = "0.1.0"


def _want_cuda() -> bool:
    """FORCE_CUDA=1 forces the CUDA build, FORCE_CUDA=0 skips it; otherwise build it when
    torch has CUDA and a CUDA toolkit (nvcc) is found."""
    force = os.environ.get("FORCE_CUDA")
    if force is not None:
        return force == "1"
    return torch.version.cuda is not None and CUDA_HOME is not None


def _extension():
    cpp = sorted(glob.glob(os.path.join("csrc", "**", "*.cpp"), recursive=True))
    cu = sorted(glob.glob(os.path.join("csrc", "**", "*.cu"), recursive=True))
    opt = ["-O3"]
    cxx = list(opt)  # the C++ standard is the one torch asks for
    if os.environ.get("POSE3D_NO_OPENMP", "0") != "1":
        cxx.append("-fopenmp")
    args = {"cxx": cxx}
    macros = [("POSE3D_VERSION", f'"{VERSION}"')]
    if _want_cuda():
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            # No GPU to ask: build for A100 and H100/H200 rather than every architecture.
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0"
        arch = os.environ.get("TORCH_CUDA_ARCH_LIST", "native")
        macros += [("POSE3D_WITH_CUDA", None), ("POSE3D_CUDA_ARCH_LIST", f'"{arch}"')]
        # No --use_fast_math: CUDAExtension gives every .cu file the same flags, and in the
        # fp32 triangulation it would make divide, reciprocal and sqrt approximate and flush
        # denormals, so that the GPU would no longer do the CPU's arithmetic (triangulate.cpp,
        # test_simd_and_scalar_paths_agree) and validity tests at the thresholds could differ.
        # The soft-argmax kernels call the fast exp (__expf) themselves, where it matters.
        args["nvcc"] = opt + ["-lineinfo"]
        return CUDAExtension(
            "pose3d._C", cpp + cu, extra_compile_args=args, define_macros=macros,
            extra_link_args=["-fopenmp"] if "-fopenmp" in cxx else [],
        )
    return CppExtension(
        "pose3d._C", cpp, extra_compile_args=args, define_macros=macros,
        extra_link_args=["-fopenmp"] if "-fopenmp" in cxx else [],
    )


setup(
    name="pose3d",
    version=VERSION,
    description="Multi-view semi-supervised training of single-view 3D human pose models",
    license="MIT",
    packages=find_packages(include=["pose3d", "pose3d.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "torchvision",
        "numpy",
        "opencv-python-headless",
        "webdataset>=0.2.90",
        "wandb",
        "omegaconf>=2.3",
        "tqdm",
        "matplotlib",
        "scipy",
        "cdflib>=1.0",  # Human3.6M's CDF poses, pure Python (no NASA C library)
        "h5py>=3.0",  # Human3.6M's MATLAB v7.3 box files
    ],
    extras_require={"test": ["pytest", "ruff"]},
    ext_modules=[_extension()],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
    entry_points={"console_scripts": ["pose3d=pose3d.cli:main"]},
)
