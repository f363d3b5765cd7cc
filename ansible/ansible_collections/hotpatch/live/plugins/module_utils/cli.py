# -*- coding: utf-8 -*-
# Running the hotpatch command line for the hotpatch.live modules.
#
# The modules hold no patching logic: every decision is the CLI's, read from
# its --json documents (hotpatch status/apply/revert/inspect --json). This
# file only runs the command and reads those documents.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import json


class CLIError(Exception):
    """A hotpatch command failed: msg is its one-line reason."""

    def __init__(self, msg, rc, doc=None):
        super(CLIError, self).__init__(msg)
        self.msg = msg
        self.rc = rc
        self.doc = doc


def find_bin(module, name):
    """The hotpatch executable: a path, or a name looked up on PATH."""
    if "/" in name:
        return name
    return module.get_bin_path(name, required=True)


def reason(rc, doc, err):
    """The CLI's one-line reason: the JSON document's "error", else the
    last "hotpatch: ..." line it printed on stderr."""
    if isinstance(doc, dict) and doc.get("error"):
        return doc["error"]
    for line in reversed((err or "").splitlines()):
        if line.startswith("hotpatch: "):
            return line[len("hotpatch: "):]
    last = (err or "").strip().splitlines()
    return last[-1] if last else "hotpatch exited with %d" % rc


def run(module, argv, allow_rc=(0,)):
    """Runs argv (with --json), returns (rc, document). Raises CLIError
    when the exit code is not in allow_rc, with the CLI's reason."""
    rc, out, err = module.run_command(argv + ["--json"])
    doc = None
    try:
        doc = json.loads(out) if out.strip() else None
    except ValueError:
        doc = None
    if rc not in allow_rc:
        raise CLIError(reason(rc, doc, err), rc, doc)
    if doc is None:
        raise CLIError("%s printed no JSON document: %s" % (" ".join(argv[:2]), (err or out).strip()), rc)
    return rc, doc


def selection(pids, exe):
    """The flags that select the processes."""
    argv = []
    for pid in pids or []:
        argv += ["--pid", str(pid)]
    if exe:
        argv += ["--exe", exe]
    return argv


def status(module, binary, pids=None, exe=None):
    """hotpatch status --json over the selection: {pid: {patch id: state}}
    and the processes as the CLI lists them."""
    argv = [binary, "status"] + selection(pids, exe)
    _, doc = run(module, argv)
    procs = doc.get("processes")
    if procs is None:  # one --pid: that process's report, {"patches": [...]}
        procs = [{"pid": pids[0], "patches": doc.get("patches") or []}]
    states = {}
    for p in procs:
        states[p["pid"]] = dict((x.get("id"), x.get("state")) for x in p.get("patches") or [])
    return states, procs


def processes(doc, operation):
    """The processes of an apply/revert document, each as pid, state, stall
    (nanoseconds the longest-stopped thread stood still), pause (nanoseconds
    all threads were stopped at once) and error, whatever the form (one
    process, or the host-wide table)."""
    if not isinstance(doc, dict):
        return []
    if doc.get("processes") is not None:
        out = []
        for r in doc["processes"]:
            state = r.get("result", "")
            out.append({"pid": r.get("pid"), "state": state, "stall": r.get("stall_ns", 0), "pause": r.get("pause_ns", 0),
                        "error": r.get("reason", "") if state in ("failed", "gone", "skipped") else ""})
        return out
    if doc.get("pid") is None:
        return []
    if doc.get("error"):
        return [{"pid": doc["pid"], "state": "failed", "stall": 0, "pause": 0, "error": doc["error"]}]
    if operation == "apply":
        state = "already-applied" if doc.get("already_applied") else ("would-apply" if doc.get("dry_run") else "applied")
    else:
        state = "would-revert" if doc.get("dry_run") else "reverted"
    return [{"pid": doc["pid"], "state": state, "stall": doc.get("stall_ns", 0), "pause": doc.get("pause_ns", 0), "error": ""}]


CHANGING = ("applied", "would-apply", "reverted", "would-revert")
