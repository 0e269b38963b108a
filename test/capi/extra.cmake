# The C API header compiled as C99 (not C++), linked against the library, run as its own test.
add_executable(test_capi_c ${CMAKE_CURRENT_LIST_DIR}/c_header_check.c)
set_target_properties(test_capi_c PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF
  LINKER_LANGUAGE CXX)
target_link_libraries(test_capi_c PRIVATE kvarn_cl_static)
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(test_capi_c PRIVATE -Wall -Wextra -Wpedantic)
endif()
add_test(NAME capi_c COMMAND test_capi_c)

# What a careless C caller passes (enum values out of range, bad flags, overflowing sizes).
add_executable(test_capi_c_robustness ${CMAKE_CURRENT_LIST_DIR}/c_robustness_check.c)
set_target_properties(test_capi_c_robustness PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON
  C_EXTENSIONS OFF LINKER_LANGUAGE CXX)
target_link_libraries(test_capi_c_robustness PRIVATE kvarn_cl_static)
if(CMAKE_C_COMPILER_ID MATCHES "GNU|Clang")
  target_compile_options(test_capi_c_robustness PRIVATE -Wall -Wextra -Wpedantic)
endif()
add_test(NAME capi_c_robustness COMMAND test_capi_c_robustness)
