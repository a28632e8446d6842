# Finds cuDNN: CUDNN_PATH / CUDNN_ROOT (variable or environment), then the CUDA
# toolkit's directories. Defines CUDNN::cudnn, CUDNN_FOUND, CUDNN_VERSION and
# CUDNN_VERSION_MAJOR (read from cudnn_version.h).
set(_cudnn_hints ${CUDNN_PATH} ${CUDNN_ROOT} $ENV{CUDNN_PATH} $ENV{CUDNN_ROOT})
if(CUDAToolkit_LIBRARY_ROOT)
  list(APPEND _cudnn_hints ${CUDAToolkit_LIBRARY_ROOT})
endif()

find_path(CUDNN_INCLUDE_DIR cudnn_version.h
  HINTS ${_cudnn_hints} ${CUDAToolkit_INCLUDE_DIRS}
  PATH_SUFFIXES include include/x86_64-linux-gnu)
find_library(CUDNN_LIBRARY cudnn
  HINTS ${_cudnn_hints} ${CUDAToolkit_LIBRARY_DIR}
  PATH_SUFFIXES lib64 lib lib/x86_64-linux-gnu)

if(CUDNN_INCLUDE_DIR AND EXISTS "${CUDNN_INCLUDE_DIR}/cudnn_version.h")
  file(READ "${CUDNN_INCLUDE_DIR}/cudnn_version.h" _cudnn_header)
  string(REGEX MATCH "#define CUDNN_MAJOR ([0-9]+)" _ "${_cudnn_header}")
  set(CUDNN_VERSION_MAJOR ${CMAKE_MATCH_1})
  string(REGEX MATCH "#define CUDNN_MINOR ([0-9]+)" _ "${_cudnn_header}")
  set(CUDNN_VERSION_MINOR ${CMAKE_MATCH_1})
  string(REGEX MATCH "#define CUDNN_PATCHLEVEL ([0-9]+)" _ "${_cudnn_header}")
  set(CUDNN_VERSION_PATCH ${CMAKE_MATCH_1})
  set(CUDNN_VERSION "${CUDNN_VERSION_MAJOR}.${CUDNN_VERSION_MINOR}.${CUDNN_VERSION_PATCH}")
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(CUDNN
  REQUIRED_VARS CUDNN_LIBRARY CUDNN_INCLUDE_DIR
  VERSION_VAR CUDNN_VERSION)

if(CUDNN_FOUND AND NOT TARGET CUDNN::cudnn)
  add_library(CUDNN::cudnn UNKNOWN IMPORTED)
  set_target_properties(CUDNN::cudnn PROPERTIES
    IMPORTED_LOCATION "${CUDNN_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${CUDNN_INCLUDE_DIR}")
endif()
mark_as_advanced(CUDNN_INCLUDE_DIR CUDNN_LIBRARY)
