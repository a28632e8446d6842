# Build-tree include roots: what each layer of ember may #include (see "The layer rule" in
# docs/building.md).
#
# Headers are included as "ember/<folder>/<file>.h". Each layer target compiles against a
# root of its own, <build>/include/<root>/ember/..., made of links to the source folders
# (or, where only some headers of a folder are allowed, to those headers one by one) that
# the layer may see and nothing else, so an #include that goes up a layer fails to
# compile ("No such file or directory"). No root links the repository root itself, so no
# root contains the build folder (or itself).
#
#   base     ember/core/base/                        core/base: errors, export macro, CUDA checks
#   kernels  ember/core/base/ ember/kernels/
#   core     ember/core/ ember/kernels/
#   nn       the public headers of core, ember/layers/ ember/optim/
#   api      the public headers of core, layers and optim, ember/python_free_api/, ember.h
#   public   the public headers (cmake/public-headers.txt): exactly what is installed; the
#            include root of libember.so's users in the build tree (samples, API tests, tool)
#   all      every folder and ember.h: the tests and benchmarks that reach internals
#   bench    ember/benchmarks/: the benchmarks' shared harness, for the benchmarks
#
# The roots are made again at every configure, so a header dropped from a list goes.

set(EMBER_INCLUDE_DIR "${PROJECT_BINARY_DIR}/include")

# A build folder configured before these roots existed has include/ember, a link to the
# repository root (so include/ember/build/include/ember/... went round in a loop). It
# would shadow nothing now, but it must not linger. REMOVE on a link removes the link.
if(IS_SYMLINK "${EMBER_INCLUDE_DIR}/ember")
  file(REMOVE "${EMBER_INCLUDE_DIR}/ember")
endif()

# ember_include_root(<name> [FOLDERS <path>...] [HEADERS <path>...])
# Makes <build>/include/<name>/ember/<path> a link to <source>/<path> for each folder and
# header, and sets EMBER_INCLUDE_ROOT_<name> to <build>/include/<name>.
function(ember_include_root name)
  cmake_parse_arguments(ARG "" "" "FOLDERS;HEADERS" ${ARGN})
  set(root "${EMBER_INCLUDE_DIR}/${name}")
  # REMOVE_RECURSE removes links, it does not follow them into the sources.
  file(REMOVE_RECURSE "${root}")
  foreach(path IN LISTS ARG_FOLDERS ARG_HEADERS)
    if(NOT EXISTS "${PROJECT_SOURCE_DIR}/${path}")
      message(FATAL_ERROR "ember include root '${name}': ${path} does not exist")
    endif()
    get_filename_component(parent "${root}/ember/${path}" DIRECTORY)
    file(MAKE_DIRECTORY "${parent}")
    file(CREATE_LINK "${PROJECT_SOURCE_DIR}/${path}" "${root}/ember/${path}" SYMBOLIC)
  endforeach()
  set(EMBER_INCLUDE_ROOT_${name} "${root}" PARENT_SCOPE)
endfunction()

# The public headers, from cmake/public-headers.txt (comments and blank lines skipped).
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  "${PROJECT_SOURCE_DIR}/cmake/public-headers.txt")
file(STRINGS "${PROJECT_SOURCE_DIR}/cmake/public-headers.txt" EMBER_PUBLIC_HEADERS
  REGEX "^[^#]")
list(TRANSFORM EMBER_PUBLIC_HEADERS STRIP)
list(FILTER EMBER_PUBLIC_HEADERS EXCLUDE REGEX "^$")
set(EMBER_PUBLIC_CORE_HEADERS ${EMBER_PUBLIC_HEADERS})
list(FILTER EMBER_PUBLIC_CORE_HEADERS INCLUDE REGEX "^core/")
set(EMBER_PUBLIC_NN_HEADERS ${EMBER_PUBLIC_HEADERS})
list(FILTER EMBER_PUBLIC_NN_HEADERS INCLUDE REGEX "^(layers|optim)/")

ember_include_root(base    FOLDERS core/base)
ember_include_root(kernels FOLDERS core/base kernels)
ember_include_root(core    FOLDERS core kernels)
ember_include_root(nn      FOLDERS layers optim HEADERS ${EMBER_PUBLIC_CORE_HEADERS})
ember_include_root(api     FOLDERS python_free_api
                           HEADERS ember.h ${EMBER_PUBLIC_CORE_HEADERS} ${EMBER_PUBLIC_NN_HEADERS})
ember_include_root(public  HEADERS ${EMBER_PUBLIC_HEADERS})
ember_include_root(all     FOLDERS core kernels layers optim python_free_api HEADERS ember.h)
ember_include_root(bench   FOLDERS benchmarks)   # benchmarks/harness.h, for the benchmarks

# Transitional: sources that still include across a layer boundary (cmake/layer-exceptions.txt)
# compile with the `all` root and CUDA's include directories added, so that the build
# keeps working while they are fixed. scripts/check-includes.sh reports each of them
# (and a line left in the file after its fix). Sets EMBER_LAYER_EXCEPTIONS.
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS
  "${PROJECT_SOURCE_DIR}/cmake/layer-exceptions.txt")
file(STRINGS "${PROJECT_SOURCE_DIR}/cmake/layer-exceptions.txt" _ember_exception_lines
  REGEX "^[^#]")
set(EMBER_LAYER_EXCEPTIONS "")
foreach(line IN LISTS _ember_exception_lines)
  string(REGEX MATCH "^[^ \t]+" file "${line}")
  if(file)
    list(APPEND EMBER_LAYER_EXCEPTIONS "${file}")
  endif()
endforeach()

# ember_allow_layer_exceptions(<target>): applies the exceptions to the target's sources.
function(ember_allow_layer_exceptions target)
  get_target_property(sources ${target} SOURCES)
  get_target_property(source_dir ${target} SOURCE_DIR)
  foreach(src IN LISTS sources)
    if(NOT IS_ABSOLUTE "${src}")
      set(src "${source_dir}/${src}")
    endif()
    file(RELATIVE_PATH rel "${PROJECT_SOURCE_DIR}" "${src}")
    if(rel IN_LIST EMBER_LAYER_EXCEPTIONS)
      # Directory-scoped: the property must be set where the target is defined.
      set_source_files_properties("${src}" DIRECTORY "${source_dir}" PROPERTIES
        INCLUDE_DIRECTORIES "${EMBER_INCLUDE_ROOT_all};${EMBER_CUDA_INCLUDE_DIRS}")
      message(STATUS "ember: ${rel} still includes across a layer "
                     "(cmake/layer-exceptions.txt): compiled with every folder visible")
    endif()
  endforeach()
endfunction()
