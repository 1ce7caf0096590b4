# The benchmark programs (tests/bench/) and a smoke test that runs the whole
# harness in its tiny mode, so scripts/bench keeps working. It asserts that
# every figure is produced, never how fast anything is.
add_subdirectory(bench)
add_test(NAME bench_smoke
         COMMAND ${CMAKE_SOURCE_DIR}/scripts/bench --no-build --quick --build-dir ${CMAKE_BINARY_DIR}
                 --json ${CMAKE_BINARY_DIR}/bench/smoke-results.json)
set_tests_properties(bench_smoke PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 300
                     RUN_SERIAL TRUE)
