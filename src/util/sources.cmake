# sources of src/util (the lowest floor: small helpers that include nothing of src/), appended to
# KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/parse_int.cpp
  ${CMAKE_CURRENT_LIST_DIR}/env_switch.cpp)
