#!/usr/bin/python3
"""udev/70-firmante-tokens.rules: syntax, and every device of udev/README.md covered.

Without udevadm in the test environment, the rules are parsed and evaluated
here with udev's own matching rules for the keys they use (ACTION,
SUBSYSTEM, ENV{...}, ATTR{...}, TAG, GOTO, LABEL; values are shell globs
with "|" separating alternatives). Each device of the README's table is run
through the rules as an "add" event of a usb_device and must come out
tagged "uaccess"; an unlisted vendor-class device must not.
"""

import fnmatch
import os
import re
import sys

SRC = os.environ.get("FIRMANTE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
RULES = os.path.join(SRC, "udev", "70-firmante-tokens.rules")
README = os.path.join(SRC, "udev", "README.md")

failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


PAIR = re.compile(r'\s*([A-Z_]+)(\{[A-Za-z0-9_]+\})?\s*(==|!=|\+=|-=|:=|=)\s*"([^"]*)"\s*(,|$)')
MATCH_KEYS = {"ACTION", "SUBSYSTEM", "ENV", "ATTR", "ATTRS", "KERNEL", "DRIVER"}
ASSIGN_KEYS = {"TAG", "GOTO", "LABEL", "ENV"}


def parse(path):
    rules = []
    for no, line in enumerate(open(path, encoding="utf-8"), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        pairs, pos = [], 0
        while pos < len(line):
            m = PAIR.match(line, pos)
            if not m:
                raise ValueError(f"{path}:{no}: cannot parse at column {pos + 1}: {line[pos:]!r}")
            key, attr, op, val = m.group(1), m.group(2), m.group(3), m.group(4)
            if op in ("==", "!="):
                if key not in MATCH_KEYS:
                    raise ValueError(f"{path}:{no}: {key} cannot be matched")
            elif key not in ASSIGN_KEYS:
                raise ValueError(f"{path}:{no}: {key} cannot be assigned")
            if key in ("ENV", "ATTR", "ATTRS") and not attr:
                raise ValueError(f"{path}:{no}: {key} needs {{name}}")
            if key == "TAG" and val != "uaccess":
                raise ValueError(f"{path}:{no}: unexpected tag {val}")
            pairs.append((key, attr[1:-1] if attr else None, op, val))
            pos = m.end()
        rules.append((no, pairs))
    return rules


def glob_match(value, pattern):
    return any(fnmatch.fnmatchcase(value, p) for p in pattern.split("|"))


def evaluate(rules, dev):
    """Tags given to device @dev (a dict of ACTION, SUBSYSTEM, ENV{}, ATTR{})."""
    tags, goto = set(), None
    for _, pairs in rules:
        if goto:
            if pairs[0][0] == "LABEL" and pairs[0][3] == goto:
                goto = None
            continue
        ok = True
        for key, attr, op, val in pairs:
            if op not in ("==", "!="):
                continue
            have = dev.get(f"{key}{{{attr}}}" if attr else key, "")
            if glob_match(have, val) != (op == "=="):
                ok = False
                break
        if not ok:
            continue
        for key, attr, op, val in pairs:
            if key == "TAG" and op == "+=":
                tags.add(val)
            elif key == "GOTO":
                goto = val
    return tags


def readme_devices():
    devs = []
    for line in open(README, encoding="utf-8"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("device", "---") or set(cells[0]) <= set("-"):
            continue
        for vp in cells[1].split(","):
            devs.append((cells[0], vp.strip()))
    return devs


def usb_device(vid, pid, interfaces=":ff0000:"):
    return {"ACTION": "add", "SUBSYSTEM": "usb", "ENV{DEVTYPE}": "usb_device",
            "ATTR{idVendor}": vid, "ATTR{idProduct}": pid, "ENV{ID_USB_INTERFACES}": interfaces}


def main():
    try:
        rules = parse(RULES)
        check(True, f"rules parse ({len(rules)} rules)")
    except ValueError as e:
        check(False, f"rules parse: {e}")
        return 1
    labels = [p[3] for _, ps in rules for p in ps if p[0] == "LABEL"]
    gotos = [p[3] for _, ps in rules for p in ps if p[0] == "GOTO"]
    check(all(g in labels for g in gotos), "every GOTO has its LABEL")
    check(os.path.basename(RULES) < "73-seat-late.rules",
          "the file sorts before 73-seat-late.rules (uaccess takes effect)")
    text = open(RULES, encoding="utf-8").read()
    check("MODE" not in text and "GROUP" not in text, "no MODE/GROUP: access only through uaccess")

    devs = readme_devices()
    check(len(devs) >= 12, f"README lists the devices ({len(devs)})")
    for name, vp in devs:
        if vp == "*":
            dev = usb_device("dead", "beef", ":0b0000:")
        else:
            vid, pid = vp.split(":")
            dev = usb_device(vid, "1234" if pid == "*" else pid)
        check("uaccess" in evaluate(rules, dev), f"{name} ({vp}) tagged uaccess")
    check(not evaluate(rules, usb_device("dead", "beef")),
          "an unlisted vendor-class USB device is not tagged")
    check(not evaluate(rules, usb_device("1050", "0113")),
          "a YubiKey without CCID (1050:0113) is not tagged")
    dev = usb_device("096e", "0807")
    dev["ACTION"] = "remove"
    check(not evaluate(rules, dev), "remove events are ignored")
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
