#!/usr/bin/env python3
"""Widen ComplianceAsCode's Ubuntu 22.04 platform check so that it also evaluates Debian 12.

Usage: widen-ssg-platform.py IN_DS.xml OUT_DS.xml

The Ubuntu 22.04 datastream decides "this is Ubuntu 22.04" from /etc/lsb-release
(DISTRIB_ID=Ubuntu, DISTRIB_CODENAME=jammy), which Debian 12 does not have. We read
/etc/os-release instead and accept ID=debian / VERSION_CODENAME=bookworm beside Ubuntu's values.
Nothing else in the content changes. Each replacement must match (the script fails loudly when a
newer content release changes the form), so the widening never silently does nothing.
"""
import sys

REPLACEMENTS = [
    # "/etc/lsb-release exists" -> "/etc/os-release exists"
    (
        '<unix:filepath>/etc/lsb-release</unix:filepath>',
        '<unix:filepath>/etc/os-release</unix:filepath>',
    ),
    # DISTRIB_ID=Ubuntu -> ID=ubuntu or ID=debian
    (
        '<ind:filepath>/etc/lsb-release</ind:filepath>\n'
        '          <ind:pattern operation="pattern match">^DISTRIB_ID=Ubuntu$</ind:pattern>',
        '<ind:filepath>/etc/os-release</ind:filepath>\n'
        '          <ind:pattern operation="pattern match">^ID=(ubuntu|debian)$</ind:pattern>',
    ),
    # DISTRIB_CODENAME=jammy -> VERSION_CODENAME=jammy or bookworm
    (
        '<ind:filepath>/etc/lsb-release</ind:filepath>\n'
        '          <ind:pattern operation="pattern match">^DISTRIB_CODENAME=jammy$</ind:pattern>',
        '<ind:filepath>/etc/os-release</ind:filepath>\n'
        '          <ind:pattern operation="pattern match">^VERSION_CODENAME=(jammy|bookworm)$</ind:pattern>',
    ),
]


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        text = f.read()
    for old, new in REPLACEMENTS:
        n = text.count(old)
        if n == 0:
            sys.exit(f"widen-ssg-platform: pattern not found (content changed?): {old!r}")
        text = text.replace(old, new)
    with open(dst, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
