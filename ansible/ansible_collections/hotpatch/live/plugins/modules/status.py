#!/usr/bin/python
# -*- coding: utf-8 -*-

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: status
short_description: Facts about the hotpatch live patches applied on a host
description:
  - Runs C(hotpatch status --json) on the managed host and returns what it lists as facts.
  - Stops no process (except that C(status) of exactly one pid frees regions earlier reverts kept, once no
    thread can reach them, as the CLI does).
version_added: "0.1.0"
author: hotpatch maintainers
options:
  pids:
    description: Only these processes (default every patched process of the host).
    type: list
    elements: int
  exe:
    description: Only processes whose executable is this file (C(--exe)).
    type: path
  hotpatch_bin:
    description: The hotpatch executable, a path or a name on PATH.
    type: str
    default: hotpatch
"""

EXAMPLES = r"""
- hotpatch.live.status:
- ansible.builtin.debug:
    msg: "{{ hotpatch_applied['zlib-cve-2022-37434'] | default([]) }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: dict
  contains:
    hotpatch_processes:
      description: The CLI's list of patched processes (pid, command, patches with id, state, target, ...).
      type: list
    hotpatch_applied:
      description: For each patch id, the pids in which it is applied.
      type: dict
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.hotpatch.live.plugins.module_utils.cli import CLIError, find_bin, status


def main():
    module = AnsibleModule(
        argument_spec=dict(
            pids=dict(type="list", elements="int"),
            exe=dict(type="path"),
            hotpatch_bin=dict(type="str", default="hotpatch"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        states, procs = status(module, find_bin(module, p["hotpatch_bin"]), p["pids"], p["exe"])
    except CLIError as e:
        module.fail_json(msg=e.msg, rc=e.rc)
    applied = {}
    for pid in sorted(states):
        for patch_id, state in states[pid].items():
            if state == "applied":
                applied.setdefault(patch_id, []).append(pid)
    module.exit_json(changed=False, ansible_facts=dict(hotpatch_processes=procs, hotpatch_applied=applied))


if __name__ == "__main__":
    main()
