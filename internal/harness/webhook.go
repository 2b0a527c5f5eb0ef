package harness

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// Notification is what Alertmanager's webhook receiver sends.
type Notification struct {
	Receiver    string            `json:"receiver"`
	Status      string            `json:"status"`
	GroupLabels map[string]string `json:"groupLabels"`
	Alerts      []Alert           `json:"alerts"`
	Received    time.Time         `json:"-"` // when the webhook received it
}

// Alert is one alert of a notification.
type Alert struct {
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

// Webhook receives Alertmanager's notifications, on any path.
type Webhook struct {
	*httptest.Server
	mu   sync.Mutex
	seen []Notification
}

// NewWebhook starts a webhook, closed at the test's cleanup.
func NewWebhook(t testing.TB) *Webhook {
	w := &Webhook{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var n Notification
		if err := json.Unmarshal(body, &n); err != nil {
			t.Errorf("webhook: %v: %s", err, body)
			return
		}
		n.Received = time.Now()
		w.mu.Lock()
		w.seen = append(w.seen, n)
		w.mu.Unlock()
	}))
	t.Cleanup(w.Close)
	return w
}

// Notifications are the notifications received so far.
func (w *Webhook) Notifications() []Notification {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

// Firing returns the first firing alert received with every label given,
// and when it arrived.
func (w *Webhook) Firing(labels map[string]string) (Alert, time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, n := range w.seen {
	next:
		for _, a := range n.Alerts {
			if a.Status != "firing" {
				continue
			}
			for k, v := range labels {
				if a.Labels[k] != v {
					continue next
				}
			}
			return a, n.Received, true
		}
	}
	return Alert{}, time.Time{}, false
}
