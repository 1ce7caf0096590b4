# Unit tests of the title room (submitter/).
firmante_unit_test(test_titulo SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo.c
                   LIBS firmante-titulo)
firmante_unit_test(test_titulo_verify SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo_verify.c
                   LIBS firmante-titulo)
firmante_unit_test(test_titulo_build SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo_build.c
                   LIBS firmante-titulo)
# fm_batch, the CSV read in chunks and the builder's two readings.
firmante_unit_test(test_titulo_stream SOURCES ${CMAKE_CURRENT_SOURCE_DIR}/unit/test_titulo_stream.c
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

# The rule table in docs/titulos.md is the output of `titulos codes
# --markdown`: the documentation cannot drift from the code's table.
set(TITULOS_CODES_DOCS_SCRIPT [=[
set -eu
doc="$2/docs/titulos.md"
grep -q '^<!-- rules:begin -->$' "$doc" && grep -q '^<!-- rules:end -->$' "$doc" \
  || { echo "$doc: rules:begin/rules:end markers missing"; exit 1; }
sed -n '/^<!-- rules:begin -->$/,/^<!-- rules:end -->$/p' "$doc" | sed '1d;$d' > "$3.doc"
"$1" codes --markdown > "$3.code"
diff -u "$3.code" "$3.doc" || { echo "docs/titulos.md: the rule table differs from 'titulos codes --markdown'; paste the program's output between the markers"; exit 1; }
n=$(grep -c '^| `' "$3.code")
[ "$n" -ge 60 ] || { echo "only $n rules"; exit 1; }
rm -f "$3.doc" "$3.code"
echo "docs/titulos.md: $n rules, same as the code"
]=])
add_test(NAME titulos_codes_docs
         COMMAND sh -c "${TITULOS_CODES_DOCS_SCRIPT}" titulos_codes_docs
                 $<TARGET_FILE:titulos> ${CMAKE_SOURCE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/titulos-codes-docs)
set_tests_properties(titulos_codes_docs PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 60)

# titulos sign stops before asking the agent for a sello when a signer's
# key does not fit (CURP differs from the certificate's, CSD, expired, not
# listed); a stand-in agent answers GET /v1/keys and records requests.
add_test(NAME titulos_sign_key_checks
         COMMAND sh ${CMAKE_CURRENT_SOURCE_DIR}/unit/titulos_sign_checks.sh
                 $<TARGET_FILE:titulos> ${CMAKE_SOURCE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/titulos-sign-checks)
set_tests_properties(titulos_sign_key_checks PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 120)

# The CLI on registrars' files: --skip-invalid writes the valid rows and
# lists the others (exit 1); --json is JSON with rule codes; show and show
# --json on a built title; verify names the wrongly written element of a
# third-party title.
set(TITULOS_CLI_SCRIPT [=[
set -eu
t="$1"; src="$2"; w="$3"; rm -rf "$w"; mkdir -p "$w"
conf="$src/examples/institucion.conf"
head -3 "$src/examples/egresados.csv" > "$w/in.csv"
sed -n 4p "$src/examples/egresados.csv" | sed 's/,4,14,2012/,4,7,2012/' >> "$w/in.csv"
sed -n 5p "$src/examples/egresados.csv" >> "$w/in.csv"
set +e
"$t" build --config "$conf" --csv "$w/in.csv" --out "$w/none" 2>"$w/err"; rc=$?
set -e
[ $rc -eq 1 ] && [ ! -e "$w/none" ] || { echo "errors: exit $rc or files written"; exit 1; }
grep -q "in.csv:4:19: idEntidadFederativaAntecedente: '7' is not a two-digit entity id: write 07" "$w/err" \
  || { echo "entity 7 not reported"; cat "$w/err"; exit 1; }
set +e
"$t" build --config "$conf" --csv "$w/in.csv" --out "$w/some" --skip-invalid >"$w/out" 2>/dev/null; rc=$?
set -e
[ $rc -eq 1 ] || { echo "--skip-invalid: exit $rc"; exit 1; }
grep -q "left out for errors (--skip-invalid): 4" "$w/out" || { echo "skipped row not listed"; cat "$w/out"; exit 1; }
[ "$(ls "$w/some" | wc -l)" -eq 3 ] && [ ! -e "$w/some/UVC-2025-0003.xml" ] || { echo "wrong files written"; exit 1; }
set +e
"$t" build --json --config "$conf" --csv "$w/in.csv" --out "$w/json" >"$w/json.out" 2>/dev/null
set -e
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); f=d["findings"][0]; assert d["errors"]==1 and f["rule"]=="entity-two-digits" and f["row"]==4 and f["column"]==19 and d["written"] is None, d' "$w/json.out"
"$t" show "$w/some/UVC-2025-0001.xml" | grep -q "folioControl UVC-2025-0001"
"$t" show --json "$w/some/UVC-2025-0001.xml" | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["Profesionista"]["curp"]=="GAHM980312MDFRRR06" and len(d["FirmaResponsables"])==2, d'
sed 's/FirmaResponsables>/firmaResponsables>/g' "$w/some/UVC-2025-0001.xml" > "$w/other.xml"
set +e
"$t" verify "$w/other.xml" >"$w/verify.out"; rc=$?
"$t" show "$w/other.xml" 2>"$w/show.err" >/dev/null; rc2=$?
set -e
[ $rc -eq 1 ] && [ $rc2 -eq 1 ] || { echo "verify/show of a bad title: exit $rc/$rc2"; exit 1; }
grep -q "firmaResponsables: element 'firmaResponsables' is wrongly written: the standard names it 'FirmaResponsables'" "$w/verify.out" \
  || { echo "verify: wrong element not named"; cat "$w/verify.out"; exit 1; }
grep -q "the standard names it 'FirmaResponsables'" "$w/show.err" || { echo "show: not diagnosed"; exit 1; }
"$t" codes | grep -q "^signer-curp-mismatch"
echo "titulos CLI: skip-invalid, json, show, verify of another system's title"
]=])
add_test(NAME titulos_cli
         COMMAND sh -c "${TITULOS_CLI_SCRIPT}" titulos_cli
                 $<TARGET_FILE:titulos> ${CMAKE_SOURCE_DIR}
                 ${CMAKE_CURRENT_BINARY_DIR}/titulos-cli)
set_tests_properties(titulos_cli PROPERTIES ENVIRONMENT "${FIRMANTE_TEST_ENV}" TIMEOUT 120)
