package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/lifeboat-backup/lifeboat/coordinator"
)

// clientFlags are the flags of the commands that talk to the coordinator.
type clientFlags struct {
	addr, token, cacert string
}

func (f *clientFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.addr, "addr", "", "coordinator API addresses, comma-separated, tried in turn (env LIFEBOAT_ADDR; default "+coordinator.DefaultAddr+")")
	pf.StringVar(&f.token, "token", "", "API token (env LIFEBOAT_TOKEN)")
	pf.StringVar(&f.cacert, "cacert", "", "CA certificate that signed the coordinators' certificates (env LIFEBOAT_CACERT)")
}

// client builds the API client from the flags and LIFEBOAT_* variables.
func (f *clientFlags) client(cmd *cobra.Command) (*coordinator.Client, error) {
	pick := func(flag, val, env string) string {
		if cmd.Flags().Changed(flag) {
			return val
		}
		if v := os.Getenv(env); v != "" {
			return v
		}
		return val
	}
	addr := pick("addr", f.addr, "LIFEBOAT_ADDR")
	token := pick("token", f.token, "LIFEBOAT_TOKEN")
	if token == "" {
		return nil, usageError("no API token: set LIFEBOAT_TOKEN or pass --token (a new cluster's first leader writes one to DATA_DIR/admin-token)")
	}
	c, err := coordinator.NewClient(coordinator.ClientConfig{Addrs: coordinator.ParseAddrs(addr), Token: token, CAFile: pick("cacert", f.cacert, "LIFEBOAT_CACERT")})
	if err != nil {
		return nil, usageError("%v", err)
	}
	return c, nil
}

// apiErr adds what to do next to the API's common refusals.
func apiErr(err error) error {
	var ae *coordinator.APIError
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Status {
	case 401:
		return fmt.Errorf("%w (check LIFEBOAT_TOKEN or --token)", err)
	case 403:
		return fmt.Errorf("%w (use a token with a more privileged role)", err)
	}
	return err
}

func newTable(w io.Writer, header ...string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	return tw
}

func row(tw *tabwriter.Writer, cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = fmt.Sprint(c)
	}
	fmt.Fprintln(tw, strings.Join(s, "\t"))
}

// ago renders how long ago t was ("-" for never).
func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return formatAge(time.Since(t)) + " ago"
}

func formatAge(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 48*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%.1fd", d.Hours()/24)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// fetch GETs path from the coordinator into a T. With --json it prints the
// value and reports done, so callers only render the human form.
func fetch[T any](cmd *cobra.Command, g *globals, cf *clientFlags, path string) (v T, done bool, err error) {
	c, err := cf.client(cmd)
	if err != nil {
		return v, false, err
	}
	if err := c.Get(cmd.Context(), path, &v); err != nil {
		return v, false, apiErr(err)
	}
	if g.json {
		return v, true, printJSON(g.stdout, v)
	}
	return v, false, nil
}
