# sources of src/capi, appended to KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/capi.cpp
  ${CMAKE_CURRENT_LIST_DIR}/last_error.cpp
  ${CMAKE_CURRENT_LIST_DIR}/layer_plan_capi.cpp
  ${CMAKE_CURRENT_LIST_DIR}/version.cpp)
