#!/bin/sh
# titulos sign checks every signer's key from the agent's GET /v1/keys
# before it asks for any sello: a CURP that differs from the certificate's
# (both named), a CSD, an expired certificate and a key the agent does not
# list stop the run with status 1, and the agent never sees POST /v1/sign.
# With matching keys titulos goes on to ask the agent (here: refused, 3).
# Usage: titulos_sign_checks.sh TITULOS SOURCE_DIR WORK_DIR
set -eu
titulos=$1; src=$2; work=$3
rm -rf "$work"; mkdir -p "$work"
conf=$src/examples/institucion.conf
"$titulos" build --config "$conf" --csv "$src/examples/egresados.csv" --out "$work/unsigned" >/dev/null

key() { # id curp kind not_after
  printf '{"uri": "pkcs11:model=SoftHSM%%20v2;token=firmante-demo;id=%%%s;type=private", "token": {"label": "firmante-demo", "serial": "1234"}, "id": "%s", "label": "k", "curp": "%s", "no_certificado": "3000100000030000000%s", "not_before": "2010-01-01T00:00:00Z", "not_after": "%s", "kind": "%s", "usable": true}' \
    "$1" "$1" "$2" "${1#0}" "$4" "$3"
}
run() { # name keys-json expected-status
  printf '{"keys": [%s]}\n' "$2" > "$work/keys.json"
  : > "$work/agent.log"
  python3 "$src/tests/unit/titulos_fake_agent.py" "$work/agent.sock" "$work/keys.json" "$work/agent.log" &
  pid=$!
  i=0; while [ ! -S "$work/agent.sock" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
  set +e
  "$titulos" sign --config "$conf" --in "$work/unsigned" --out "$work/signed-$1" \
    --socket "$work/agent.sock" >"$work/$1.out" 2>"$work/$1.err"
  rc=$?
  set -e
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -f "$work/agent.sock"
  [ "$rc" -eq "$3" ] || { echo "$1: exit $rc, expected $3"; cat "$work/$1.err"; exit 1; }
  grep -q "GET /v1/keys" "$work/agent.log" || { echo "$1: keys were not asked for"; exit 1; }
}
no_sign() {
  if grep -q "POST" "$work/agent.log"; then echo "$1: the agent was asked to sign"; exit 1; fi
  [ -z "$(ls -A "$work/signed-$1" 2>/dev/null)" ] || { echo "$1: files written"; exit 1; }
}
far=2099-01-01T00:00:00Z
rector=$(key 01 MEOJ700515HDFNRN00 fiel $far)

# the secretary's certificate holds another CURP: both named, nothing sent
run curp "$rector, $(key 02 ROSL750822MJCDNR09 fiel $far)" 1
no_sign curp
grep -q "ROSL750822MJCDNR01" "$work/curp.err" && grep -q "ROSL750822MJCDNR09" "$work/curp.err" \
  || { echo "curp: both CURPs not named"; cat "$work/curp.err"; exit 1; }
grep -q "firmante secretario" "$work/curp.err" || { echo "curp: signer not named"; exit 1; }

# a CSD instead of an e.firma
run csd "$rector, $(key 02 ROSL750822MJCDNR01 csd $far)" 1
no_sign csd
grep -q "not an e.firma" "$work/csd.err" || { echo "csd: not reported"; cat "$work/csd.err"; exit 1; }

# an expired certificate
run expired "$rector, $(key 02 ROSL750822MJCDNR01 fiel 2020-01-01T00:00:00Z)" 1
no_sign expired
grep -q "not on" "$work/expired.err" || { echo "expired: not reported"; cat "$work/expired.err"; exit 1; }

# a key the agent does not list
run missing "$rector" 1
no_sign missing
grep -q "lists no key" "$work/missing.err" || { echo "missing: not reported"; cat "$work/missing.err"; exit 1; }

# everything right: titulos asks the agent, which refuses (status 3)
run ok "$rector, $(key 02 ROSL750822MJCDNR01 fiel $far)" 3
grep -q "POST /v1/sign" "$work/agent.log" || { echo "ok: the agent was not asked to sign"; exit 1; }
grep -q "user-denied" "$work/ok.err" || { echo "ok: the agent's refusal not shown"; cat "$work/ok.err"; exit 1; }
echo "titulos sign: key checks before signing"
