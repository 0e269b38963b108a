# sources of src/cache, appended to KVARN_CL_SOURCES (kv_cache_impl.hpp says which file does what)
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/append_plan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/step_plan.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_step.cpp
  ${CMAKE_CURRENT_LIST_DIR}/block_pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cache_config.cpp
  ${CMAKE_CURRENT_LIST_DIR}/input_checks.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_append.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_attend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_commit.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_construction.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_sequences.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kv_cache_snapshot.cpp
  ${CMAKE_CURRENT_LIST_DIR}/layer_presets.cpp
  ${CMAKE_CURRENT_LIST_DIR}/materialize_gather.cpp
  ${CMAKE_CURRENT_LIST_DIR}/memory_report.cpp)
