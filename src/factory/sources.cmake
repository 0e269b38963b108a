# sources of src/factory (above both backends: make_backend and the rule of `automatic`),
# appended to KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/make_backend.cpp)
