package bench

import (
	"bufio"
	"math/rand/v2"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/zeebo/xxh3"
)

// baseWords is the stock of identifier parts, comment words, route
// segments and file names. Drawn with a Zipf distribution, they give the
// token repetition real code and logs have.
var baseWords = strings.Fields(`
the of and to in is for that on with as by this be are from it at or not an if
we when can which all will only new use one has but must each into must more
get set add remove update create delete find load save read write open close
start stop run handle process parse format encode decode check validate build
user account order item product cart payment invoice customer session token
config option setting value key name id index count size length offset limit
buffer stream reader writer file path dir node tree leaf root parent child
list map set queue stack cache store pool worker job task event message
request response client server handler router route endpoint service api
error result status state context timeout deadline retry backoff lock mutex
data record row column table query schema field type kind mode flag level
chunk pack blob hash digest sign verify encrypt decrypt seal open key nonce
time date duration interval period tick clock timer schedule cron window
http json yaml xml csv text byte bytes int string bool float uint array slice
log logger metric counter gauge histogram trace span label tag attr meta
input output source target dest src dst from to begin end first last next prev
min max sum avg total num part batch group shard replica leader follower peer
conn socket addr host port net dial listen accept bind proto packet frame
auth login logout permission role policy grant scope secret credential
local remote global default custom internal external public private shared
init setup teardown reset clear flush sync async wait notify signal done
old new current previous pending active ready closed failed ok valid invalid
`)

var englishWords = strings.Fields(`
the a an of to and in is it that for on with as was this be by are at from
or not have has but which when will can all their if there been one would
more also its we new these so may some use used only into other than then
should because each must how before after over such make same while where
returns value given called caller function method field struct object
ensure handle case cases empty nil null zero missing already currently
note todo fixme see below above following previous next first last
`)

// vocabulary returns a deterministic list of identifier-ish words: the
// base words shuffled, then two-word compounds.
func vocabulary(seed uint64) []string {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	w := append([]string(nil), baseWords...)
	r.Shuffle(len(w), func(i, j int) { w[i], w[j] = w[j], w[i] })
	out := append([]string(nil), w...)
	for len(out) < 4000 {
		out = append(out, w[r.IntN(len(w))]+"_"+w[r.IntN(len(w))])
	}
	return out
}

// gen generates file contents; one per worker goroutine.
type gen struct {
	r    *rand.Rand
	pcg  *rand.PCG
	buf  []byte
	rnd  []byte
	hash *xxh3.Hasher
	bw   *bufio.Writer
	// logMs is the running clock of the log file being written.
	logMs int64
}

func newGen() *gen {
	pcg := rand.NewPCG(1, 2)
	return &gen{
		pcg:  pcg,
		r:    rand.New(pcg),
		buf:  make([]byte, 0, 1<<20+64<<10),
		rnd:  make([]byte, 1<<20),
		hash: xxh3.New(),
		bw:   bufio.NewWriterSize(nil, 1<<20),
	}
}

// writeJob writes one file and returns its size and xxh3-128.
func (g *gen) writeJob(name string, j *job) (int64, [16]byte, error) {
	f, err := os.Create(name)
	if err != nil {
		return 0, [16]byte{}, err
	}
	g.hash.Reset()
	g.bw.Reset(f)
	w := &hashWriter{bw: g.bw, h: g.hash}
	g.pcg.Seed(j.seed, j.seed^0x5851f42d4c957f2d)
	g.logMs = 0
	switch j.kind {
	case "src", "vendor":
		g.buf = g.sourceFile(g.buf[:0], path.Ext(j.path), j.size)
		err = w.write(g.buf)
	case "log":
		err = g.stream(w, j.size, g.logLines)
	case "csv":
		err = g.stream(w, j.size, g.csvLines())
	default: // bin, image
		err = g.random(w, j)
	}
	if err == nil {
		err = w.bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return w.n, g.hash.Sum128().Bytes(), err
}

type hashWriter struct {
	bw *bufio.Writer
	h  *xxh3.Hasher
	n  int64
}

func (w *hashWriter) write(b []byte) error {
	_, _ = w.h.Write(b)
	w.n += int64(len(b))
	_, err := w.bw.Write(b)
	return err
}

// stream fills a file of about size bytes from a line generator, which
// appends a batch of whole lines to its argument.
func (g *gen) stream(w *hashWriter, size int64, lines func([]byte) []byte) error {
	var written int64
	for written < size {
		g.buf = g.buf[:0]
		for len(g.buf) < 1<<20 && written+int64(len(g.buf)) < size {
			g.buf = lines(g.buf)
		}
		if err := w.write(g.buf); err != nil {
			return err
		}
		written += int64(len(g.buf))
	}
	return nil
}

// random writes j.size bytes of ChaCha8 output; images get their 4 KiB
// patches overwritten with other random bytes.
func (g *gen) random(w *hashWriter, j *job) error {
	var key [32]byte
	for i := 0; i < 4; i++ {
		v := mix(j.seed, uint64(i))
		for k := 0; k < 8; k++ {
			key[i*8+k] = byte(v >> (8 * k))
		}
	}
	src := rand.NewChaCha8(key)
	for off := int64(0); off < j.size; {
		n := min(int64(len(g.rnd)), j.size-off)
		b := g.rnd[:n]
		_, _ = src.Read(b)
		for pi, p := range j.patches {
			if p >= off+n || p+4096 <= off {
				continue
			}
			for k := max(p, off); k < min(p+4096, off+n); k++ {
				b[k-off] ^= byte(mix(j.seed, uint64(pi), uint64(k/8)) >> (8 * (k & 7)))
			}
		}
		if err := w.write(b); err != nil {
			return err
		}
		off += n
	}
	return nil
}

// zipf draws from [0, n) with a Zipf-like distribution (s≈1.1).
func (g *gen) zipf(n int) int {
	// Inverse-CDF approximation of a Zipf law: cheap and good enough
	// for token frequencies.
	u := g.r.Float64()
	x := int(float64(n) * u * u * u * u)
	if x >= n {
		x = n - 1
	}
	return x
}

// ---- source code ----

type flavour struct {
	comment   string
	indent    string
	header    []string
	preamble  []string
	funcOpen  []string
	blockOpen []string
	closer    string // "" for indentation-only languages
	stmts     []string
	snake     bool
}

var licence = []string{
	"Copyright 2019-2025 The $P Authors. All rights reserved.",
	"Use of this source code is governed by an Apache-style",
	"license that can be found in the LICENSE file.",
}

var flavours = map[string]*flavour{
	".go": {
		comment:  "// ",
		indent:   "\t",
		header:   licence,
		preamble: []string{"package $i", "", "import (", "\t\"context\"", "\t\"errors\"", "\t\"fmt\"", "\t\"$i/$i\"", ")", ""},
		funcOpen: []string{
			"func ($l *$T) $F(ctx context.Context, $l $t) error {",
			"func $F($l $t, $l $t) ($t, error) {",
			"func ($l *$T) $F() $t {",
			"func new$T($l *$T, $l []$t) (*$T, error) {",
		},
		blockOpen: []string{
			"if err != nil {",
			"if $l == nil {",
			"for _, $l := range $l.$F {",
			"for i := 0; i < len($l); i++ {",
			"if err := $l.$F(ctx, $l); err != nil {",
			"switch $l.$F {",
			"select {",
		},
		closer: "}",
		stmts: []string{
			"return fmt.Errorf(\"$s: %w\", err)",
			"return nil, err",
			"return $l, nil",
			"return nil",
			"$l := $l.$F($l)",
			"$l, err := $F(ctx, $l)",
			"$l.$F = append($l.$F, $l)",
			"$l.mu.Lock()",
			"defer $l.mu.Unlock()",
			"$l[$l] = $l",
			"$l += $n",
			"$l := make([]$t, 0, $n)",
			"log.Printf(\"$s: %v\", $l)",
			"$l := &$T{$F: $l, $F: $n}",
			"if $l > $n { $l = $n }",
			"case $n:",
			"default:",
		},
	},
	".py": {
		comment:  "# ",
		indent:   "    ",
		header:   licence,
		preamble: []string{"import os", "import logging", "from typing import Optional", "from $i.$i import $T", "", "log = logging.getLogger(__name__)", ""},
		funcOpen: []string{
			"def $f(self, $l, $l=None):",
			"def $f($l, $l):",
			"async def $f(self, $l: $t) -> Optional[$T]:",
			"class $T($T):",
		},
		blockOpen: []string{
			"if $l is None:",
			"for $l in self.$l:",
			"for $l, $l in enumerate($l):",
			"try:",
			"except $T as exc:",
			"with open($l) as $l:",
			"while $l < $n:",
		},
		stmts: []string{
			"return $l",
			"return None",
			"raise $T(\"$s\")",
			"$l = self.$f($l)",
			"self.$l = $l",
			"$l.append($l)",
			"$l += $n",
			"log.debug(\"$s: %s\", $l)",
			"$l = {\"$l\": $l, \"$l\": $n}",
			"$l = [$l for $l in $l if $l]",
			"await self.$f($l)",
			"continue",
		},
		snake: true,
	},
	".c": {
		comment:  "/* ",
		indent:   "    ",
		header:   licence,
		preamble: []string{"#include <stdio.h>", "#include <stdlib.h>", "#include <string.h>", "#include \"$i.h\"", ""},
		funcOpen: []string{
			"static int $f(struct $i *$l, const char *$l, size_t $l) {",
			"int $f(struct $i *$l) {",
			"void $f(void *$l, int $l) {",
		},
		blockOpen: []string{
			"if ($l == NULL) {",
			"for (i = 0; i < $l->$l; i++) {",
			"if ($f($l, $l) < 0) {",
			"while ($l-- > 0) {",
			"switch ($l->$l) {",
		},
		closer: "}",
		stmts: []string{
			"return -1;",
			"return 0;",
			"$l->$l = $l;",
			"$l = $f($l, $n);",
			"memcpy($l, $l, sizeof(*$l));",
			"free($l);",
			"goto out;",
			"$l += $n;",
			"fprintf(stderr, \"$s: %d\\n\", $l);",
			"case $n:",
			"break;",
		},
		snake: true,
	},
}

func init() {
	flavours[".h"] = flavours[".c"]
	ts := *flavours[".go"]
	ts.funcOpen = []string{
		"export async function $F($l: $T, $l?: $t): Promise<$T> {",
		"function $f($l, $l) {",
		"  public $f($l: $t): $T {",
	}
	ts.preamble = []string{"import { $T, $T } from './$i';", "import * as $i from '$i';", ""}
	ts.indent = "  "
	flavours[".ts"] = &ts
}

// sourceFile appends one source file of about size bytes to dst.
func (g *gen) sourceFile(dst []byte, ext string, size int64) []byte {
	fl := flavours[ext]
	if fl == nil {
		fl = flavours[".go"]
	}
	words := vocab()
	start := len(dst)
	// Per-file local names: real files reuse a handful of names a lot.
	var locals [8]string
	for i := range locals {
		locals[i] = words[g.zipf(len(words))]
	}
	project := words[g.zipf(200)]
	emit := func(depth int, tmpl string) {
		for i := 0; i < depth; i++ {
			dst = append(dst, fl.indent...)
		}
		dst = g.expand(dst, tmpl, fl, &locals, project)
		dst = append(dst, '\n')
	}
	commentLine := func(depth int) {
		for i := 0; i < depth; i++ {
			dst = append(dst, fl.indent...)
		}
		dst = append(dst, fl.comment...)
		n := 3 + g.r.IntN(10)
		for i := 0; i < n; i++ {
			if i > 0 {
				dst = append(dst, ' ')
			}
			if g.r.IntN(4) == 0 {
				dst = append(dst, words[g.zipf(len(words))]...)
			} else {
				dst = append(dst, englishWords[g.zipf(len(englishWords))]...)
			}
		}
		if fl.comment == "/* " {
			dst = append(dst, " */"...)
		}
		dst = append(dst, '\n')
	}
	for _, l := range fl.header {
		dst = append(dst, fl.comment...)
		dst = g.expand(dst, l, fl, &locals, project)
		if fl.comment == "/* " {
			dst = append(dst, " */"...)
		}
		dst = append(dst, '\n')
	}
	dst = append(dst, '\n')
	for _, l := range fl.preamble {
		emit(0, l)
	}
	for int64(len(dst)-start) < size {
		// One function: doc comment, signature, body, closer.
		for i := g.r.IntN(3); i > 0; i-- {
			commentLine(0)
		}
		emit(0, fl.funcOpen[g.r.IntN(len(fl.funcOpen))])
		depth := 1
		body := 3 + g.r.IntN(25)
		for s := 0; s < body; s++ {
			switch x := g.r.IntN(10); {
			case x < 2 && depth < 4:
				emit(depth, fl.blockOpen[g.zipf(len(fl.blockOpen))])
				depth++
			case x < 3 && depth > 1:
				depth--
				if fl.closer != "" {
					emit(depth, fl.closer)
				}
			case x == 3:
				commentLine(depth)
			default:
				emit(depth, fl.stmts[g.zipf(len(fl.stmts))])
			}
		}
		for depth > 0 {
			depth--
			if fl.closer != "" {
				emit(depth, fl.closer)
			}
		}
		dst = append(dst, '\n')
	}
	return dst
}

var vocabCache = vocabulary(0x11feb0a7)

func vocab() []string { return vocabCache }

// expand appends tmpl with its placeholders filled in:
// $l local name, $i identifier, $f function name, $F exported name,
// $T type name, $t builtin-ish type, $n number, $s message, $P project.
func (g *gen) expand(dst []byte, tmpl string, fl *flavour, locals *[8]string, project string) []byte {
	words := vocab()
	for i := 0; i < len(tmpl); i++ {
		c := tmpl[i]
		if c != '$' || i+1 == len(tmpl) {
			dst = append(dst, c)
			continue
		}
		i++
		switch tmpl[i] {
		case 'l':
			dst = appendIdent(dst, locals[g.zipf(len(locals))], false, fl.snake)
		case 'i':
			dst = appendIdent(dst, words[g.zipf(len(words))], false, true)
		case 'f':
			dst = appendIdent(dst, words[g.zipf(len(words))], false, fl.snake)
		case 'F':
			dst = appendIdent(dst, words[g.zipf(len(words))], true, false)
		case 'T':
			dst = appendIdent(dst, words[g.zipf(400)], true, false)
		case 't':
			dst = append(dst, builtinTypes[g.zipf(len(builtinTypes))]...)
		case 'n':
			if g.r.IntN(4) == 0 {
				dst = strconv.AppendInt(dst, int64(g.r.IntN(65536)), 10)
			} else {
				dst = strconv.AppendInt(dst, int64(g.zipf(16)), 10)
			}
		case 's':
			n := 2 + g.r.IntN(4)
			for k := 0; k < n; k++ {
				if k > 0 {
					dst = append(dst, ' ')
				}
				dst = append(dst, englishWords[g.zipf(len(englishWords))]...)
			}
		case 'P':
			dst = appendIdent(dst, project, true, false)
		default:
			dst = append(dst, '$', tmpl[i])
		}
	}
	return dst
}

var builtinTypes = []string{"string", "int", "error", "[]byte", "bool", "int64", "uint32", "float64", "map[string]string", "any", "time.Duration"}

// appendIdent renders a snake_case vocabulary word as snake_case,
// camelCase or (exported) PascalCase.
func appendIdent(dst []byte, w string, exported, snake bool) []byte {
	if snake && !exported {
		return append(dst, w...)
	}
	up := exported
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c == '_' {
			up = true
			continue
		}
		if up && c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		up = false
		dst = append(dst, c)
	}
	return dst
}

// ---- logs ----

var (
	logLevels  = []string{"INFO ", "INFO ", "INFO ", "INFO ", "DEBUG", "DEBUG", "WARN ", "ERROR"}
	httpVerbs  = []string{"GET", "GET", "GET", "POST", "PUT", "DELETE", "GET", "PATCH"}
	statuses   = []int{200, 200, 200, 200, 200, 201, 204, 304, 400, 401, 404, 404, 500, 503}
	firstNames = strings.Fields("alice bob carol dave erin frank grace heidi ivan judy mallory niaj olivia peggy rupert sybil trent victor walter xena yusuf zoe liam emma noah ava oliver mia elijah sofia lucas chloe mateo aria")
	lastNames  = strings.Fields("smith jones brown taylor wilson davies evans thomas johnson roberts walker wright robinson thompson white hughes edwards green hall wood harris martin jackson clarke lewis lee")
	countries  = strings.Fields("US US US US DE DE GB GB FR FR NL SE CH IT ES PL CA CA AU JP BR IN")
)

const hexDigits = "0123456789abcdef"

func (g *gen) appendHex(dst []byte, n int) []byte {
	v := g.r.Uint64()
	for i := 0; i < n; i++ {
		if i%16 == 15 {
			v = g.r.Uint64()
		}
		dst = append(dst, hexDigits[v&15])
		v >>= 4
	}
	return dst
}

func appendTimestamp(dst []byte, ms int64) []byte {
	// Civil time from a fixed epoch (2025-03-01T00:00:00Z) without
	// time.Time formatting costs; days roll over inside March–April only
	// for the sizes used here, which is fine for realism.
	sec := ms / 1000
	day := sec / 86400
	month, dom := 3, 1+day
	for dom > 31 {
		dom -= 31
		month++
	}
	dst = append(dst, "2025-"...)
	dst = append2(dst, int64(month))
	dst = append(dst, '-')
	dst = append2(dst, dom)
	dst = append(dst, 'T')
	dst = append2(dst, (sec/3600)%24)
	dst = append(dst, ':')
	dst = append2(dst, (sec/60)%60)
	dst = append(dst, ':')
	dst = append2(dst, sec%60)
	dst = append(dst, '.')
	m := ms % 1000
	dst = append(dst, byte('0'+m/100), byte('0'+m/10%10), byte('0'+m%10))
	return append(dst, 'Z')
}

func append2(dst []byte, v int64) []byte {
	return append(dst, byte('0'+v/10%10), byte('0'+v%10))
}

// logLines appends a batch of application log lines.
func (g *gen) logLines(dst []byte) []byte {
	words := vocab()
	for k := 0; k < 64; k++ {
		g.logMs += int64(g.r.IntN(40))
		dst = appendTimestamp(dst, g.logMs)
		dst = append(dst, ' ')
		lvl := logLevels[g.r.IntN(len(logLevels))]
		dst = append(dst, lvl...)
		dst = append(dst, " ["...)
		dst = append(dst, words[g.zipf(30)]...)
		dst = append(dst, "-worker-"...)
		dst = strconv.AppendInt(dst, int64(g.r.IntN(16)), 10)
		dst = append(dst, "] "...)
		switch x := g.r.IntN(10); {
		case x < 6:
			dst = append(dst, "http: "...)
			dst = append(dst, httpVerbs[g.r.IntN(len(httpVerbs))]...)
			dst = append(dst, " /api/v2/"...)
			dst = append(dst, words[g.zipf(60)]...)
			dst = append(dst, '/')
			dst = strconv.AppendInt(dst, int64(g.zipf(200000)), 10)
			dst = append(dst, '/')
			dst = append(dst, words[g.zipf(60)]...)
			dst = append(dst, " status="...)
			dst = strconv.AppendInt(dst, int64(statuses[g.r.IntN(len(statuses))]), 10)
			dst = append(dst, " dur="...)
			dst = strconv.AppendFloat(dst, float64(g.zipf(5000))/10, 'f', 1, 64)
			dst = append(dst, "ms bytes="...)
			dst = strconv.AppendInt(dst, int64(g.zipf(1<<20)), 10)
			dst = append(dst, " req_id="...)
			dst = g.appendHex(dst, 16)
			dst = append(dst, " user="...)
			u := g.zipf(len(firstNames) * len(lastNames))
			dst = append(dst, firstNames[u%len(firstNames)]...)
			dst = append(dst, '.')
			dst = append(dst, lastNames[u/len(firstNames)]...)
		case x < 8:
			dst = append(dst, words[g.zipf(len(words))]...)
			dst = append(dst, ": "...)
			n := 4 + g.r.IntN(8)
			for i := 0; i < n; i++ {
				if i > 0 {
					dst = append(dst, ' ')
				}
				dst = append(dst, englishWords[g.zipf(len(englishWords))]...)
			}
			dst = append(dst, " key="...)
			dst = append(dst, words[g.zipf(len(words))]...)
			dst = append(dst, " n="...)
			dst = strconv.AppendInt(dst, int64(g.zipf(10000)), 10)
		case x < 9:
			dst = append(dst, "db: query "...)
			dst = append(dst, "SELECT * FROM "...)
			dst = append(dst, words[g.zipf(40)]...)
			dst = append(dst, " WHERE id = $1 rows="...)
			dst = strconv.AppendInt(dst, int64(g.zipf(500)), 10)
			dst = append(dst, " took="...)
			dst = strconv.AppendFloat(dst, float64(g.zipf(20000))/100, 'f', 2, 64)
			dst = append(dst, "ms"...)
		default:
			dst = append(dst, "job "...)
			dst = g.appendHex(dst, 8)
			dst = append(dst, ": "...)
			dst = append(dst, words[g.zipf(80)]...)
			dst = append(dst, " finished in "...)
			dst = strconv.AppendInt(dst, int64(g.zipf(3000)), 10)
			dst = append(dst, "ms"...)
			if lvl == "ERROR" {
				dst = append(dst, "\ngoroutine "...)
				dst = strconv.AppendInt(dst, int64(g.r.IntN(5000)), 10)
				dst = append(dst, " [running]:"...)
				for f := 0; f < 3+g.r.IntN(6); f++ {
					dst = append(dst, "\n\tgithub.com/acme/"...)
					dst = append(dst, words[g.zipf(100)]...)
					dst = append(dst, '.')
					dst = appendIdent(dst, words[g.zipf(300)], true, false)
					dst = append(dst, "(...)\n\t\t/src/"...)
					dst = append(dst, words[g.zipf(100)]...)
					dst = append(dst, ".go:"...)
					dst = strconv.AppendInt(dst, int64(g.zipf(900)), 10)
				}
			}
		}
		dst = append(dst, '\n')
	}
	return dst
}

// csvLines returns a generator of order-export CSV lines with a header.
func (g *gen) csvLines() func([]byte) []byte {
	words := vocab()
	id := int64(100000)
	ms := int64(0)
	header := true
	return func(dst []byte) []byte {
		if header {
			dst = append(dst, "order_id,created_at,customer_id,customer_email,country,sku,product,quantity,unit_price,currency,status,shipping\n"...)
			header = false
		}
		for k := 0; k < 64; k++ {
			id++
			ms += int64(g.r.IntN(2000))
			dst = strconv.AppendInt(dst, id, 10)
			dst = append(dst, ',')
			dst = appendTimestamp(dst, ms)
			dst = append(dst, ',')
			c := g.zipf(200000)
			dst = strconv.AppendInt(dst, int64(c), 10)
			dst = append(dst, ',')
			dst = append(dst, firstNames[c%len(firstNames)]...)
			dst = append(dst, '.')
			dst = append(dst, lastNames[(c/7)%len(lastNames)]...)
			dst = strconv.AppendInt(dst, int64(c%97), 10)
			dst = append(dst, "@example."...)
			dst = append(dst, []string{"com", "org", "net", "io"}[c%4]...)
			dst = append(dst, ',')
			country := countries[c%len(countries)]
			dst = append(dst, country...)
			dst = append(dst, ',')
			sku := g.zipf(5000)
			dst = append(dst, "SKU-"...)
			dst = strconv.AppendInt(dst, int64(sku+10000), 10)
			dst = append(dst, ",\""...)
			dst = appendIdent(dst, words[sku%len(words)], true, false)
			dst = append(dst, ' ')
			dst = append(dst, words[(sku*7)%400]...)
			dst = append(dst, "\","...)
			dst = strconv.AppendInt(dst, int64(1+g.zipf(6)), 10)
			dst = append(dst, ',')
			dst = strconv.AppendFloat(dst, float64(99+(sku*7919)%50000)/100, 'f', 2, 64)
			dst = append(dst, ',')
			switch country {
			case "US", "CA", "AU":
				dst = append(dst, "USD"...)
			case "GB":
				dst = append(dst, "GBP"...)
			case "JP":
				dst = append(dst, "JPY"...)
			default:
				dst = append(dst, "EUR"...)
			}
			dst = append(dst, ',')
			dst = append(dst, []string{"delivered", "delivered", "delivered", "shipped", "shipped", "pending", "cancelled", "refunded"}[g.r.IntN(8)]...)
			dst = append(dst, ',')
			dst = append(dst, []string{"standard", "standard", "express", "pickup"}[g.r.IntN(4)]...)
			dst = append(dst, '\n')
		}
		return dst
	}
}
