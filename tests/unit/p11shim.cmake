# The fault-injecting PKCS#11 test module (tests/p11shim/) and its own test.
add_subdirectory(${CMAKE_CURRENT_SOURCE_DIR}/p11shim ${CMAKE_BINARY_DIR}/tests/p11shim)

firmante_unit_test(test_p11shim
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/p11shim/test_p11shim.c
  LIBS PkgConfig::P11KIT Threads::Threads ${CMAKE_DL_LIBS})
target_compile_definitions(test_p11shim PRIVATE
  P11SHIM_PATH="$<TARGET_FILE:firmante-p11shim>")
add_dependencies(test_p11shim firmante-p11shim)
set_tests_properties(test_p11shim PROPERTIES LABELS "token")
