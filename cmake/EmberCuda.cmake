# EMBER_CUDA: build the CUDA backend (ON) or a CPU-only ember (OFF).
#
# Default: ON when a CUDA compiler (nvcc) and the CUDA toolkit are found, else OFF with one
# message saying so. OFF looks for no CUDA at all: the CUDA language is never enabled, no
# CUDA package is searched for, no CUDA header or library reaches any target, and the
# CUDA-only sources (EMBER_CUDA_ONLY_SOURCES in CMakeLists.txt) are left out. ON enables
# the CUDA language and requires the toolkit (cudart, cuBLAS) and cuDNN 9 (cmake/FindCUDNN.cmake).
#
# Sets EMBER_WITH_CUDA (1 or 0, for ember's own sources) and, when ON,
# EMBER_CUDA_INCLUDE_DIRS (the toolkit's and cuDNN's include directories).

if(NOT DEFINED EMBER_CUDA)
  # First configure of this build folder: look for CUDA once to choose the default.
  set(_ember_cuda_default OFF)
  set(_ember_cuda_why "")
  if(CMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit)
    set(_ember_cuda_why "CMAKE_DISABLE_FIND_PACKAGE_CUDAToolkit is set")
  else()
    include(CheckLanguage)
    check_language(CUDA)
    if(NOT CMAKE_CUDA_COMPILER)
      set(_ember_cuda_why "no CUDA compiler (nvcc) on PATH, in CUDACXX or CMAKE_CUDA_COMPILER")
    else()
      find_package(CUDAToolkit QUIET)
      if(CUDAToolkit_FOUND)
        set(_ember_cuda_default ON)
      else()
        set(_ember_cuda_why "nvcc found (${CMAKE_CUDA_COMPILER}) but not the CUDA toolkit's libraries")
      endif()
    endif()
  endif()
  if(NOT _ember_cuda_default)
    set(_ember_cuda_announced ON)
    message(STATUS "ember: building without CUDA (EMBER_CUDA=OFF): ${_ember_cuda_why}. "
                   "ember will run on the CPU only. For the GPU backend install the CUDA 13 "
                   "toolkit and cuDNN 9 (under /usr/local/cuda, with nvcc on PATH) and "
                   "configure a new build folder, or pass -DEMBER_CUDA=ON.")
  endif()
endif()
option(EMBER_CUDA "Build the CUDA backend (needs nvcc, the CUDA toolkit and cuDNN 9)"
       ${_ember_cuda_default})

# Some machines link the CUDA toolkit's headers into a folder the C++ compiler searches
# without being asked (/usr/local/include, say). EMBER_CUDA_FREE_INCLUDE_FLAGS replaces
# the compiler's default search list by the same list less such folders (-nostdinc, then
# -isystem<folder> for each other one, in the same order), so that what must compile
# without CUDA (the CPU-only build, the header checks) cannot find a CUDA header by
# accident. Empty when no default folder holds CUDA headers. EMBER_CUDA_DEFAULT_INCLUDE_DIRS
# names the folders left out.
set(EMBER_CUDA_FREE_INCLUDE_FLAGS "")
set(EMBER_CUDA_DEFAULT_INCLUDE_DIRS "")
execute_process(COMMAND ${CMAKE_CXX_COMPILER} -xc++ -E -v /dev/null
  OUTPUT_QUIET ERROR_VARIABLE _ember_cxx_v RESULT_VARIABLE _ember_cxx_rc)
if(_ember_cxx_rc EQUAL 0 AND _ember_cxx_v MATCHES
   "#include <\.\.\.> search starts here:
(.*)
End of search list")
  string(REPLACE "
" ";" _ember_cxx_dirs "${CMAKE_MATCH_1}")
  set(_ember_kept "")
  foreach(dir IN LISTS _ember_cxx_dirs)
    string(STRIP "${dir}" dir)
    if(dir STREQUAL "" OR dir MATCHES " \(framework directory\)$")
      continue()
    endif()
    set(_ember_has_cuda OFF)
    foreach(h cuda_runtime_api.h cuda.h cublas_v2.h cudnn.h curand_kernel.h)
      if(EXISTS "${dir}/${h}")
        set(_ember_has_cuda ON)
      endif()
    endforeach()
    if(_ember_has_cuda)
      list(APPEND EMBER_CUDA_DEFAULT_INCLUDE_DIRS "${dir}")
    else()
      list(APPEND _ember_kept "-isystem${dir}")
    endif()
  endforeach()
  if(EMBER_CUDA_DEFAULT_INCLUDE_DIRS)
    set(EMBER_CUDA_FREE_INCLUDE_FLAGS -nostdinc ${_ember_kept})
  endif()
endif()

if(NOT EMBER_CUDA)
  set(EMBER_WITH_CUDA 0)
  set(EMBER_CUDA_INCLUDE_DIRS "")
  return()
endif()

set(EMBER_WITH_CUDA 1)
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(FATAL_ERROR "ember: EMBER_CUDA=ON, but no CUDA compiler was found. Put nvcc on "
                      "PATH (export PATH=/usr/local/cuda/bin:$PATH) or set CUDACXX, in a new "
                      "build folder; or configure with -DEMBER_CUDA=OFF for a CPU-only ember.")
endif()

# A multi-architecture default for users; the scripts and CI pass a single one.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "75;80;86;89;90" CACHE STRING "CUDA architectures to build for")
endif()
enable_language(CUDA)
# C++17 for .cu files: CMake 3.25 knows no C++20 flag for nvcc 13 ("CUDA20" dialect).
# Headers that .cu files include (kernels/*_math.h, kernels/hd.h, core/base/) stay C++17.
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)
# The runtime that CUDA::cudart names, for the .cu objects too: one cudart in the process.
set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)

find_package(CUDAToolkit)
if(NOT CUDAToolkit_FOUND)
  message(FATAL_ERROR "ember: EMBER_CUDA=ON, but the CUDA toolkit's libraries (cudart, "
                      "cuBLAS) were not found next to ${CMAKE_CUDA_COMPILER}. Set "
                      "CUDAToolkit_ROOT, or configure with -DEMBER_CUDA=OFF.")
endif()
find_package(CUDNN 9)
if(NOT CUDNN_FOUND)
  message(FATAL_ERROR "ember: EMBER_CUDA=ON, but cuDNN 9 was not found (cudnn_version.h and "
                      "libcudnn.so, looked for in CUDNN_PATH / CUDNN_ROOT and the CUDA "
                      "toolkit's folders). Set CUDNN_ROOT, or configure with -DEMBER_CUDA=OFF.")
endif()
set(EMBER_CUDA_INCLUDE_DIRS ${CUDAToolkit_INCLUDE_DIRS} ${CUDNN_INCLUDE_DIR})
list(REMOVE_DUPLICATES EMBER_CUDA_INCLUDE_DIRS)
