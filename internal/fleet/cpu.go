package fleet

import "runtime"

// numCPU is the default number of workers; a variable for tests.
var numCPU = runtime.NumCPU
