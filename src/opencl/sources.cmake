# sources of src/opencl, appended to KVARN_CL_SOURCES (only with KVARN_CL_WITH_OPENCL)
list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/cl_error.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernel_sources.cpp
  ${CMAKE_CURRENT_LIST_DIR}/device_discovery.cpp
  ${CMAKE_CURRENT_LIST_DIR}/icd_loader_environment.cpp
  ${CMAKE_CURRENT_LIST_DIR}/device_runtime.cpp
  ${CMAKE_CURRENT_LIST_DIR}/nvidia_mma_sync.cpp
  ${CMAKE_CURRENT_LIST_DIR}/subgroups.cpp
  ${CMAKE_CURRENT_LIST_DIR}/denormal_decode.cpp
  ${CMAKE_CURRENT_LIST_DIR}/program_binary_cache.cpp
  ${CMAKE_CURRENT_LIST_DIR}/program_table.cpp
  ${CMAKE_CURRENT_LIST_DIR}/codec_program.cpp
  ${CMAKE_CURRENT_LIST_DIR}/attention_program.cpp
  ${CMAKE_CURRENT_LIST_DIR}/kernel_variants.cpp
  ${CMAKE_CURRENT_LIST_DIR}/opencl_backend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/opencl_attend.cpp
  ${CMAKE_CURRENT_LIST_DIR}/opencl_copy_rows.cpp
  ${CMAKE_CURRENT_LIST_DIR}/opencl_check_rows.cpp
  ${CMAKE_CURRENT_LIST_DIR}/opencl_step.cpp
  ${CMAKE_CURRENT_LIST_DIR}/stderr_capture.cpp
  ${CMAKE_CURRENT_LIST_DIR}/device_acceptance.cpp
  ${CMAKE_CURRENT_LIST_DIR}/device_api.cpp)
