package connlimit

// Fit lowers limit so that the connections can take at most half of the
// descriptors the process may open: the state file, the connections to CT logs
// and search APIs need the rest. Without it a limit above the descriptor limit
// never engages, and the idle connections it should have closed make every
// accept and every poll fail with "too many open files".
func Fit(limit int) int {
	n, ok := descriptorLimit()
	if !ok {
		return limit
	}
	if half := n / 2; half < uint64(limit) {
		return max(int(half), 1)
	}
	return limit
}
