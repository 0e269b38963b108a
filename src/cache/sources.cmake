# sources of src/cache, appended to KVARN_CL_SOURCES
list(APPEND KVARN_CL_SOURCES)
