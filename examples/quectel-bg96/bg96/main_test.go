package bg96

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: a
// session reader, the AT channel's goroutines or a close in the
// background must all end with Stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
