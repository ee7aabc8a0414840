package local

import "fmt"

// ClassifyForTest wraps err as Put does for a failed write of path.
func ClassifyForTest(err error, path string) error {
	return classify(fmt.Errorf("write %s: %w", path, err))
}

// OnDirSyncForTest makes s call fn with each directory it fsyncs.
func OnDirSyncForTest(s *Store, fn func(dir string)) { s.dirSynced = fn }

// BeforeCreateForTest makes s call fn between making an object's
// directory and creating its temporary file there.
func BeforeCreateForTest(s *Store, fn func(dir string)) { s.beforeCreate = fn }
