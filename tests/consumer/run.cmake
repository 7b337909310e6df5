# Installs the built qcomm into a scratch prefix, then builds and runs the consumer against it,
# through find_package(qcomm CONFIG) and through pkg-config.
# Usage: cmake -DQCOMM_BUILD_DIR=... -DSOURCE=... -DWORK=... -DCXX=... -P run.cmake
file(REMOVE_RECURSE ${WORK})
function(step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

step(${CMAKE_COMMAND} --install ${QCOMM_BUILD_DIR} --prefix ${WORK}/prefix)
step(${CMAKE_COMMAND} -S ${SOURCE} -B ${WORK}/build -DCMAKE_PREFIX_PATH=${WORK}/prefix
     -DCMAKE_BUILD_TYPE=Release)
step(${CMAKE_COMMAND} --build ${WORK}/build)
step(${WORK}/build/consumer)
message(STATUS "find_package: ${step_output}")

file(GLOB pc_dirs ${WORK}/prefix/lib*/pkgconfig ${WORK}/prefix/lib/*/pkgconfig)
execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dirs}
                pkg-config --cflags --libs qcomm
                RESULT_VARIABLE rc OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pkg-config does not find qcomm in ${pc_dirs}")
endif()
separate_arguments(flags UNIX_COMMAND "${flags}")
step(${CXX} ${SOURCE}/main.cc -o ${WORK}/consumer-pc ${flags})
string(REGEX MATCH "-L([^ ;]+)" _ "${flags}")
step(${CMAKE_COMMAND} -E env LD_LIBRARY_PATH=${CMAKE_MATCH_1} ${WORK}/consumer-pc)
message(STATUS "pkg-config: ${step_output}")
