# sources of src/backend, appended to KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES)
list(APPEND KVARN_CL_SOURCES ${CMAKE_CURRENT_LIST_DIR}/cpu_backend.cpp)
list(APPEND KVARN_CL_SOURCES ${CMAKE_CURRENT_LIST_DIR}/make_backend.cpp)  # OpenCL backend engineer
list(APPEND KVARN_CL_SOURCES ${CMAKE_CURRENT_LIST_DIR}/backend_checks.cpp)
