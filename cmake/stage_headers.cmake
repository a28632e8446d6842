# Installs only the public headers (the ember_headers component) of BUILD_DIR into a fresh
# PREFIX, for the header.* tests: cmake -DBUILD_DIR=... -DPREFIX=... -P stage_headers.cmake
file(REMOVE_RECURSE "${PREFIX}")
execute_process(
  COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --component ember_headers
          --prefix "${PREFIX}"
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "installing the public headers into ${PREFIX} failed (${rc})")
endif()
