package engine

// The target architectures the engine can patch.
import _ "github.com/hotpatch/hotpatch/internal/arch/amd64"
