//go:build linux && arm64

package proc

import (
	"github.com/hotpatch/hotpatch/internal/arch/arm64"
)

// hostAuditArch is seccomp_data.arch of the system calls hotpatch injects
// (the host's native convention, which is the target's).
var hostAuditArch = arm64.Arch{}.AuditArch()
