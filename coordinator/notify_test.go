package coordinator

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestPostAlertNoRedirect: a receiver answering with a redirect is a
// failed delivery; the alert is not sent where the redirect points.
func TestPostAlertNoRedirect(t *testing.T) {
	var followed atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { followed.Add(1) }))
	defer elsewhere.Close()
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect} {
		recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, elsewhere.URL+"/collect", code)
		}))
		target := &AlertTarget{Name: "hook", Kind: TargetWebhook, URL: recv.URL + "/hook"}
		for _, hc := range []*http.Client{NotifyConfig{}.withDefaults().Client, {}} {
			err := postAlert(t.Context(), hc, 5*time.Second, target, []byte(`{}`))
			var de *DeliveryError
			if !errors.As(err, &de) || de.Status != code {
				t.Errorf("HTTP %d: postAlert = %v, want a DeliveryError with status %d", code, err, code)
			}
		}
		recv.Close()
	}
	if n := followed.Load(); n != 0 {
		t.Errorf("the redirect was followed %d times", n)
	}
}

// TestPostAlertTimeoutSaysSo: a receiver that does not answer in time is
// reported as such, not as a bare "context deadline exceeded".
func TestPostAlertTimeoutSaysSo(t *testing.T) {
	hang := make(chan struct{})
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	defer recv.Close()
	defer close(hang)
	target := &AlertTarget{Name: "hook", Kind: TargetWebhook, URL: recv.URL + "/hook"}
	err := postAlert(t.Context(), NotifyConfig{}.withDefaults().Client, 100*time.Millisecond, target, []byte(`{}`))
	if err == nil || !strings.Contains(err.Error(), `alert target "hook": no answer from http://127.0.0.1`) || !strings.Contains(err.Error(), "within 100ms") {
		t.Fatalf("postAlert = %v", err)
	}
}
