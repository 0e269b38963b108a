# Extra ctest entries of the tools layer (included by test/CMakeLists.txt after test_tools exists):
# - test_tools runs the real kvarn-cl program, so it gets the program's path and depends on it;
# - reference_cli checks kvarn-cl against the independent Python+numpy reference of SPEC §2
#   (test/reference/check_cli.py).
if(TARGET test_tools)
  target_compile_definitions(test_tools PRIVATE KVARN_CL_TOOL="$<TARGET_FILE:kvarn-cl>")
  add_dependencies(test_tools kvarn-cl)
  if(TARGET kvarn-eval)  # the GGUF reader tests run the real kvarn-eval on crafted files
    target_compile_definitions(test_tools PRIVATE KVARN_CL_EVAL_TOOL="$<TARGET_FILE:kvarn-eval>")
    add_dependencies(test_tools kvarn-eval)
  endif()
endif()

# A Python 3 with numpy: KVARN_CL_PYTHON if given, else the one find_package picks, else the
# system's /usr/bin/python3 (Debian's python3-numpy installs there, while a pyenv or venv python
# found first on PATH may lack numpy).
find_package(Python3 COMPONENTS Interpreter)
set(KVARN_CL_PYTHON "" CACHE FILEPATH "Python 3 interpreter with numpy for the reference check")
set(_kvarn_python "")
foreach(candidate ${KVARN_CL_PYTHON} ${Python3_EXECUTABLE} /usr/bin/python3)
  if(candidate AND EXISTS ${candidate})
    execute_process(COMMAND ${candidate} -c "import numpy"
      RESULT_VARIABLE _kvarn_rc OUTPUT_QUIET ERROR_QUIET)
    if(_kvarn_rc EQUAL 0)
      set(_kvarn_python ${candidate})
      break()
    endif()
  endif()
endforeach()

if(_kvarn_python)
  message(STATUS "reference check: ${_kvarn_python} with numpy")
  add_test(NAME reference_cli
    COMMAND ${_kvarn_python} ${CMAKE_CURRENT_SOURCE_DIR}/reference/check_cli.py
            --kvarn-cl $<TARGET_FILE:kvarn-cl> --backend cpu)
  if(KVARN_CL_WITH_OPENCL)
    # The same check on the OpenCL backend (PoCL in CI): kvarn-cl quantize/dequantize/attend
    # --backend opencl against the reference, SPEC §5 bars. check_cli.py gives its kvarn-cl runs one
    # shared PoCL kernel cache so that each program is compiled once. Every preset once and every
    # head_dim at least once: each geometry is a PoCL compile of its own (minutes in all for the
    # whole grid), and the kernels of every geometry are held to the CPU codec by the opencl suite,
    # the CPU codec of every geometry to this reference by reference_cli.
    add_test(NAME reference_cli_opencl
      COMMAND ${_kvarn_python} ${CMAKE_CURRENT_SOURCE_DIR}/reference/check_cli.py
              --kvarn-cl $<TARGET_FILE:kvarn-cl> --backend opencl
              --configs k4v2_g128:128,k4v4_g128:64,k2v2_g128:256,k4v2_g64:64,k4v4_g64:256)
    set_tests_properties(reference_cli_opencl PROPERTIES TIMEOUT 900)
  endif()
else()
  # Never skip silently: without numpy the entry exists and fails, saying what to install.
  message(WARNING "no Python 3 with numpy found: the reference_cli test will fail "
                  "(install python3-numpy, or set -DKVARN_CL_PYTHON=/path/to/python3)")
  add_test(NAME reference_cli
    COMMAND ${CMAKE_COMMAND} -E echo "reference_cli: no Python 3 with numpy was found at configure time; install python3-numpy and reconfigure")
  set_tests_properties(reference_cli PROPERTIES FAIL_REGULAR_EXPRESSION "no Python 3 with numpy")
endif()
set_tests_properties(reference_cli PROPERTIES TIMEOUT 600)
