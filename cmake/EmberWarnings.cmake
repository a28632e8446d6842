# Warnings for ember's own code: the library's layers, the tool, the samples, the tests and
# the benchmarks. EMBER_WERROR=ON (CI turns it on) makes every warning an error, in C++
# and in CUDA (nvcc's own warnings and the host compiler's on .cu host code).
#
# Left out on purpose: unused parameters (kernel twins share one signature, and not every
# backend needs every argument), missing field initializers (options structs are filled
# with designated initializers, the rest keeping their defaults), unknown pragmas (the
# OpenMP pragmas when EMBER_OPENMP is OFF).

option(EMBER_WERROR "Treat warnings as errors (CI turns this on)" OFF)

set(EMBER_WARNINGS -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers
    -Wno-unknown-pragmas)
# g++ 12 at -O2/-O3 warns about its own libstdc++ where nothing is wrong: -Wrestrict in
# std::string's operator+ (GCC bug 105651) and -Warray-bounds in std::vector::push_back
# after an initializer list (GCC bug 107852). They stay warnings, not errors, there.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  list(APPEND EMBER_WARNINGS -Wno-error=restrict -Wno-error=array-bounds)
endif()

# ember_warnings(<target>): ember's warnings (and -Werror with EMBER_WERROR) for <target>.
function(ember_warnings target)
  list(JOIN EMBER_WARNINGS "," host_warnings)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:${EMBER_WARNINGS}>
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=${host_warnings}>)
  if(EMBER_WERROR)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-Werror>
      $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Werror --Werror=all-warnings>)
  endif()
endfunction()
