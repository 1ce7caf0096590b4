# Packaging and operations: man pages against the code and --help, systemd
# units and socket activation, firmanted --check-config permission checks,
# the Debian packages installed/used/purged for real (root only), the RPMs.
set(FIRMANTE_PACKAGE_TESTS docs systemd checkconfig deb rpm)
foreach(t ${FIRMANTE_PACKAGE_TESTS})
  add_test(NAME package_${t} COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_package_${t}.sh)
  set_tests_properties(package_${t} PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 300)
endforeach()
# Whole package builds: one at a time, nothing else running beside them.
set_tests_properties(package_deb PROPERTIES TIMEOUT 1500 RUN_SERIAL TRUE SKIP_RETURN_CODE 77)
set_tests_properties(package_rpm PROPERTIES TIMEOUT 900 RUN_SERIAL TRUE)
