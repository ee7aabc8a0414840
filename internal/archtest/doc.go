// Package archtest holds the test that keeps lifeboat's layering honest:
// lower packages never import higher ones, and nothing imports cmd.
package archtest
