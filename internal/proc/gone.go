package proc

// Gone reports whether process pid has no live thread left: it exited (a
// zombie waiting to be reaped) or is not there at all. Callers that found
// the process earlier use it to tell "it died during the operation" from
// their own errors, whatever the failing request said (a write to a dying
// process's memory is only a short write).
func Gone(pid int) bool { return !anyLiveTask(pid) }
