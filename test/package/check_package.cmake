# ctest script: install the built project into a scratch prefix, then configure, build and run
# test/package/consumer against it with find_package(kvarn_cl).
# Inputs: -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=...
file(REMOVE_RECURSE ${WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK_DIR}/prefix
                RESULT_VARIABLE rc OUTPUT_QUIET)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "install failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/test/package/consumer -B ${WORK_DIR}/build
                        -DCMAKE_PREFIX_PATH=${WORK_DIR}/prefix RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "configuring the consumer failed (${rc})")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/build RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the consumer failed (${rc})")
endif()
foreach(exe consumer_static consumer_shared)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env "LD_LIBRARY_PATH=${WORK_DIR}/prefix/lib:${WORK_DIR}/prefix/lib64"
                          ${WORK_DIR}/build/${exe} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${exe} failed (${rc})")
  endif()
endforeach()

# The same consumer built with pkg-config instead of CMake, shared and static, as a Makefile or a
# build script would (`c++ main.cpp $(pkg-config --cflags --libs kvarn_cl)`).
find_program(PKG_CONFIG pkg-config)
find_program(CXX_COMPILER NAMES c++ g++ clang++)
if(NOT PKG_CONFIG OR NOT CXX_COMPILER)
  message(FATAL_ERROR "pkg-config and a C++ compiler are needed for the pkg-config consumer check")
endif()
file(GLOB pc_files ${WORK_DIR}/prefix/lib*/pkgconfig/kvarn_cl.pc ${WORK_DIR}/prefix/lib/*/pkgconfig/kvarn_cl.pc)
if(NOT pc_files)
  message(FATAL_ERROR "kvarn_cl.pc was not installed under ${WORK_DIR}/prefix")
endif()
list(GET pc_files 0 pc_file)
get_filename_component(pc_dir ${pc_file} DIRECTORY)
foreach(kind shared static)
  set(static_flag "")
  if(kind STREQUAL "static")
    set(static_flag --static)
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} -E env PKG_CONFIG_PATH=${pc_dir}
                          ${PKG_CONFIG} --cflags --libs ${static_flag} kvarn_cl
                  OUTPUT_VARIABLE flags OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs ${static_flag} kvarn_cl failed (${rc})")
  endif()
  separate_arguments(flag_list UNIX_COMMAND "${flags}")
  if(kind STREQUAL "static")
    # Link the archive, not the shared library found by the same -L.
    list(TRANSFORM flag_list REPLACE "^-lkvarn_cl$" "-l:libkvarn_cl.a")
  endif()
  set(exe ${WORK_DIR}/pc_consumer_${kind})
  execute_process(COMMAND ${CXX_COMPILER} -std=c++17 ${SOURCE_DIR}/test/package/consumer/main.cpp
                          -o ${exe} ${flag_list} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "building the pkg-config consumer (${kind}) failed (${rc}) with: ${flags}")
  endif()
  execute_process(COMMAND ${CMAKE_COMMAND} -E env "LD_LIBRARY_PATH=${WORK_DIR}/prefix/lib:${WORK_DIR}/prefix/lib64"
                          ${exe} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pc_consumer_${kind} failed (${rc})")
  endif()
endforeach()

# Only the public API is exported from the shared library: the C functions, and C++ symbols of
# namespace kvarn_cl outside its internal namespaces (cpu, cache, capi, opencl). No OpenCL C++
# binding (cl::) or standard-library instantiation may leak.
find_program(NM nm)
file(GLOB so_files ${WORK_DIR}/prefix/lib*/libkvarn_cl.so ${WORK_DIR}/prefix/lib/*/libkvarn_cl.so)
if(NM AND so_files)
  list(GET so_files 0 so)
  execute_process(COMMAND ${NM} -D -C --defined-only ${so} OUTPUT_VARIABLE symbols RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "nm -D failed on ${so}")
  endif()
  string(REPLACE "\n" ";" lines "${symbols}")
  set(bad "")
  set(exported 0)
  foreach(line ${lines})
    if(NOT line MATCHES "^[0-9a-f]+ [A-Za-z] (.*)$")
      continue()
    endif()
    set(sym "${CMAKE_MATCH_1}")
    math(EXPR exported "${exported} + 1")
    if(sym MATCHES "^kvarn_cl_[a-z_0-9]+$")
      continue()  # the C API
    endif()
    if(sym MATCHES "kvarn_cl::(cpu|cache|capi|opencl)::" OR sym MATCHES "(^| )cl::" OR
       NOT sym MATCHES "kvarn_cl::")
      list(APPEND bad "${sym}")
    endif()
  endforeach()
  list(LENGTH bad n_bad)
  if(n_bad GREATER 0)
    list(SUBLIST bad 0 20 first)
    string(REPLACE ";" "\n  " shown "${first}")
    message(FATAL_ERROR "${n_bad} of ${exported} exported symbols are not public API, e.g.:\n  ${shown}")
  endif()
  message(STATUS "${exported} exported symbols, all public API")
endif()
