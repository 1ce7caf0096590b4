# Tests of the token room (pkcs11/) and of SAT certificate parsing (common/satcert.c).
firmante_unit_test(test_satcert
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_satcert.c
  LIBS firmante-common PkgConfig::OPENSSL)

# test_pkcs11 makes a fresh SoftHSM2 token with tests/tools/fm-testtoken.
firmante_unit_test(test_pkcs11
  SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_pkcs11.c
  LIBS firmante-pkcs11 firmante-common PkgConfig::OPENSSL PkgConfig::P11KIT)
set_tests_properties(test_pkcs11 PROPERTIES LABELS "token")
# Fault injection through the p11shim module, when the tree builds it.
if(TARGET firmante-p11shim)
  target_compile_definitions(test_pkcs11 PRIVATE P11SHIM_PATH="$<TARGET_FILE:firmante-p11shim>")
  add_dependencies(test_pkcs11 firmante-p11shim)
endif()
