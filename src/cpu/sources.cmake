list(APPEND KVARN_CL_SOURCES
  ${CMAKE_CURRENT_LIST_DIR}/fwht.cpp
  ${CMAKE_CURRENT_LIST_DIR}/normalize.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pack.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tile_codec.cpp
  ${CMAKE_CURRENT_LIST_DIR}/batch_codec.cpp
  ${CMAKE_CURRENT_LIST_DIR}/thread_pool.cpp
  ${CMAKE_CURRENT_LIST_DIR}/simd_codec.cpp
  ${CMAKE_CURRENT_LIST_DIR}/simd_decode_attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/decode_attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/exact_attention.cpp
  ${CMAKE_CURRENT_LIST_DIR}/relative_error.cpp
  ${CMAKE_CURRENT_LIST_DIR}/cpu_backend.cpp)
# The SIMD files are compiled once per instruction set by Highway; without fused multiply-add
# contraction, so that dequantize and rotation stay bit-identical to the scalar reference.
if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
  set_source_files_properties(${CMAKE_CURRENT_LIST_DIR}/simd_codec.cpp
    ${CMAKE_CURRENT_LIST_DIR}/simd_decode_attention.cpp PROPERTIES COMPILE_OPTIONS "-ffp-contract=off")
endif()
