package proc

import "fmt"

// Injected function calls are implemented on x86-64 only (call.go).

// Call is not supported on this host.
func (p *Process) Call(fn uint64, args ...uint64) (uint64, error) {
	return 0, fmt.Errorf("call %#x: %w", fn, ErrUnsupported)
}

// CallVoid is not supported on this host.
func (p *Process) CallVoid(fn uint64, safe func(Thread) error, args ...uint64) error {
	return fmt.Errorf("call %#x: %w", fn, ErrUnsupported)
}
