# EMBER_SANITIZE and EMBER_BUILD_FUZZERS: sanitizer builds and the libFuzzer targets
# (docs/reliability.md). Included once, before any target is made, so that every target
# (the layers, libember.so, the tool, the samples, the tests, the fuzzers) is compiled AND
# linked with the same flags by the same compiler.
#
#   -DEMBER_SANITIZE=address,undefined   ASan + UBSan (LeakSanitizer comes with ASan)
#   -DEMBER_SANITIZE=thread              TSan
#   -DEMBER_BUILD_FUZZERS=ON             tests/fuzz/ (clang only; add the sanitizer too)
#
# Why one place, in add_compile_options/add_link_options and not CMAKE_*_LINKER_FLAGS: flags
# given to some link lines only (or a shared library linked by another compiler than its
# users) once made libember.so load GCC's libasan and clang's ASan runtime together. Here
# the compiler that compiles is the one that links, for every target; the CTest test
# library.one_sanitizer_runtime checks libember.so names no second runtime.

set(EMBER_SANITIZE "" CACHE STRING
  "Sanitizers for every target, comma-separated: address, undefined, leak, thread (empty: none)")
option(EMBER_BUILD_FUZZERS "Build the libFuzzer targets of tests/fuzz (clang only)" OFF)

set(EMBER_SANITIZE_LIST "")
if(EMBER_SANITIZE)
  string(REPLACE "," ";" EMBER_SANITIZE_LIST "${EMBER_SANITIZE}")
  list(TRANSFORM EMBER_SANITIZE_LIST STRIP)
  list(REMOVE_DUPLICATES EMBER_SANITIZE_LIST)
  foreach(s IN LISTS EMBER_SANITIZE_LIST)
    if(NOT s MATCHES "^(address|undefined|leak|thread)$")
      message(FATAL_ERROR "ember: EMBER_SANITIZE=${EMBER_SANITIZE}: '${s}' is not a sanitizer "
                          "ember supports; use address, undefined, leak or thread, "
                          "comma-separated (e.g. -DEMBER_SANITIZE=address,undefined)")
    endif()
  endforeach()
  if("thread" IN_LIST EMBER_SANITIZE_LIST AND
     ("address" IN_LIST EMBER_SANITIZE_LIST OR "leak" IN_LIST EMBER_SANITIZE_LIST))
    message(FATAL_ERROR "ember: EMBER_SANITIZE=${EMBER_SANITIZE}: ThreadSanitizer cannot be "
                        "combined with AddressSanitizer or LeakSanitizer (each owns the "
                        "process's memory map); configure two build folders, one with "
                        "address,undefined and one with thread (scripts/sanitize.sh does)")
  endif()
  if(EMBER_CUDA)
    # nvcc passes host flags through -Xcompiler but the device code, the CUDA runtime and
    # the driver are not instrumented, and ASan's shadow memory collides with the CUDA
    # driver's address-space reservations: refused rather than half-working.
    message(FATAL_ERROR "ember: EMBER_SANITIZE=${EMBER_SANITIZE} needs a CPU-only build: "
                        "configure with -DEMBER_CUDA=OFF (the CUDA runtime and device code "
                        "are not instrumented, and ASan's shadow memory clashes with the "
                        "CUDA driver's). Use compute-sanitizer for the CUDA code.")
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "^(GNU|Clang)$")
    message(FATAL_ERROR "ember: EMBER_SANITIZE needs GCC or Clang, not "
                        "${CMAKE_CXX_COMPILER_ID}")
  endif()
  list(JOIN EMBER_SANITIZE_LIST "," _ember_sanitizers)
  set(EMBER_SANITIZE_FLAGS "-fsanitize=${_ember_sanitizers}" -fno-omit-frame-pointer)
  if("undefined" IN_LIST EMBER_SANITIZE_LIST)
    # A UBSan finding stops the program (and fails its test) instead of printing and going on.
    list(APPEND EMBER_SANITIZE_FLAGS -fno-sanitize-recover=undefined)
  endif()
  # Line tables only: the reports name file:line without the size of full debug info.
  if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    list(APPEND EMBER_SANITIZE_FLAGS -gline-tables-only)
  else()
    list(APPEND EMBER_SANITIZE_FLAGS -g1)
  endif()
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:${EMBER_SANITIZE_FLAGS}>")
  add_link_options("$<$<LINK_LANGUAGE:CXX>:${EMBER_SANITIZE_FLAGS}>")
  message(STATUS "ember: sanitizers on for every target: ${_ember_sanitizers} "
                 "(${CMAKE_CXX_COMPILER_ID} ${CMAKE_CXX_COMPILER_VERSION})")
endif()

if(EMBER_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "ember: EMBER_BUILD_FUZZERS=ON needs clang (libFuzzer), not "
                        "${CMAKE_CXX_COMPILER_ID}: configure with CXX=clang++-14 "
                        "(Debian: libclang-rt-14-dev), e.g. scripts/sanitize.sh")
  endif()
  if("thread" IN_LIST EMBER_SANITIZE_LIST)
    message(FATAL_ERROR "ember: EMBER_BUILD_FUZZERS=ON goes with EMBER_SANITIZE=address,undefined "
                        "(libFuzzer does not run under ThreadSanitizer)")
  endif()
  if(NOT "address" IN_LIST EMBER_SANITIZE_LIST)
    # Also the runtime that the coverage instrumentation of the tests' and the tool's
    # code calls into comes with ASan.
    message(FATAL_ERROR "ember: EMBER_BUILD_FUZZERS=ON goes with "
                        "-DEMBER_SANITIZE=address,undefined (a fuzzer without ASan finds "
                        "crashes only, not the memory errors that come before them)")
  endif()
  # Coverage for the whole library (the fuzzers' guide), not only the fuzz targets' files;
  # the targets themselves link with -fsanitize=fuzzer (tests/fuzz/CMakeLists.txt).
  add_compile_options("$<$<COMPILE_LANGUAGE:CXX>:-fsanitize=fuzzer-no-link>")
endif()
