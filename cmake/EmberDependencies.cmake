# Third-party libraries ember uses, each checked when CMake configures: a missing one stops
# the configure with the Debian package that provides it (scripts/common.sh installs them
# all). The CUDA toolkit and cuDNN are checked in cmake/EmberCuda.cmake, only with EMBER_CUDA.

# ember_missing(<what> <debian-package>): stops the configure, naming the package.
function(ember_missing what package)
  message(FATAL_ERROR "ember needs ${what}, which was not found. On Debian/Ubuntu: "
                      "apt-get install ${package} (scripts/common.sh installs everything "
                      "ember needs), then configure again.")
endfunction()

# OpenBLAS: the CPU GEMM (kernels/cpu/gemm.cpp, through cblas.h).
set(BLA_VENDOR OpenBLAS)
find_package(BLAS QUIET)
find_path(EMBER_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread)
if(NOT BLAS_FOUND OR NOT EMBER_CBLAS_INCLUDE_DIR)
  ember_missing("OpenBLAS (libopenblas and cblas.h)" libopenblas-dev)
endif()
mark_as_advanced(EMBER_CBLAS_INCLUDE_DIR)

# zlib: IDX files read straight from .gz (python_free_api/data/idx.cpp).
find_package(ZLIB QUIET)
if(NOT ZLIB_FOUND)
  ember_missing("zlib" zlib1g-dev)
endif()

# nlohmann-json: safetensors headers, the `ember` tool's and the benchmarks' JSON.
find_package(nlohmann_json 3 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  ember_missing("nlohmann-json 3" nlohmann-json3-dev)
endif()

# ONNX (its protobuf classes and onnx::checker) over protobuf: io::export_onnx
# (python_free_api/io/onnx.cpp).
find_package(Protobuf QUIET)
if(NOT Protobuf_FOUND)
  ember_missing("protobuf (for ONNX export)" libprotobuf-dev)
endif()
find_package(ONNX CONFIG QUIET)
if(NOT ONNX_FOUND OR NOT TARGET onnx)
  ember_missing("ONNX's C++ library (onnx/onnx_pb.h, onnx/checker.h, libonnx)" libonnx-dev)
endif()

# libpng and libjpeg-turbo: PNG and JPEG decoding for image folders, hardened for files
# from strangers (python_free_api/data/image_decode.cpp, Note [Untrusted images]).
find_package(PNG QUIET)
if(NOT PNG_FOUND)
  ember_missing("libpng (png.h, libpng16)" libpng-dev)
endif()
find_package(JPEG QUIET)
if(NOT JPEG_FOUND)
  ember_missing("libjpeg-turbo (jpeglib.h, libjpeg)" libjpeg62-turbo-dev)
endif()

# stb (header-only): the other image formats (BMP, GIF, TGA, ...), resizing and PNG
# writing for image folders (python_free_api/data/image_decode.cpp, image_folder.cpp).
find_path(EMBER_STB_INCLUDE_DIR stb/stb_image.h)
if(NOT EMBER_STB_INCLUDE_DIR OR NOT EXISTS "${EMBER_STB_INCLUDE_DIR}/stb/stb_image_resize.h"
   OR NOT EXISTS "${EMBER_STB_INCLUDE_DIR}/stb/stb_image_write.h")
  ember_missing("stb (stb/stb_image.h, stb_image_resize.h, stb_image_write.h)" libstb-dev)
endif()
mark_as_advanced(EMBER_STB_INCLUDE_DIR)
if(NOT TARGET ember_stb)
  add_library(ember_stb INTERFACE)
  target_include_directories(ember_stb SYSTEM INTERFACE "${EMBER_STB_INCLUDE_DIR}")
endif()

# CLI11: the `ember` tool's, the samples' and the benchmarks' command lines.
find_package(CLI11 CONFIG QUIET)
if(NOT CLI11_FOUND)
  ember_missing("CLI11" libcli11-dev)
endif()

# GoogleTest: the test suite.
if(EMBER_BUILD_TESTS)
  find_package(GTest QUIET)
  if(NOT GTest_FOUND)
    ember_missing("GoogleTest (for EMBER_BUILD_TESTS=ON)" libgtest-dev)
  endif()
endif()

# OpenMP (EMBER_OPENMP=ON only): g++'s libgomp.
if(EMBER_OPENMP)
  find_package(OpenMP QUIET)
  if(NOT OpenMP_CXX_FOUND)
    ember_missing("OpenMP for C++ (for EMBER_OPENMP=ON; omp.h and libgomp come with g++)" libgcc-12-dev)
  endif()
endif()
