// Command repostat shows where a lifeboat repository's bytes go: data
// and tree packs, blobs stored raw or compressed (and the ratio), pack
// headers and trailers, index and snapshot objects. It needs the identity.
//
//	go run ./internal/bench/repostat REPO IDENTITY-FILE
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/lifeboat-backup/lifeboat/chunkstore"
	"github.com/lifeboat-backup/lifeboat/chunkstore/location"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: repostat REPO IDENTITY-FILE")
		os.Exit(2)
	}
	ctx := context.Background()
	st, err := location.Open(ctx, os.Args[1], false)
	if err != nil {
		panic(err)
	}
	idb, _ := os.ReadFile(os.Args[2])
	ids, err := chunkstore.ParseIdentityFile(idb, nil)
	if err != nil {
		panic(err)
	}
	repo, err := chunkstore.Open(ctx, st, chunkstore.Credentials{Identities: ids}, chunkstore.Options{})
	if err != nil {
		panic(err)
	}
	if err := repo.LoadIndex(ctx); err != nil {
		panic(err)
	}
	var n, raw, sealed, packs, packBytes, hdr [2]int64
	var rawEnc, zEnc, zRaw int64
	for _, p := range repo.Index().Packs() {
		t := 0
		if len(p.Blobs) > 0 && p.Blobs[0].Type == chunkstore.TreeBlob {
			t = 1
		}
		packs[t]++
		packBytes[t] += int64(p.Size)
		var blobBytes int64
		for _, b := range p.Blobs {
			n[b.Type]++
			raw[b.Type] += int64(b.RawLength)
			sealed[b.Type] += int64(b.Length)
			blobBytes += int64(b.Length)
			if b.Type == chunkstore.DataBlob {
				if int64(b.Length)-chunkstore.BlobOverhead == int64(b.RawLength) {
					rawEnc += int64(b.RawLength)
				} else {
					zEnc += int64(b.Length)
					zRaw += int64(b.RawLength)
				}
			}
		}
		hdr[t] += int64(p.Size) - blobBytes
	}
	for t, name := range []string{"data", "tree"} {
		fmt.Printf("%s: %d packs %.2f MiB, %d blobs raw %.2f MiB sealed %.2f MiB, pack header+trailer %.3f MiB\n", name, packs[t], mb(packBytes[t]), n[t], mb(raw[t]), mb(sealed[t]), mb(hdr[t]))
	}
	fmt.Printf("data stored raw: %.2f MiB; compressed: %.2f MiB -> %.2f MiB (ratio %.3f)\n", mb(rawEnc), mb(zRaw), mb(zEnc), float64(zRaw)/float64(zEnc))
	for _, pfx := range []string{"index/", "snapshots/", "keys/", "config"} {
		var s int64
		if err := st.List(ctx, pfx, func(oi chunkstore.ObjectInfo) error { s += oi.Size; return nil }); err != nil {
			panic(err)
		}
		fmt.Printf("%s %.3f MiB\n", pfx, mb(s))
	}
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }
