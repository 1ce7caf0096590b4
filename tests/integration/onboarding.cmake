# Onboarding with the DGP and DGAIR: titulos alta (workbook read with
# openpyxl, .cer equal to the token's objects, refusals), the production
# guard, qa-check against the MET sandbox, dgair import.
add_test(NAME onboarding
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/integration/test_onboarding.py)
set_tests_properties(onboarding PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 600)
