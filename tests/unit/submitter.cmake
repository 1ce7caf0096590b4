# Unit tests of the title room (submitter/).
firmante_unit_test(test_titulo SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo.c
                   LIBS firmante-titulo)
firmante_unit_test(test_titulo_verify SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo_verify.c
                   LIBS firmante-titulo)
firmante_unit_test(test_titulo_build SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo_build.c
                   LIBS firmante-titulo)

# titulos build on the examples writes one file per graduate (named by
# folioControl); nothing is written for a bad CSV; usage errors exit 2;
# signing without an agent exits 3 and writes nothing.
set(TITULOS_BUILD_SCRIPT [=[
set -eu
out="$3"; rm -rf "$out"
"$1" build --help >/dev/null
"$1" build --config "$2/examples/institucion.conf" --csv "$2/examples/egresados.csv" --out "$out"
rows=$(tail -n +2 "$2/examples/egresados.csv" | grep -c .)
files=$(ls "$out"/*.xml | wc -l)
[ "$rows" -eq "$files" ] || { echo "expected $rows files, got $files"; exit 1; }
for folio in $(tail -n +2 "$2/examples/egresados.csv" | cut -d, -f1); do
  [ -s "$out/$folio.xml" ] || { echo "missing $out/$folio.xml"; exit 1; }
done
set +e
"$1" verify "$out/$folio.xml" >/dev/null; rc=$?
[ $rc -eq 1 ] || { echo "verify of an unsigned title: exit $rc, expected 1"; exit 1; }
"$1" build --csv x >/dev/null 2>&1; rc=$?
[ $rc -eq 2 ] || { echo "usage error: exit $rc, expected 2"; exit 1; }
printf 'folioControl,curp\nA,B\n' > "$out.bad.csv"
"$1" build --config "$2/examples/institucion.conf" --csv "$out.bad.csv" --out "$out.bad" 2>/dev/null; rc=$?
[ $rc -eq 1 ] && [ ! -e "$out.bad" ] || { echo "bad CSV: exit $rc or output written"; exit 1; }
rm -f "$out.bad.csv"
"$1" sign --config "$2/examples/institucion.conf" --in "$out" --out "$out.signed" \
     --socket "$out.no-agent.sock" >/dev/null 2>"$out.sign.err"; rc=$?
[ $rc -eq 3 ] || { echo "sign without an agent: exit $rc, expected 3"; cat "$out.sign.err"; exit 1; }
grep -q "agent" "$out.sign.err" || { echo "sign without an agent: no agent problem printed"; exit 1; }
[ -z "$(ls -A "$out.signed" 2>/dev/null)" ] || { echo "sign without an agent wrote files"; exit 1; }
rm -rf "$out.signed" "$out.sign.err"
echo "titulos build: $files titles"
]=])
add_test(NAME titulos_build_examples
         COMMAND sh -c "${TITULOS_BUILD_SCRIPT}" titulos_build_examples
                 $<TARGET_FILE:titulos> ${CMAKE_SOURCE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/titulos-build-examples)
set_tests_properties(titulos_build_examples PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 120)

# Bad input, one test per rule and per case of issue 3 (rule code, field,
# row and column asserted), the 5,000-row CSV with 50 seeded defects, the
# configuration rules and titles from other systems.
firmante_unit_test(test_rules SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_rules.c
                   LIBS firmante-titulo PkgConfig::OPENSSL)
