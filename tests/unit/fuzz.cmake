# Fuzz targets (tests/fuzz/): corpus replay in every build; libFuzzer
# targets with -DFIRMANTE_FUZZ=ON (clang). See tests/fuzz/README.md.
add_subdirectory(${CMAKE_CURRENT_SOURCE_DIR}/fuzz ${CMAKE_BINARY_DIR}/tests/fuzz)
