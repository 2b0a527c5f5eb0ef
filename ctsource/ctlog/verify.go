package ctlog

import (
	"fmt"
)

// Verification checks, the check label of ct_log_verification_failures_total.
const (
	CheckSTHSignature = "sth_signature" // a tree head's signature does not verify
	CheckConsistency  = "consistency"   // a new tree head is not an extension of the last verified one (a fork)
	CheckRollback     = "rollback"      // a new tree head is smaller than the last verified one, and not its prefix
	CheckLeafHash     = "leaf_hash"     // the entries served do not hash to the verified tree
	CheckInclusion    = "inclusion"     // a proof served to start inside the log does not verify
	CheckTreeSize     = "tree_size"     // a correctly signed tree head of 2^63 entries or more
)

// Checks lists every check, so that each log's counters exist from the start.
var Checks = []string{CheckSTHSignature, CheckConsistency, CheckRollback, CheckLeafHash, CheckInclusion, CheckTreeSize}

// verifyError is a log misbehaving: counted by check, never retried past.
type verifyError struct {
	check string
	err   error
}

func (e *verifyError) Error() string {
	return fmt.Sprintf("verification failed (%s): %v", e.check, e.err)
}

func (e *verifyError) Unwrap() error { return e.err }

func verifyFailed(check string, format string, args ...any) error {
	return &verifyError{check: check, err: fmt.Errorf(format, args...)}
}
