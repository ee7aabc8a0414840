package storetest

import (
	"context"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
)

// Repos is one new repository opened twice, the way it is used: with the
// writer key for backups and with the identity for reading.
type Repos struct {
	Store    chunkstore.Store
	Writer   *chunkstore.Repository
	Reader   *chunkstore.Repository
	Identity []byte // the identity file
}

// NewRepos initialises a repository on a backend — "local" (a directory
// under t.TempDir()) or "minio" (a fresh bucket, see MinIORepoURL) —
// through the same location strings users type.
func NewRepos(t *testing.T, backend string) Repos {
	t.Helper()
	return InitRepos(t, openBackend(t, backend))
}

// NewCopyTarget is NewRepos for a repository that shares from's
// chunking (InitOptions.Chunking), as 'lifeboat init --from-repo'
// creates: a destination for copies of from's snapshots.
func NewCopyTarget(t *testing.T, backend string, from *chunkstore.Repository) Repos {
	t.Helper()
	c := from.Chunking()
	return initRepos(t, openBackend(t, backend), &c)
}

func openBackend(t *testing.T, backend string) chunkstore.Store {
	t.Helper()
	var url string
	switch backend {
	case "local":
		url = filepath.Join(t.TempDir(), "repo")
	case "minio":
		url = MinIORepoURL(t)
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	st, err := location.Open(context.Background(), url, true)
	if err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	return st
}

// InitRepos initialises a repository in st with a new X25519 identity.
func InitRepos(t testing.TB, st chunkstore.Store) Repos {
	t.Helper()
	return initRepos(t, st, nil)
}

func initRepos(t testing.TB, st chunkstore.Store, chunking *chunkstore.Chunking) Repos {
	t.Helper()
	ctx := context.Background()
	idFile, rcpt, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := chunkstore.Init(ctx, st, chunkstore.InitOptions{Recipients: []string{rcpt}, Chunking: chunking})
	if err != nil {
		t.Fatal(err)
	}
	w, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Writer: sec}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	repos := Repos{Store: st, Writer: w, Identity: idFile}
	repos.Reader = repos.OpenReader(t, st)
	return repos
}

// OpenReader opens the repository with its identity through st: its
// store, or a wrapper of it that counts requests or injects faults.
func (r Repos) OpenReader(t testing.TB, st chunkstore.Store) *chunkstore.Repository {
	t.Helper()
	ids, err := chunkstore.ParseIdentityFile(r.Identity, nil)
	if err != nil {
		t.Fatal(err)
	}
	return openReader(t, st, ids)
}

func openReader(t testing.TB, st chunkstore.Store, ids []age.Identity) *chunkstore.Repository {
	t.Helper()
	repo, err := chunkstore.Open(context.Background(), st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return repo
}

// OpenIndexed opens st with the identities ids and loads its index.
func OpenIndexed(t testing.TB, st chunkstore.Store, ids []age.Identity) *chunkstore.Repository {
	t.Helper()
	repo := openReader(t, st, ids)
	if err := repo.LoadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	return repo
}

// Identity is a new X25519 identity: its file, its recipient and the
// parsed identities.
func Identity(t testing.TB) (file []byte, recipient string, ids []age.Identity) {
	t.Helper()
	file, recipient, err := chunkstore.NewIdentity(false)
	if err != nil {
		t.Fatal(err)
	}
	ids, err = chunkstore.ParseIdentityFile(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	return file, recipient, ids
}
