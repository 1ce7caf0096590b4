#!/usr/bin/env bash
# End to end: scripts/demo on the tree just built (fresh SoftHSM2 token, real
# firmanted, titulos build/sign/verify), then independent assertions:
#  - at least 10 signed titles, each valid against the official XSD (xmllint);
#  - every sello verifies with openssl over a cadena rebuilt outside our C code;
#  - the keys on the demo token are CKA_SENSITIVE and not CKA_EXTRACTABLE;
#  - titulos verify fails, naming the FirmaResponsable, when any one cadena
#    field of a signed title is changed afterwards;
#  - registration on the MET sandbox: every signed title registered, exactly
#    once in the sandbox's own records; the demo's deliberately bad title
#    rejected with the sandbox's reason.
set -euo pipefail
SRC=${FIRMANTE_SOURCE_DIR:?}; BIN=${FIRMANTE_BINARY_DIR:?}; S=${FIRMANTE_SHARED_DIR:?}
demo=$BIN/e2e-demo
export FIRMANTE_BUILD_DIR=$BIN FIRMANTE_DEMO_DIR=$demo
"$SRC/scripts/demo" --no-build

signed=("$demo"/signed/*.xml)
n=${#signed[@]}
[ "$n" -ge 10 ] || { echo "only $n signed titles"; exit 1; }
xmllint --noout --schema "$S/spec/TituloElectronico.xsd" "${signed[@]}"
"$SRC/tests/tools/check-titulo" --xsd "$S/spec/TituloElectronico.xsd" "${signed[@]}" | tail -n 1

# Keys generated on the token are sensitive and not extractable.
SOFTHSM2_CONF=$demo/token/softhsm2.conf /usr/bin/python3 - "$(cat "$demo/pin")" <<'PY'
import sys, PyKCS11
lib = PyKCS11.PyKCS11Lib(); lib.load("/usr/lib/softhsm/libsofthsm2.so")
slot = [s for s in lib.getSlotList(tokenPresent=True)
        if lib.getTokenInfo(s).label.strip() == "firmante-demo"][0]
sess = lib.openSession(slot); sess.login(sys.argv[1])
keys = sess.findObjects([(PyKCS11.CKA_CLASS, PyKCS11.CKO_PRIVATE_KEY)])
assert len(keys) == 2, keys
for k in keys:
    sens, extr = sess.getAttributeValue(k, [PyKCS11.CKA_SENSITIVE, PyKCS11.CKA_EXTRACTABLE])
    assert sens is True and extr is False, (sens, extr)
sess.logout()
print("demo keys: CKA_SENSITIVE=true CKA_EXTRACTABLE=false (%d keys)" % len(keys))
PY

# The PIN never shows up in the agent's log or the dialog log.
pin=$(cat "$demo/pin")
! grep -rqF -- "$pin" "$demo/firmanted.log" "$demo/pinentry.log"

# Tampering with any one cadena field is caught and the responsible named.
tamper() { # attribute-regex replacement description
  local f=$demo/tampered.xml
  cp "${signed[0]}" "$f"
  sed -i -E "$1" "$f"
  if cmp -s "$f" "${signed[0]}"; then echo "tamper '$1' changed nothing"; exit 1; fi
  set +e
  out=$("$BIN/submitter/titulos" verify "$f" 2>&1)
  rc=$?
  set -e
  if [ $rc -eq 0 ]; then echo "titulos verify accepted a title with $2 changed"; exit 1; fi
  echo "$out" | grep -q "FirmaResponsable" || { echo "no FirmaResponsable named for $2: $out"; exit 1; }
  echo "tampered $2: refused"
}
tamper 's/(<Profesionista[^>]* nombre=")([^"]*)"/\1X\2"/' "Profesionista/@nombre"
tamper 's/fechaExpedicion="[0-9-]*"/fechaExpedicion="2001-01-01"/' "Expedicion/@fechaExpedicion"
tamper 's/folioControl="([^"]*)"/folioControl="\1X"/' "@folioControl"
tamper 's/(<Institucion[^>]* nombreInstitucion=")([^"]*)"/\1\2 S.C."/' "Institucion/@nombreInstitucion"
# Registration on the MET sandbox (the demo's last step).
met=$demo/met
"$BIN/submitter/titulos" results --json --state "$met/titulos.db" > "$met/results.json"
"$SRC/tests/met_sandbox/met_sandbox.py" records --state "$met/sandbox-state" > "$met/records.json"
/usr/bin/python3 - "$met/results.json" "$met/records.json" "${signed[@]}" <<'PY'
import json, os, sys
res = {r["folioControl"]: r for r in json.load(open(sys.argv[1]))}
regs = json.load(open(sys.argv[2]))["registrations_by_folio"]
folios = [os.path.basename(p)[:-4] for p in sys.argv[3:]]
for f in folios:
    assert res[f]["status"] == "registered", res[f]
    assert res[f]["message"] == "Título electrónico registrado exitosamente", res[f]
    assert regs.get(f) == 1, (f, regs.get(f))
bad = [r for f, r in res.items() if f.endswith("-MAL")]
assert len(bad) == 1 and bad[0]["status"] == "rejected", bad
assert bad[0]["message"].startswith("Nombre de carrera no válido en el nodo Carrera: "), bad
assert bad[0]["folioControl"] not in regs, regs
print("MET sandbox: %d titles registered once each; %s rejected: %s"
      % (len(folios), bad[0]["folioControl"], bad[0]["message"]))
PY
echo "e2e: $n titles signed and verified"
