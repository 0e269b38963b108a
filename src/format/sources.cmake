list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/error.cpp
  ${CMAKE_CURRENT_LIST_DIR}/half.cpp
  ${CMAKE_CURRENT_LIST_DIR}/preset.cpp
  ${CMAKE_CURRENT_LIST_DIR}/printable.cpp
  ${CMAKE_CURRENT_LIST_DIR}/record_check.cpp
  ${CMAKE_CURRENT_LIST_DIR}/record_layout.cpp
  ${CMAKE_CURRENT_LIST_DIR}/rotation_scale.cpp)
