list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/fwht.cpp
  ${CMAKE_CURRENT_LIST_DIR}/normalize.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pack.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tile_codec.cpp
  ${CMAKE_CURRENT_LIST_DIR}/batch_codec.cpp)
list(APPEND KVARN_CL_SOURCES ${CMAKE_CURRENT_LIST_DIR}/attention.cpp)  # cache/API engineer
