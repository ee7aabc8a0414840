package coordinator

import (
	"errors"
	"net/http"
	"net/http/httptest"
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
