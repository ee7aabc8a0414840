package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"
)

const progressInterval = 250 * time.Millisecond

// progressLine redraws one status line on a terminal, overwriting it with
// '\r', until Stop. A nil *progressLine is valid and draws nothing.
type progressLine struct {
	w      io.Writer
	render func(elapsed time.Duration) string
	start  time.Time
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	width  int // length of the last line drawn
}

// startProgress starts redrawing render's output on stderr if stderr is a
// terminal and output is neither quiet nor JSON; otherwise it returns nil.
func (g *globals) startProgress(render func(elapsed time.Duration) string) *progressLine {
	if g.quiet || g.json || !isTerminal(g.stderr) {
		return nil
	}
	p := &progressLine{w: g.stderr, render: render, start: time.Now(),
		stop: make(chan struct{}), done: make(chan struct{})}
	go p.loop()
	return p
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func (p *progressLine) loop() {
	defer close(p.done)
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.draw(p.render(time.Since(p.start)))
		}
	}
}

func (p *progressLine) draw(s string) {
	if w := terminalWidth(p.w); w > 1 && len(s) >= w {
		s = s[:w-1]
	}
	pad := ""
	if n := p.width - len(s); n > 0 {
		pad = strings.Repeat(" ", n)
	}
	fmt.Fprintf(p.w, "\r%s%s", s, pad)
	p.width = len(s)
}

// Stop ends the redraws and clears the line, so that what follows starts
// at the beginning of an empty line.
func (p *progressLine) Stop() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		close(p.stop)
		<-p.done
		if p.width > 0 {
			fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", p.width))
		}
	})
}

func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}
