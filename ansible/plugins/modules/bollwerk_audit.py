#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: bollwerk authors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bollwerk_audit
short_description: Run the bollwerk compliance audit and return its summary as facts
version_added: "1.0.0"
description:
  - Runs C(bollwerk audit --format json) on the target (read-only; also in check mode), writes the
    report to I(dest) on the target and returns the summary as the fact C(bollwerk_audit).
  - Findings (exit 1) are not a failure; exit 2 (bad input) and 3 (failure) fail with bollwerk's
    error and hint.
options:
  dest:
    description: Where to write the JSON report on the target.
    type: path
    required: true
  profile:
    description: Profile the audit relates to (marks covered checks, enables the profile's own checks).
    type: str
  binary:
    description: Path of the bollwerk binary on the target.
    type: path
    default: /usr/sbin/bollwerk
  root:
    description: Target root.
    type: path
    default: /
  level:
    description: Highest CIS level judged.
    type: int
    default: 1
    choices: [1, 2]
author:
  - bollwerk authors
"""

EXAMPLES = r"""
- name: Audit and keep the report
  bollwerk.host.bollwerk_audit:
    dest: /var/lib/bollwerk/audit.json
    profile: /etc/bollwerk/site.toml
"""

RETURN = r"""
ansible_facts:
  description: C(bollwerk_audit) with score, counts per status, failing check ids and the report path.
  returned: always
  type: dict
"""

import json

from ansible.module_utils.basic import AnsibleModule


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            profile=dict(type="str"),
            binary=dict(type="path", default="/usr/sbin/bollwerk"),
            root=dict(type="path", default="/"),
            level=dict(type="int", default=1, choices=[1, 2]),
        ),
        supports_check_mode=True,
    )
    p = module.params
    argv = [p["binary"], "--root", p["root"], "--color", "never", "audit", "--format", "json",
            "--level", str(p["level"]), "--output", p["dest"]]
    if p["profile"]:
        argv += ["--profile", p["profile"]]
    rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C", "NO_COLOR": "1"})
    if rc not in (0, 1):
        text = (err or "").strip() or (out or "").strip()
        module.fail_json(msg="bollwerk audit: %s" % text, rc=rc, stdout=out, stderr=err)
    try:
        with open(p["dest"]) as f:
            report = json.load(f)
    except (IOError, OSError, ValueError) as e:
        module.fail_json(msg="bollwerk audit: cannot read the report %s: %s" % (p["dest"], e))
    s = report.get("summary", {})
    facts = dict(
        report=p["dest"],
        host=report.get("host", {}).get("hostname"),
        score=s.get("score"),
        counts=dict((k, v) for k, v in s.items() if isinstance(v, int)),
        failing=[r.get("id") for r in report.get("results", []) if r.get("status") == "fail"],
        findings=rc == 1,
    )
    # The report file is rewritten on every run; the host itself is never changed.
    module.exit_json(changed=False, ansible_facts=dict(bollwerk_audit=facts))


if __name__ == "__main__":
    main()
