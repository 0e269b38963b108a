# sources of src/cache, appended to KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/block_pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache.cpp
  ${CMAKE_CURRENT_LIST_DIR}/layer_presets.cpp)
