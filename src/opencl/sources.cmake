# sources of src/opencl, appended to KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES)
