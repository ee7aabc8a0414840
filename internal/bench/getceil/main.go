// Command getceil measures how fast the S3 server serves a bucket's
// objects with nothing else to do: parallel ranged GETs of every object
// under a prefix, bytes discarded. It is the ceiling a restore's downloads
// cannot beat (docs/benchmarks.md, "Restore: the ceiling").
//
//	scripts/minio.sh run -- sh -c '... ; go run ./internal/bench/getceil -bucket B [-par 8] [-range 8388608]'
//	go run ./internal/bench/getceil -bucket B -size    # object count and bytes
//
// It reads LIFEBOAT_TEST_S3_ENDPOINT, _ACCESS_KEY and _SECRET_KEY like the
// other tools.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

func main() {
	bucket := flag.String("bucket", "", "bucket to read")
	prefix := flag.String("prefix", "data/", "object name prefix")
	par := flag.Int("par", 8, "GETs in flight")
	rng := flag.Int64("range", 0, "range size; 0 = whole objects")
	sizeOnly := flag.Bool("size", false, "only print the bucket's object count and bytes")
	flag.Parse()
	ep := os.Getenv("LIFEBOAT_TEST_S3_ENDPOINT")
	c, err := minio.New(ep, &minio.Options{Creds: credentials.NewStaticV4(os.Getenv("LIFEBOAT_TEST_S3_ACCESS_KEY"), os.Getenv("LIFEBOAT_TEST_S3_SECRET_KEY"), "")})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	type job struct {
		name     string
		off, len int64
	}
	var jobs []job
	for oi := range c.ListObjects(ctx, *bucket, minio.ListObjectsOptions{Prefix: *prefix, Recursive: true}) {
		if oi.Err != nil {
			panic(oi.Err)
		}
		if strings.HasSuffix(oi.Key, "/") {
			continue
		}
		if *rng == 0 {
			jobs = append(jobs, job{oi.Key, 0, oi.Size})
		} else {
			for o := int64(0); o < oi.Size; o += *rng {
				jobs = append(jobs, job{oi.Key, o, min(*rng, oi.Size-o)})
			}
		}
	}
	if *sizeOnly {
		var tot, n int64
		for oi := range c.ListObjects(ctx, *bucket, minio.ListObjectsOptions{Recursive: true}) {
			tot += oi.Size
			n++
		}
		fmt.Printf("%s: %d objects, %d bytes (%.1f MiB)\n", *bucket, n, tot, float64(tot)/(1<<20))
		return
	}
	var ru0 syscall.Rusage
	syscall.Getrusage(0, &ru0)
	start := time.Now()
	ch := make(chan job)
	var total atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < *par; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, 17<<20)
			for j := range ch {
				var o minio.GetObjectOptions
				o.SetRange(j.off, j.off+j.len-1)
				obj, err := c.GetObject(ctx, *bucket, j.name, o)
				if err != nil {
					panic(err)
				}
				b := buf[:j.len]
				n, err := io.ReadFull(obj, b)
				if err != nil {
					panic(err)
				}
				obj.Close()
				total.Add(int64(n))
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	el := time.Since(start)
	var ru syscall.Rusage
	syscall.Getrusage(0, &ru)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano() - ru0.Utime.Nano() - ru0.Stime.Nano())
	fmt.Printf("%d requests, %.1f MiB in %.2f s = %.0f MiB/s (par %d range %d), client CPU %.2f s\n", len(jobs), float64(total.Load())/(1<<20), el.Seconds(), float64(total.Load())/(1<<20)/el.Seconds(), *par, *rng, cpu.Seconds())
}
