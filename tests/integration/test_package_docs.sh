#!/usr/bin/env bash
# The man pages agree with the code:
#  - every key agent/config.c accepts (and every key of the policy file,
#    agent/policy.c, when there is one) is described in firmanted.conf(5),
#    and every key firmanted.conf(5) describes is accepted by the code;
#  - every long option of firmanted --help is in firmanted(8);
#  - every command and long option of firmante --help is in firmante(1);
#  - every command of titulos --help, and every long option of each
#    command's --help, is in titulos(1);
#  - every page converts with scdoc.
set -euo pipefail
SRC=${FIRMANTE_SOURCE_DIR:?}; BIN=${FIRMANTE_BINARY_DIR:?}
man=$SRC/docs/man
for p in "$man"/*.scd; do
  scdoc < "$p" > /dev/null || { echo "scdoc rejects $p"; exit 1; }
done
/usr/bin/python3 - "$SRC" "$BIN" <<'PY'
import os, re, subprocess, sys
src, bin_ = sys.argv[1], sys.argv[2]
man = os.path.join(src, "docs", "man")
failures = []

def page(name):
    return open(os.path.join(man, name), encoding="utf-8").read()

def keys_in_code(path):
    text = open(path, encoding="utf-8").read()
    keys = re.findall(r'strcmp\(\s*name\s*,\s*"([a-z0-9-]+)"\s*\)', text)
    keys += re.findall(r'\{\s*"([a-z][a-z0-9-]*)"\s*,\s*(?:KEY_|CFG_|AGENT_KEY)', text)
    return sorted(set(keys))

conf5 = page("firmanted.conf.5.scd")
# A key is described by a definition line "*key* = ..." in the page.
documented = set(re.findall(r'^\*([a-z0-9-]+)\* =', conf5, re.M))
code_keys = set()
for f in ("config.c", "policy.c"):
    p = os.path.join(src, "agent", f)
    if not os.path.exists(p):
        continue
    keys = keys_in_code(p)
    if f == "config.c" and not keys:
        failures.append("found no configuration keys in agent/config.c (did its form change?)")
    code_keys.update(keys)
    for k in keys:
        if k not in documented:
            failures.append(f"agent/{f} accepts key '{k}' but docs/man/firmanted.conf.5.scd does not describe it (add a '*{k}* = ...' entry with its default)")
for k in sorted(documented - code_keys):
    failures.append(f"docs/man/firmanted.conf.5.scd describes key '{k}' that agent/config.c and agent/policy.c do not accept")
print(f"firmanted.conf(5): {len(code_keys)} keys in the code, {len(documented)} described")

def help_text(*argv):
    r = subprocess.run(list(argv), capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        failures.append(f"{' '.join(argv)} exited {r.returncode}")
    return r.stdout

def long_options(text):
    return sorted(set(re.findall(r'(?<![\w-])(--[a-z][a-z0-9-]*)', text)))

def commands(text):
    # Lines "  NAME  description" after a "Commands:" heading.
    out, inside = [], False
    for line in text.splitlines():
        if re.match(r'^Commands?:', line):
            inside = True
            continue
        if inside:
            if not line.strip():
                break
            m = re.match(r'^  ([a-z][a-z-]*)\b', line)
            if m:
                out.append(m.group(1))
    return out

def in_page(text, option):
    # scdoc escapes nothing in "--x"; a bold "*--x*" or "*-x, --x*" both contain it.
    return option in text

agent = os.path.join(bin_, "agent", "firmanted")
client = os.path.join(bin_, "client", "firmante")
titulos = os.path.join(bin_, "submitter", "titulos")

p8 = page("firmanted.8.scd")
for o in long_options(help_text(agent, "--help")):
    if not in_page(p8, o):
        failures.append(f"firmanted --help has {o}, docs/man/firmanted.8.scd does not")

p1 = page("firmante.1.scd")
h = help_text(client, "--help")
for o in long_options(h):
    if not in_page(p1, o):
        failures.append(f"firmante --help has {o}, docs/man/firmante.1.scd does not")
cmds = commands(h)
if not cmds:
    failures.append("found no commands in firmante --help")
for c in cmds:
    if f"*{c}" not in p1:
        failures.append(f"firmante --help has command '{c}', docs/man/firmante.1.scd does not")
    # A command with its own help (the others print the general one).
    r = subprocess.run([client, c, "--help"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, FIRMANTE_SOCKET="/nonexistent/agent.sock"))
    if r.returncode == 0 and r.stdout != h:
        for o in long_options(r.stdout):
            if not in_page(p1, o):
                failures.append(f"firmante {c} --help has {o}, docs/man/firmante.1.scd does not")

pt = page("titulos.1.scd")
h = help_text(titulos, "--help")
cmds = commands(h)
if not cmds:
    failures.append("found no commands in titulos --help")
for c in cmds:
    if f"*{c}*" not in pt:
        failures.append(f"titulos --help has command '{c}', docs/man/titulos.1.scd does not")
    for o in long_options(help_text(titulos, c, "--help")):
        if not in_page(pt, o):
            failures.append(f"titulos {c} --help has {o}, docs/man/titulos.1.scd does not")

for f in failures:
    print("FAIL:", f)
if failures:
    sys.exit(1)
print("man pages agree with the code and --help")
PY
