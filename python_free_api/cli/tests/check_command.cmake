# Runs one command and checks its exit code and output, for the `ember` tool's tests
# (PASS_REGULAR_EXPRESSION alone would ignore the exit code). Usage:
#   cmake -DCOMMAND=<program;args...> [-DEXPECT_RC=0] [-DEXPECT_STDOUT=<regex;...>]
#         [-DEXPECT_STDERR=<regex;...>] [-DFRESH_DIR=<dir>] -P check_command.cmake
# Each regex of a list must match (so a regex cannot hold a semicolon). FRESH_DIR is
# removed before the command runs.
if(NOT DEFINED COMMAND)
  message(FATAL_ERROR "check_command.cmake: COMMAND is not set")
endif()
if(NOT DEFINED EXPECT_RC)
  set(EXPECT_RC 0)
endif()
if(DEFINED FRESH_DIR)
  file(REMOVE_RECURSE "${FRESH_DIR}")
endif()

execute_process(COMMAND ${COMMAND}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REPLACE ";" " " shown "${COMMAND}")
message("$ ${shown}\n--- exit code: ${rc}\n--- stdout:\n${out}--- stderr:\n${err}---")

set(problems "")
if(NOT "${rc}" STREQUAL "${EXPECT_RC}")
  string(APPEND problems "exit code ${rc}, expected ${EXPECT_RC}\n")
endif()
foreach(stream STDOUT STDERR)
  if(stream STREQUAL "STDOUT")
    set(text "${out}")
  else()
    set(text "${err}")
  endif()
  foreach(regex IN LISTS EXPECT_${stream})
    if(NOT text MATCHES "${regex}")
      string(TOLOWER "${stream}" name)
      string(APPEND problems "${name} does not match '${regex}'\n")
    endif()
  endforeach()
endforeach()
if(problems)
  message(FATAL_ERROR "${problems}")
endif()
