package local

import "fmt"

// ClassifyForTest wraps err as Put does for a failed write of path.
func ClassifyForTest(err error, path string) error {
	return classify(fmt.Errorf("write %s: %w", path, err))
}

// OnDirSyncForTest makes s call fn with each directory it fsyncs.
func OnDirSyncForTest(s *Store, fn func(dir string)) { s.dirSynced = fn }
