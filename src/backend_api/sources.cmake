# sources of src/backend_api (the floor below both backends: the argument validator, the host
# codec over any Backend, the host memory limit), appended to KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/checks.cpp
  ${CMAKE_CURRENT_LIST_DIR}/host_codec.cpp
  ${CMAKE_CURRENT_LIST_DIR}/host_memory.cpp)
