#!/usr/bin/env bash
# The independent checker (tests/tools/check-titulo) is itself checked against
# the spec's facts: it rebuilds the official example cadena byte for byte and
# verifies the SAT FIEL known-answer sello with openssl, and it reports the
# CURP mismatch that this combination must show.
set -euo pipefail
S=${FIRMANTE_SHARED_DIR:?}; SRC=${FIRMANTE_SOURCE_DIR:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
sello=$(grep -A2 '^```$' "$S/fixtures/sat/README.md" | sed -n 2p)
cert=$(base64 -w0 "$S/fixtures/sat/FIEL_AAA010101AAA/certificate.cer")
sed -e "s|sello=\"PLACEHOLDER\"|sello=\"$sello\"|" \
    -e "s|certificadoResponsable=\"PLACEHOLDER\"|certificadoResponsable=\"$cert\"|" \
    -e 's|00000000000000000000|30001000000300023685|' \
    "$S/spec/examples/oficial-reconstruido-sin-firma.xml" > "$tmp/t.xml"
mkdir "$tmp/cad"
set +e
out=$("$SRC/tests/tools/check-titulo" --xsd "$SRC/data/TituloElectronico.xsd" --cadena-dir "$tmp/cad" "$tmp/t.xml")
rc=$?
set -e
echo "$out"
cmp "$tmp/cad/t.xml.1.cadena.txt" "$S/spec/examples/oficial-cadena-firmaresponsable.txt"
[ $rc -eq 1 ]
# exactly one finding: the CURP; the sello itself verified
[ "$(echo "$out" | grep -c FAIL)" -eq 1 ]
echo "$out" | grep -q "curp differs from the certificate's HEGT761003MDFRNN09"
# and a changed cadena field makes openssl refuse the sello
sed -i 's/nombre="ANTONIO"/nombre="ANTONIA"/' "$tmp/t.xml"
out=$("$SRC/tests/tools/check-titulo" --xsd "$SRC/data/TituloElectronico.xsd" "$tmp/t.xml" || true)
echo "$out" | grep -q "openssl does not verify the sello"
# the project's XSD copy is the official one
echo "c849dcb340b80f412611b9dcb79333e20f6fbab4e2802897c8f69dc1cced30cc  $SRC/data/TituloElectronico.xsd" | sha256sum -c -
echo "check-titulo: ok"
