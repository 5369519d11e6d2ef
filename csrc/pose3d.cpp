// The pose3d op library and the Python module `pose3d._C`.
//
// Each op lives in its own folder (csrc/<op>/): the schema and CPU kernel in <op>.cpp
// (TORCH_LIBRARY_FRAGMENT + TORCH_LIBRARY_IMPL(pose3d, CPU)), the CUDA kernel in
// <op>_cuda.cu (TORCH_LIBRARY_IMPL(pose3d, CUDA)). Importing pose3d._C runs every static
// registration; the Python module itself only reports how the library was built.
#include <Python.h>
#include <torch/library.h>

#include <string>

#ifndef POSE3D_VERSION
#define POSE3D_VERSION "unknown"
#endif

namespace {

std::string build_info_json() {
#ifdef POSE3D_WITH_CUDA
  const bool cuda = true;
  const std::string arch = POSE3D_CUDA_ARCH_LIST;
#else
  const bool cuda = false;
  const std::string arch = "";
#endif
#ifdef _OPENMP
  const bool openmp = true;
#else
  const bool openmp = false;
#endif
  return std::string("{\"version\": \"") + POSE3D_VERSION + "\", \"cuda\": " +
         (cuda ? "true" : "false") + ", \"cuda_arch_list\": \"" + arch +
         "\", \"openmp\": " + (openmp ? "true" : "false") + "}";
}

}  // namespace

TORCH_LIBRARY(pose3d, m) {
  m.def("build_info() -> str", &build_info_json);
}

// A plain module init: the ops are reached through torch.ops.pose3d, not through this module.
static PyModuleDef pose3d_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&pose3d_module); }
