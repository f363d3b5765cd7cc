#!/usr/bin/python
# -*- coding: utf-8 -*-

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: patch
short_description: Apply or revert a hotpatch live patch in the running processes of a host
description:
  - Runs C(hotpatch apply) or C(hotpatch revert) on the managed host, for the processes selected by C(pids)
    (default every process that maps the patch's target, matched by build-id) and C(exe).
  - Idempotent. C(hotpatch status --json) says which selected processes already are in the wanted state;
    when all are, nothing runs and the result is C(changed=false). Otherwise the CLI decides per process and
    its JSON report is returned.
  - In check mode the module runs the CLI's dry run (C(--dry-run)), which does every check of the real run,
    the consistency check in a real stop window included, and changes nothing.
  - A failure fails the host with the CLI's one-line reason; C(rc) is the CLI's exit code (see the hotpatch README).
version_added: "0.1.0"
author: hotpatch maintainers
options:
  src:
    description: Path of the patch file (C(.hp)) on the managed host.
    type: path
    required: true
  state:
    description: C(applied) applies the patch, C(reverted) takes it out again.
    type: str
    choices: [applied, reverted]
    default: applied
  pids:
    description: The processes to work on. Default every process of the host that maps the patch's target (apply) or has the patch (revert).
    type: list
    elements: int
  exe:
    description: Only processes whose executable is this file (C(--exe)).
    type: path
  trust:
    description: Public keys (paths on the managed host) to trust for the patch's signature (C(--trust)), besides C(/etc/hotpatch/trusted.d).
    type: list
    elements: path
    default: []
  allow_unsigned:
    description: Apply a patch that is unsigned or signed by an untrusted key (C(--allow-unsigned)).
    type: bool
    default: false
  consistency:
    description: The consistency model (C(--consistency)).
    type: str
    choices: [stack, entry]
  timeout:
    description: How long to keep retrying while patching is not safe, as a Go duration such as C(10s) (C(--timeout)).
    type: str
  all_or_none:
    description: If any process fails, revert the others (C(--all-or-none); apply only).
    type: bool
    default: false
  hotpatch_bin:
    description: The hotpatch executable, a path or a name on PATH.
    type: str
    default: hotpatch
notes:
  - Needs root (or CAP_SYS_PTRACE over the target processes) on the managed host.
"""

EXAMPLES = r"""
- name: Patch every process running the vulnerable libz
  hotpatch.live.patch:
    src: /var/lib/hotpatch/zlib-cve-2022-37434.hp
    trust: [/etc/hotpatch/team.key.pub]

- name: Take it out of two processes
  hotpatch.live.patch:
    src: /var/lib/hotpatch/zlib-cve-2022-37434.hp
    state: reverted
    pids: [1234, 1240]
"""

RETURN = r"""
patch_id:
  description: The patch's id.
  returned: always
  type: str
processes:
  description: One entry per selected process, from the CLI's JSON report.
  returned: always
  type: list
  elements: dict
  contains:
    pid: {description: Process id on the host., type: int}
    state:
      description: >-
        What became of it, the CLI's result: applied, already-applied, reverted, not-applied, would-apply,
        would-revert (check mode), rolled-back, skipped, gone, failed.
      type: str
    stall: {description: "What the process felt: the longest time any one of its threads was stopped, over every stop of the operation, in nanoseconds (0 when none was).", type: int}
    pause: {description: How long all its threads were stopped at once, in nanoseconds (0 when they were not)., type: int}
    error: {description: Why it failed, was skipped or gone (empty otherwise)., type: str}
rc:
  description: The CLI's exit code (0 when nothing had to run).
  returned: always
  type: int
report:
  description: The CLI's whole JSON document, when it ran.
  returned: when the CLI ran
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hotpatch.live.plugins.module_utils.cli import (
    CHANGING, CLIError, find_bin, processes, run, selection, status)


def operation_argv(module, binary, patch_id):
    p = module.params
    if p["state"] == "applied":
        argv = [binary, "apply", p["src"]]
        for key in p["trust"]:
            argv += ["--trust", key]
        if p["allow_unsigned"]:
            argv.append("--allow-unsigned")
        if p["all_or_none"]:
            argv.append("--all-or-none")
    else:
        argv = [binary, "revert", p["src"]]
    argv += selection(p["pids"], p["exe"])
    if p["consistency"]:
        argv += ["--consistency", p["consistency"]]
    if p["timeout"]:
        argv += ["--timeout", p["timeout"]]
    if module.check_mode:
        argv.append("--dry-run")
    return argv


def already(module, binary, patch_id):
    """The processes, when every selected one already is in the wanted state
    (hotpatch status --json); None when the CLI must run."""
    p = module.params
    states, _ = status(module, binary, p["pids"], p["exe"])
    if p["state"] == "applied":
        # Without pids, status cannot list the processes that map the target
        # but are not patched: the CLI decides (its report says
        # already-applied for the others).
        if not p["pids"] or any(states.get(pid, {}).get(patch_id) != "applied" for pid in p["pids"]):
            return None
        return [{"pid": pid, "state": "already-applied", "stall": 0, "pause": 0, "error": ""} for pid in p["pids"]]
    # Only a process without the patch, or with it reverted, is in the wanted
    # state: one left half applied or half reverted ("applying",
    # "reverting": an interrupted command) goes to the CLI, which refuses it
    # with its way out (hotpatch recover) instead of a silent changed=false.
    if any(s.get(patch_id, "reverted") != "reverted" for s in states.values()):
        return None
    return [{"pid": pid, "state": "not-applied", "stall": 0, "pause": 0, "error": ""} for pid in (p["pids"] or [])]


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type="path", required=True),
            state=dict(type="str", choices=["applied", "reverted"], default="applied"),
            pids=dict(type="list", elements="int"),
            exe=dict(type="path"),
            trust=dict(type="list", elements="path", default=[]),
            allow_unsigned=dict(type="bool", default=False),
            consistency=dict(type="str", choices=["stack", "entry"]),
            timeout=dict(type="str"),
            all_or_none=dict(type="bool", default=False),
            hotpatch_bin=dict(type="str", default="hotpatch"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    binary = find_bin(module, p["hotpatch_bin"])
    patch_id = None
    try:
        _, manifest = run(module, [binary, "inspect", p["src"]])
        patch_id = manifest["id"]
        procs = already(module, binary, patch_id)
        if procs is not None:
            module.exit_json(changed=False, patch_id=patch_id, processes=procs, rc=0)
        rc, doc = run(module, operation_argv(module, binary, patch_id))
    except CLIError as e:
        procs = processes(e.doc, "apply" if p["state"] == "applied" else "revert")
        if not procs and p["pids"]:
            procs = [{"pid": pid, "state": "failed", "stall": 0, "pause": 0, "error": e.msg} for pid in p["pids"]]
        changed = not module.check_mode and any(x["state"] in CHANGING for x in procs)
        module.fail_json(msg=e.msg, rc=e.rc, patch_id=patch_id, processes=procs, changed=changed, report=e.doc)
    procs = processes(doc, "apply" if p["state"] == "applied" else "revert")
    changed = any(x["state"] in CHANGING for x in procs)
    module.exit_json(changed=changed, patch_id=doc.get("patch_id", patch_id), processes=procs, rc=rc, report=doc)


if __name__ == "__main__":
    main()
