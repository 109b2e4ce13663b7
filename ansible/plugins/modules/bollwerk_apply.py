#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: bollwerk authors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: bollwerk_apply
short_description: Validate, plan and apply a bollwerk profile
version_added: "1.0.0"
description:
  - Runs C(bollwerk validate) and C(bollwerk plan --format json) on the target.
  - In check mode it stops there; with C(--diff) the unified diffs of the plan are shown.
  - Otherwise it runs C(bollwerk apply --format json), optionally with C(--confirm), and reports
    C(changed) only when bollwerk changed something.
  - Fails with bollwerk's error and hint when bollwerk exits 2 (bad input, refused) or 3 (failure).
options:
  profile:
    description: Path of the profile on the target, or a built-in profile name.
    type: str
    required: true
  binary:
    description: Path of the bollwerk binary on the target.
    type: path
    default: /usr/sbin/bollwerk
  root:
    description: Target root (C(/) for the host itself, or an image / chroot directory).
    type: path
    default: /
  confirm:
    description:
      - Arm bollwerk's revert timer for this long (C(120s)); the host restores its previous state
        unless C(bollwerk confirm) runs in time. Run that confirmation over a new connection.
      - Only on a live host (C(root=/)).
    type: str
  force:
    description: Apply even when a lockout guard refuses (never in a playbook you did not read).
    type: bool
    default: false
author:
  - bollwerk authors
"""

EXAMPLES = r"""
- name: Apply the host's profile, confirm over a new connection
  bollwerk.host.bollwerk_apply:
    profile: /etc/bollwerk/site.toml
    confirm: 120s
  register: applied
"""

RETURN = r"""
changes:
  description: What bollwerk changed (module and summary), or would change in check mode.
  returned: always
  type: list
  elements: dict
run_id:
  description: The journal id of the run (for C(bollwerk rollback)).
  returned: when something changed
  type: str
confirm_pending:
  description: A revert timer is armed; run C(bollwerk confirm) before it expires.
  returned: always
  type: bool
refusals:
  description: Why bollwerk refuses the plan (lockout guard).
  returned: always
  type: list
"""

import json

from ansible.module_utils.basic import AnsibleModule


def run(module, argv):
    rc, out, err = module.run_command(argv, environ_update={"LC_ALL": "C", "NO_COLOR": "1"})
    return rc, out, err


def failed(module, what, rc, out, err, **extra):
    """Fails with bollwerk's own message (error line and hint) on exit 2 or 3."""
    text = (err or "").strip() or (out or "").strip()
    kind = {2: "bad input or refused", 3: "failure"}.get(rc, "exit %d" % rc)
    module.fail_json(
        msg="bollwerk %s: %s" % (what, text),
        rc=rc,
        stdout=out,
        stderr=err,
        bollwerk_exit=kind,
        **extra
    )


def diffs(plan):
    """Ansible diff entries with bollwerk's unified diffs."""
    out = []
    for c in plan.get("changes", []):
        d = c.get("diff") or ""
        header = "%s: %s" % (c.get("module", ""), c.get("summary", ""))
        if not d:
            d = "# %s\n" % header
        out.append({"before_header": c.get("path") or header, "after_header": c.get("path") or header, "prepared": d})
    return out


def main():
    module = AnsibleModule(
        argument_spec=dict(
            profile=dict(type="str", required=True),
            binary=dict(type="path", default="/usr/sbin/bollwerk"),
            root=dict(type="path", default="/"),
            confirm=dict(type="str"),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    p = module.params
    base = [p["binary"], "--root", p["root"], "--color", "never"]

    rc, out, err = run(module, base + ["validate", "--profile", p["profile"]])
    if rc != 0:
        failed(module, "validate", rc, out, err)

    rc, out, err = run(module, base + ["plan", "--profile", p["profile"], "--format", "json"])
    if rc not in (0, 1, 2) or not out.strip():
        failed(module, "plan", rc, out, err)
    try:
        plan = json.loads(out)
    except ValueError:
        failed(module, "plan (not JSON)", rc, out, err)
    refusals = plan.get("refusals", [])
    changes = [{"module": c.get("module"), "summary": c.get("summary")} for c in plan.get("changes", [])]
    if refusals and not p["force"]:
        r = refusals[0]
        module.fail_json(
            msg="bollwerk refused: %s\n  nothing was changed\n  hint: %s" % (r.get("reason"), r.get("hint")),
            rc=2,
            refusals=refusals,
            changes=changes,
        )

    if module.check_mode:
        result = dict(changed=bool(changes), changes=changes, refusals=refusals, confirm_pending=False)
        if module._diff:
            result["diff"] = diffs(plan)
        module.exit_json(**result)

    argv = base + ["apply", "--profile", p["profile"], "--format", "json"]
    if p["confirm"] and changes:
        argv += ["--confirm", p["confirm"]]
    if p["force"]:
        argv.append("--force")
    rc, out, err = run(module, argv)
    if rc != 0:
        failed(module, "apply", rc, out, err, changes=changes)
    try:
        rep = json.loads(out)
    except ValueError:
        failed(module, "apply (not JSON)", rc, out, err)
    applied = list(rep.get("changes", []))
    follow = rep.get("follow_up") or {}
    applied += follow.get("changes", [])
    result = dict(
        changed=bool(applied),
        changes=applied,
        run_id=rep.get("run_id"),
        refusals=[],
        confirm_pending=bool(p["confirm"] and applied),
        stderr=err,
    )
    if module._diff:
        result["diff"] = diffs(plan)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
