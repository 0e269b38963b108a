# sources of src/plan (per-layer preset plans, include/kvarn_cl/layer_plan.hpp), appended to
# KVARN_CL_SOURCES. It sits above src/cpu (the codec measures the proxy error) and below the C API.
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/budget.cpp
  ${CMAKE_CURRENT_LIST_DIR}/candidates.cpp
  ${CMAKE_CURRENT_LIST_DIR}/choose_layer_presets.cpp
  ${CMAKE_CURRENT_LIST_DIR}/measure_layer_sensitivity.cpp)
