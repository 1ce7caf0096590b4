# Onboarding rules and records without a token or a network: signer
# certificates refused by titulos alta, days, career level, folioDigital,
# profile readiness, QA checks, certificates, authenticated titles.
firmante_unit_test(test_alta SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_alta.c
                   LIBS firmante-met)
